"""The console (selfplay.core.console): progress lines off a terminal, the ETA of continuous
generation, DPO step lines, and library output routed into the engine log (--verbose keeps it)."""
import io
import logging
import math
import os
import random
import subprocess
import sys
import warnings

import pytest

from selfplay.core import console
from selfplay.core import log as runlog
from selfplay.core.console import EngineTrace, Progress, counting_paths, engine_trace, paths_done


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def _progress(total, clock, **kw):
    stream = io.StringIO()
    kw.setdefault("interval", 30.0)
    return Progress(total, "round 0 solve+verify", "sample", tty=False, stream=stream, clock=clock, **kw), stream


# ---------------------------------------------------------------- lines off a terminal

def test_off_a_terminal_a_line_every_interval_and_one_at_the_end():
    clock = Clock()
    p, out = _progress(600, clock)
    for _ in range(600):  # one sample a second for 10 minutes
        clock.t += 1.0
        p.set_postfix(tok_s="280", correct="3/4", refresh=False)
        p.update(1)
    p.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 600 // 30 - 1 + 1  # every 30 s until the end (not at 600/600), then the final line
    assert "\r" not in out.getvalue()
    assert lines[0] == ("[selfplay] round 0 solve+verify: 30/600 samples (5%), 30 s elapsed, ETA 9:30; "
                        "tok_s=280, correct=3/4")
    assert lines[-1].startswith("[selfplay] round 0 solve+verify: 600/600 samples in 10:00 (1 samples/s)")


def test_no_line_is_longer_than_max_line():
    clock = Clock()
    p, out = _progress(10, clock, interval=0)
    p.set_postfix_str("x" * 5000)
    clock.t = 1
    p.update(3)
    p.close()
    lines = out.getvalue().splitlines()
    assert len(lines) >= 2 and all(len(line) <= runlog.MAX_LINE for line in lines)
    assert "[cut, " in lines[0] and "[cut, " in lines[-1]


def test_log_cuts_long_lines_off_a_terminal_but_run_log_keeps_them(tmp_path, capsys):
    (tmp_path / runlog.RUN_CONFIG).write_text("{}")
    with runlog.session(tmp_path, "run"):
        runlog.log("rejected: " + "a, " * 400)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and len(err.rstrip("\n")) == runlog.MAX_LINE
    assert any(len(e.msg) > 1000 for e in runlog.read(tmp_path))


def test_steps_style_has_an_eta_from_the_step_times():
    clock = Clock()
    p, out = _progress(12, clock, style="steps", interval=0)
    p.desc = "dpo step"
    for k, secs in enumerate([30.0, 10.0, 10.0, 10.0], 1):  # the first step is slow (warm-up)
        clock.t += secs
        p.update(1, seconds=secs, refresh=False)
        p.set_postfix_str(f"loss={0.7 - k / 100:.4f} rewards/acc=0.50")
    lines = out.getvalue().splitlines()
    # mean of the last (up to) 5 step times x 8 steps left = 15 s x 8 = 2:00
    assert lines[-1] == "[selfplay] dpo step 4/12 loss=0.6600 rewards/acc=0.50 ETA 2:00"
    assert lines[0] == "[selfplay] dpo step 1/12 loss=0.6900 rewards/acc=0.50 ETA 5:30"


def test_dpo_callback_prints_step_lines_on_the_console(monkeypatch, capsys):
    pytest.importorskip("transformers")
    from types import SimpleNamespace

    from selfplay.train.trainer import progress_callback

    monkeypatch.setenv(console.PROGRESS_ENV, "0")  # a line at every step
    cb = progress_callback()
    state = SimpleNamespace(max_steps=3, global_step=0, is_world_process_zero=True)
    cb.on_train_begin(None, state, None)
    for k in range(1, 4):
        cb.on_step_begin(None, state, None)
        state.global_step = k
        cb.on_step_end(None, state, None)
        cb.on_log(None, state, None, logs={"loss": 0.69 - k / 100, "rewards/accuracies": 0.5, "rewards/margins": 0.1})
    cb.on_train_end(None, state, None)
    err = [line for line in capsys.readouterr().err.splitlines() if "dpo step" in line]
    assert err[0].startswith("[selfplay] dpo step 1/3 loss=0.6800 rewards/acc=0.50 ETA ")
    assert err[1].startswith("[selfplay] dpo step 2/3 loss=0.6700 rewards/acc=0.50 ETA ")
    assert err[-1].startswith("[selfplay] dpo step 3/3 loss=0.6600 rewards/acc=0.50 in ")
    assert len(cb.step_seconds) == 3


# ---------------------------------------------------------------- the ETA of continuous generation

