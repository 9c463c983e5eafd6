"""OUT/run.log: every command that works on a run directory appends what it does there, with time
stamps, so a long run can be followed (`tail -f OUT/run.log`) and `selfplay status` can estimate
rates after the fact.

One line per event: `<ISO time> [<pid>] <LEVEL> <message>`, LEVEL one of INFO, WARNING, ERROR.
`log(msg)` is the one way the tool reports progress: one line to stderr and, inside a session, to
run.log (only a directory that holds a run, OUT/config.json, gets one). A session
(`session(out, command)`) writes a START line, every `append` (`log`, the `selfplay.*` loggers
such as DPO training's step lines) while it is open, and an END line saying how it ended: ok,
error (with the error's one line), interrupted. A process killed with SIGKILL
writes no END line; `selfplay status` reports such a run as stopped.

The log is appended to, never rewritten; a line is written with one `write` call to a file opened
in append mode, so concurrent writers never interleave inside a line.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

from selfplay import __version__
from selfplay.core.progress import MAX_LINE, Progress, clip

LOG_NAME = "run.log"
ENGINE_LOG = "engine.log"  # what engines and libraries print (selfplay.core.console)
ENGINE_LOG_ENV = "SELFPLAY_ENGINE_LOG"  # its path, for child processes (Ray workers) of a session
RUN_CONFIG = "config.json"  # what makes a directory a run (selfplay.run.layout writes it)
_TIME = "%Y-%m-%dT%H:%M:%S%z"
_LINE = re.compile(r"^(\S+) \[(\d+)\] (INFO|WARNING|ERROR) (.*)$")

_path: Path | None = None  # the open session's log; None outside a session
_depth = 0
_pending: list[str] = []  # lines logged before OUT existed: written with the first line after


def stamp(t: float | None = None) -> str:
    return time.strftime(_TIME, time.localtime(time.time() if t is None else t))


def session_dir() -> Path | None:
    """OUT of the open session; None outside one."""
    return None if _path is None else _path.parent


def holds_run(out: Path) -> bool:
    """OUT holds a run: its resolved config (OUT/config.json, written once a command accepts OUT)."""
    return (out / RUN_CONFIG).is_file()


def append(msg: str, level: str | None = None) -> None:
    """Append `msg` (one line per line of it) to the open session's log; nothing outside one.
    The level defaults to WARNING / ERROR when the message starts with that word, else INFO."""
    if _path is None:
        return
    if level is None:
        head = msg.lstrip().split(" ", 1)[0].rstrip(":").upper()
        level = head if head in ("WARNING", "ERROR") else "INFO"
    now, pid = stamp(), os.getpid()
    _pending.extend(f"{now} [{pid}] {level} {line}\n" for line in msg.splitlines() or [""])
    if not holds_run(_path.parent):  # OUT becomes a run later in the command (or never: it was refused)
        return
    data = "".join(_pending)
    _pending.clear()
    with open(_path, "a", encoding="utf-8") as f:
        f.write(data)


def log(msg: str) -> None:
    """Report progress: `[selfplay] msg` on stderr, and into OUT/run.log while a command works on
    a run (every module logs through here, so the console and run.log say the same). When stderr
    is not a terminal, a console line longer than MAX_LINE is cut (run.log keeps it whole)."""
    lines = [f"[selfplay] {line}" for line in msg.splitlines() or [""]]
    if not sys.stderr.isatty():
        lines = [clip(line, MAX_LINE) for line in lines]
    print("\n".join(lines), file=sys.stderr, flush=True)
    append(msg)


def bar(total: int, desc: str, unit: str) -> Any:
    """A stage's progress on stderr (selfplay.core.progress.Progress: a tqdm bar on a terminal,
    else a line every 30 s and one at the end)."""
    return Progress(total, desc, unit)


class _Handler(logging.Handler):
    """Routes the `selfplay.*` loggers (e.g. `dpo step 3/12 loss=...`) into run.log."""

    def emit(self, record: logging.LogRecord) -> None:
        append(record.getMessage(), "ERROR" if record.levelno >= logging.ERROR
               else "WARNING" if record.levelno >= logging.WARNING else "INFO")


@contextlib.contextmanager
def session(out: str | Path, command: str) -> Iterator[None]:
    """Log one command's work on OUT. It never creates OUT and never writes into a directory that
    holds no run: lines logged before OUT holds one (OUT/config.json, written once the command
    accepts OUT) are written once it does, and dropped when it never does (a command refused
    before that, or one pointed at a directory that is not a run, leaves nothing behind).
    Exceptions are logged and re-raised.
    Nested sessions (a command inside another, in one process) log into the outer one."""
    global _path, _depth
    if _depth:
        _depth += 1
        try:
            yield
        finally:
            _depth -= 1
        return
    _path, _depth = Path(out) / LOG_NAME, 1
    old_env = os.environ.get(ENGINE_LOG_ENV)
    os.environ[ENGINE_LOG_ENV] = str(Path(out).resolve() / ENGINE_LOG)  # for child processes (Ray workers)
    logger = logging.getLogger("selfplay")
    handler, old_level = _Handler(), logger.level
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    t0 = time.perf_counter()
    append(f"START {command} (selfplay {__version__}, pid {os.getpid()}, argv: {' '.join(sys.argv[1:])})")
    try:
        yield
    except BaseException as e:
        first = str(e).splitlines()[0] if str(e) else ""
        if isinstance(e, (KeyboardInterrupt, SystemExit)) or type(e).__name__ == "Terminated":
            append(f"END interrupted ({type(e).__name__}{': ' + first if first else ''}) after "
                   f"{time.perf_counter() - t0:.1f} s", "WARNING")
        else:
            append(f"{type(e).__name__}: {first}", "ERROR")
            append(f"END error after {time.perf_counter() - t0:.1f} s", "ERROR")
        raise
    else:
        append(f"END ok after {time.perf_counter() - t0:.1f} s")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        if old_env is None:
            os.environ.pop(ENGINE_LOG_ENV, None)
        else:
            os.environ[ENGINE_LOG_ENV] = old_env
        _path, _depth = None, 0
        _pending.clear()


@dataclass(frozen=True)
class Event:
    time: datetime
    pid: int
    level: str
    msg: str


def read(out: str | Path) -> list[Event]:
    """The events of OUT/run.log in order; lines that do not parse (none should) are skipped."""
    path = Path(out) / LOG_NAME
    if not path.exists():
        return []
    events = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        m = _LINE.match(line)
        if m is None:
            continue
        try:
            t = datetime.strptime(m.group(1), _TIME)
        except ValueError:
            continue
        events.append(Event(t, int(m.group(2)), m.group(3), m.group(4)))
    return events
