"""The console: what a command shows while it works, and where everything else goes.

Three things reach the console: the tool's own lines (`selfplay.core.log.log`), one progress
display per stage (`Progress`) and the results a command prints. What engines and libraries say
(vLLM and its engine-core process, transformers, TRL, torch, datasets, Ray, Python warnings) goes
into the engine log instead: OUT/engine.log inside a run, else $SELFPLAY_ENGINE_LOG or a file in
the temp directory (its path is logged once). `--verbose` leaves all of it on the console.

The CLI sets this up for one command (`configured`). Then
  * `quiet_libraries()` points the libraries' Python loggers (and `warnings`) at the engine log;
    the backends and the trainer call it again once their libraries are imported (a library adds
    its console handler when it is first imported);
  * `engine_output()` also sends file descriptors 1 and 2 there while an engine starts: what C++
    code prints, and every line of vLLM's engine-core process (spawned inside it, it keeps the
    redirected descriptors for its whole life);
  * Hugging Face progress bars are switched off (HF_HUB_DISABLE_PROGRESS_BARS,
    HF_DATASETS_DISABLE_PROGRESS_BARS, transformers' disable_progress_bar).
Child processes (Ray workers, training ranks) inherit the choice through $SELFPLAY_VERBOSE and the
log's path through $SELFPLAY_ENGINE_LOG. With $SELFPLAY_VERBOSE unset (a library user, the tests)
nothing is redirected.

Stage progress (Progress, counting_paths, paths_done, engine_trace) is selfplay.core.progress,
re-exported here.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Iterator

from selfplay.core import log as runlog
from selfplay.core.progress import (
    PROGRESS_ENV,
    EngineTrace,
    Progress,
    counting_paths,
    duration,
    engine_trace,
    paths_done,
)

__all__ = ["PROGRESS_ENV", "EngineTrace", "Progress", "configured", "counting_paths", "duration",
           "engine_log_path", "engine_output", "engine_trace", "paths_done", "quiet", "quiet_libraries",
           "restore", "verbose"]

VERBOSE_ENV = "SELFPLAY_VERBOSE"  # "1": libraries on the console; "0": into the engine log; unset: untouched
# the library loggers whose output goes to the engine log (each library's root logger)
LIBRARIES = ("vllm", "transformers", "trl", "torch", "accelerate", "datasets", "huggingface_hub", "peft", "ray",
             "tokenizers", "filelock", "urllib3", "httpx", "fsspec", "numexpr", "triton", "xformers", "py.warnings")
QUIET_ENV = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}

_saved_loggers: dict[str, tuple[list[logging.Handler], bool]] = {}
_saved_env: dict[str, str | None] = {}
_files: dict[Path, logging.FileHandler] = {}
_announced: set[Path] = set()
_captured_warnings = False
_streams: list = []  # the engine log as a Python stream, one per engine start (closed by restore)


# ---------------------------------------------------------------- where library output goes

def verbose() -> bool:
    """--verbose: libraries print on the console as they would without this tool."""
    return os.environ.get(VERBOSE_ENV) == "1"


def quiet() -> bool:
    """Library output goes to the engine log (the CLI without --verbose, and its child processes)."""
    return os.environ.get(VERBOSE_ENV) == "0"


def engine_log_path() -> Path:
    """OUT/engine.log while a command works on a run; else, outside a session, $SELFPLAY_ENGINE_LOG
    (a child process of such a command inherits it); else selfplay-engine-<pid>.log in the temp
    directory (a directory that holds no run is never written into)."""
    out = runlog.session_dir()
    if out is not None and runlog.holds_run(out):
        return out / runlog.ENGINE_LOG
    if out is None and os.environ.get(runlog.ENGINE_LOG_ENV):
        return Path(os.environ[runlog.ENGINE_LOG_ENV])
    return Path(tempfile.gettempdir()) / f"selfplay-engine-{os.getpid()}.log"


def _announce(path: Path) -> None:
    if path not in _announced:
        _announced.add(path)
        runlog.log(f"engine and library output -> {path} (--verbose shows it here)")


class _EngineFile(logging.FileHandler):
    """The engine log's handler (told apart from the libraries' own console handlers)."""


class _NotOurs(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith("selfplay")


_FORMAT = logging.Formatter("%(levelname)s %(asctime)s [%(name)s] %(message)s", "%m-%d %H:%M:%S")


def _file_handler(path: Path) -> logging.FileHandler:
    h = _files.get(path)
    if h is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        h = _EngineFile(path, mode="a", encoding="utf-8", delay=True)
        h.setFormatter(_FORMAT)
        h.addFilter(_NotOurs())
        _files[path] = h
    return h


def _is_console_handler(h: logging.Handler) -> bool:
    return isinstance(h, _EngineFile) or (isinstance(h, logging.StreamHandler)
                                          and not isinstance(h, logging.FileHandler))


def quiet_libraries() -> None:
    """Point the library loggers (LIBRARIES), Python warnings and stray records reaching the root
    logger at the engine log, and switch off the Hugging Face progress bars of the libraries
    imported so far. Safe to call again (after a library's import): only when quiet()."""
    global _captured_warnings
    if not quiet():
        return
    path = engine_log_path()
    _announce(path)
    handler = _file_handler(path)
    for name in LIBRARIES + ("",):
        lg = logging.getLogger(name)
        if name not in _saved_loggers:
            _saved_loggers[name] = (list(lg.handlers), lg.propagate)
        if name:  # the root logger keeps whatever else it has (pytest's capture, a user's handlers)
            for h in [h for h in lg.handlers if h is not handler and _is_console_handler(h)]:
                lg.removeHandler(h)
            lg.propagate = False
        else:
            for h in [h for h in lg.handlers if isinstance(h, _EngineFile) and h is not handler]:
                lg.removeHandler(h)
        if handler not in lg.handlers:
            lg.addHandler(handler)
    if not _captured_warnings:
        logging.captureWarnings(True)
        _captured_warnings = True
    if "transformers" in sys.modules:
        from transformers.utils import logging as tf_logging

        tf_logging.disable_progress_bar()
    if "datasets" in sys.modules:
        import datasets

        datasets.disable_progress_bars()
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()


def _setenv(name: str, value: str | None) -> None:
    if name not in _saved_env:
        _saved_env[name] = os.environ.get(name)
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def restore() -> None:
    """Undo `configured`: the loggers, warnings and environment as they were."""
    global _captured_warnings
    for name, (handlers, propagate) in _saved_loggers.items():
        lg = logging.getLogger(name)
        for h in handlers:  # a library that set up its handler during an engine start wrote to the log's stream
            if isinstance(h, logging.StreamHandler) and any(h.stream is x for x in _streams):
                h.setStream(sys.stdout)
        lg.handlers[:] = handlers
        lg.propagate = propagate
    _saved_loggers.clear()
    for h in _files.values():
        h.close()
    _files.clear()
    for stream in _streams:
        stream.close()
    _streams.clear()
    _announced.clear()
    if _captured_warnings:
        logging.captureWarnings(False)
        _captured_warnings = False
    for name, value in _saved_env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    _saved_env.clear()


@contextlib.contextmanager
def configured(verbose: bool) -> Iterator[None]:
    """One CLI command's console: without `verbose` (or an inherited $SELFPLAY_VERBOSE=1: a child
    of a verbose command), library output into the engine log."""
    verbose = verbose or os.environ.get(VERBOSE_ENV) == "1"
    _setenv(VERBOSE_ENV, "1" if verbose else "0")
    if not verbose:
        for name, value in QUIET_ENV.items():
            if name not in os.environ:
                _setenv(name, value)
    try:
        yield
    finally:
        restore()


def _tail(path: Path, lines: int = 12) -> list[str]:
    if not path.is_file():
        return []
    with open(path, "rb") as f:
        f.seek(max(0, f.seek(0, os.SEEK_END) - 16384))
        text = f.read().decode("utf-8", errors="replace")
    return [runlog.clip(line) for line in text.splitlines()[-lines:]]


@contextlib.contextmanager
def engine_output() -> Iterator[None]:
    """While an engine starts (and imports its libraries): file descriptors 1 and 2 point at the
    engine log, so C++ output and the engine's child processes (which keep these descriptors)
    write there; the library loggers follow when it is done. When the start fails, the log's last
    lines are shown. Does nothing unless quiet()."""
    if not quiet():
        yield
        return
    path = engine_log_path()
    _announce(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    saved = [os.dup(1), os.dup(2)]
    streams = sys.stdout, sys.stderr
    # Python-level writes too (sys.stdout may not write to descriptor 1, e.g. under pytest); the
    # stream stays open until restore(): a handler made meanwhile may still hold it
    text = os.fdopen(os.dup(fd), "w", buffering=1, encoding="utf-8", errors="replace")
    _streams.append(text)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        sys.stdout = sys.stderr = text
        yield
    except BaseException:
        sys.stdout, sys.stderr = streams
        _restore_fds(saved, fd)
        runlog.log(f"the engine did not start; the last lines of {path}:")
        for line in _tail(path):
            print(f"  {line}", file=sys.stderr, flush=True)
        raise
    else:
        sys.stdout, sys.stderr = streams
        _restore_fds(saved, fd)
    finally:
        quiet_libraries()


def _restore_fds(saved: list[int], fd: int) -> None:
    if fd < 0 or saved[0] < 0:
        return
    for stream in (sys.stdout, sys.stderr, *_streams):
        stream.flush()
    os.dup2(saved[0], 1)
    os.dup2(saved[1], 2)
    for x in (*saved, fd):
        os.close(x)
    saved[:] = [-1, -1]