def _lengths(n, cap, seed, scale):
    """Path lengths like the solve stage's: log-normal around `scale` tokens, some at the budget."""
    rnd = random.Random(seed)
    return [min(cap, max(2, int(rnd.lognormvariate(math.log(scale), 0.6)))) for _ in range(n)]


def _replay(lengths, slots, cap, a=0.12, b=0.0063):
    """An engine decoding `lengths` with `slots` slots, a step of r requests taking a + b r s;
    the stage's ETA and the naive one (elapsed x paths left / paths done) after every step."""
    clock = Clock()
    prog, _ = _progress(len(lengths), clock, interval=1e9)
    seen = []
    with counting_paths(prog):
        trace = engine_trace(len(lengths), slots, cap)
        waiting, running = list(lengths), []
        while waiting or running:
            while waiting and len(running) < slots:
                running.append([waiting.pop(0), 0])
            clock.t += a + b * len(running)
            for r in running:
                r[1] += 1
            done = [r[1] for r in running if r[1] >= r[0]]
            running = [r for r in running if r[1] < r[0]]
            trace.step(done, [r[1] for r in running])
            paths_done(len(done))
            pos = prog.position
            seen.append((clock.t, prog.eta(), clock.t * (len(lengths) - pos) / pos if pos else None))
    return clock.t, seen


@pytest.mark.parametrize("n,slots,scale,seed", [
    (576, 256, 55, 0), (576, 256, 55, 1),  # the default solve stage: 72 problems x 8 paths, 256 slots
    (2000, 256, 55, 2),  # a long queue
    (64, 256, 55, 3),  # one wave: every path starts at once (an out-of-distribution set, greedy)
    (576, 64, 120, 4),  # few slots, long paths
    (576, 256, 100, 6)])
def test_engine_eta_is_right_within_2x_after_the_first_tenth(n, slots, scale, seed):
    """From a tenth of the stage on, the ETA is within 2x of the time left (or, in the last
    seconds, off by at most 5 s)."""
    cap = 192
    total, seen = _replay(_lengths(n, cap, seed, scale), slots, cap)
    checked = [(t, eta) for t, eta, _ in seen if t >= 0.1 * total]
    assert len(checked) > 20
    for t, eta in checked:
        left = total - t
        assert eta is not None and (0.5 <= eta / max(left, 1e-9) <= 2.0 or abs(eta - left) <= 5.0), (
            t / total, eta, left)


def test_counting_finished_paths_alone_is_not_enough():
    """Why the engine is replayed: every slot is busy long before the first path finishes, so
    at a tenth of the stage the rate of finished paths predicts several times the real rest."""
    cap = 192
    total, seen = _replay(_lengths(576, cap, 0, 55), 256, cap)
    t, _, naive = min(seen, key=lambda x: abs(x[0] - 0.1 * total))
    assert naive is None or naive / (total - t) > 2.0


def test_paths_count_only_inside_counting_paths():
    clock = Clock()
    p, _ = _progress(10, clock)
    paths_done(3)
    assert engine_trace(10, 4, 16) is None and p.position == 0
    with counting_paths(p):
        paths_done(3)
    paths_done(2)
    assert p.generated == 3 and p.position == 3 and p.n == 0
    p.update(2)
    assert p.position == 3  # verified paths trail the generated ones
    with counting_paths(object()):  # a tqdm bar or a stand-in: nothing is counted
        paths_done(5)
    assert p.position == 3


def test_survival_falls_to_zero_at_the_budget():
    t = EngineTrace(requests=8, slots=8, cap=10, clock=Clock())
    t.step([3, 3], [3] * 6)
    s = t.survival()
    assert s[0] == 1.0 and s[10] == 0.0 and abs(s[3] - 0.75) < 1e-9
    assert all(s[i] >= s[i + 1] for i in range(10))


# ---------------------------------------------------------------- library output into the engine log

def _library_logger():
    """A library logger the way transformers and vLLM set theirs up: its own console handler."""
    lg = logging.getLogger("transformers")
    h = logging.StreamHandler(sys.stderr)
    lg.addHandler(h)
    lg.setLevel(logging.INFO)
    return lg, h


def test_quiet_sends_libraries_to_the_engine_log_and_restores_them(tmp_path, capfd, monkeypatch):
    monkeypatch.delenv(console.VERBOSE_ENV, raising=False)
    (tmp_path / runlog.RUN_CONFIG).write_text("{}")
    lg, h = _library_logger()
    before = (list(lg.handlers), lg.propagate, list(logging.getLogger().handlers))
    try:
        with console.configured(verbose=False), runlog.session(tmp_path, "run"):
            console.quiet_libraries()
            lg.warning("weights loaded in float32")
            logging.getLogger("vllm.engine").warning("engine started")
            with warnings.catch_warnings():
                warnings.simplefilter("always")
                warnings.warn("torch.cuda.amp is deprecated", FutureWarning)
            logging.getLogger("selfplay.train.trainer").warning("ours stays out")
            assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"
        err = capfd.readouterr().err
        assert "float32" not in err and "deprecated" not in err
        assert "engine and library output -> " in err and str(tmp_path / "engine.log") in err
        text = (tmp_path / "engine.log").read_text()
        assert "weights loaded in float32" in text and "engine started" in text and "torch.cuda.amp" in text
        assert "ours stays out" not in text
        assert (lg.handlers, lg.propagate, logging.getLogger().handlers) == before  # restored
        assert console.VERBOSE_ENV not in os.environ
        with console.configured(verbose=True):
            console.quiet_libraries()
            lg.warning("verbose: on the console")
        assert "verbose: on the console" in capfd.readouterr().err
    finally:
        lg.removeHandler(h)


def test_engine_output_redirects_descriptors_of_this_and_child_processes(tmp_path, capfd, monkeypatch):
    log_file = tmp_path / "engine.log"
    monkeypatch.setenv(runlog.ENGINE_LOG_ENV, str(log_file))
    with console.configured(verbose=False):
        with console.engine_output():
            os.write(1, b"C++ says hello\n")
            subprocess.run([sys.executable, "-c", "import sys; print('child out'); print('child err', file=sys.stderr)"],
                           check=True)
        os.write(2, b"after the start\n")
    cap = capfd.readouterr()
    assert "hello" not in cap.out + cap.err and "child" not in cap.out + cap.err
    assert "after the start" in cap.err
    text = log_file.read_text()
    assert "C++ says hello" in text and "child out" in text and "child err" in text


def test_a_failed_engine_start_shows_the_log_tail(tmp_path, capfd, monkeypatch):
    monkeypatch.setenv(runlog.ENGINE_LOG_ENV, str(tmp_path / "engine.log"))
    with console.configured(verbose=False), pytest.raises(RuntimeError, match="no memory"), \
            console.engine_output():
            os.write(2, b"ERROR KV cache does not fit\n")
            raise RuntimeError("no memory")
    err = capfd.readouterr().err
    assert "the engine did not start" in err and "  ERROR KV cache does not fit" in err


def test_nothing_is_redirected_without_the_cli(tmp_path, capfd, monkeypatch):
    monkeypatch.delenv(console.VERBOSE_ENV, raising=False)
    monkeypatch.setenv(runlog.ENGINE_LOG_ENV, str(tmp_path / "engine.log"))
    with console.engine_output():
        os.write(1, b"library user sees this\n")
    assert "library user sees this" in capfd.readouterr().out
    assert not (tmp_path / "engine.log").exists()


def test_verbose_flag_is_on_the_commands_that_load_a_model():
    from selfplay.cli.parser import build_parser

    ap = build_parser()
    for argv in (["run", "--verbose"], ["solve", "-v"], ["train", "--verbose"],
                 ["eval", "--model", "default", "--verbose"]):
        assert ap.parse_args(argv).verbose is True
    assert ap.parse_args(["run"]).verbose is False


def test_a_handler_made_during_an_engine_start_writes_to_the_console_again_after(tmp_path, capsys, monkeypatch):
    """A library imported inside engine_output() points its handler at sys.stdout, which is then
    the engine log: after the command that handler is the library's own again, on the console."""
    monkeypatch.setenv(runlog.ENGINE_LOG_ENV, str(tmp_path / "engine.log"))
    lg = logging.getLogger("vllm")
    before = list(lg.handlers)
    try:
        with console.configured(verbose=False):
            with console.engine_output():
                made = logging.StreamHandler(sys.stdout)  # as vLLM does when it is first imported
                lg.addHandler(made)
            lg.warning("into the engine log")
        lg.warning("after the command")
        assert "after the command" in capsys.readouterr().out
        assert "into the engine log" in (tmp_path / "engine.log").read_text()
    finally:
        lg.handlers[:] = before


def test_on_a_terminal_a_bar_with_the_eta():
    clock = Clock()
    stream = io.StringIO()
    p = Progress(10, "round 0 solve+verify", "sample", tty=True, stream=stream, clock=clock)
    for _ in range(10):
        clock.t += 1
        p.set_postfix(correct="1/2", refresh=False)
        p.update(1)
    p.close()
    text = stream.getvalue()
    assert "\r" in text and "10/10 sample [" in text and ", correct=1/2]" in text and ", ," not in text
