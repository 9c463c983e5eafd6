"""Start-up of ``python -m selfplay_verifiers math`` and of the worker zygote (issue 15, "Verifier start-up").

- the CLI starts the zygote (the process that imports sympy) only when a line needs sympy;
- while the first sympy line waits for the workers, later lines are answered by the fast path in
  the CLI's process instead of queueing behind it;
- the zygote forks workers before its full warm-up, and every warm-up input parses.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import Future
from pathlib import Path

import pytest

import selfplay_verifiers
from selfplay_verifiers import __main__ as cli
from selfplay_verifiers.verdict import Verdict

ROOT = os.path.dirname(os.path.dirname(selfplay_verifiers.__file__))

# Runs the CLI in a fresh process and reports how many zygotes it started and whether the CLI's
# own process imported sympy.
_COUNT_ZYGOTES = """
import sys
import selfplay_verifiers._procs as procs
import selfplay_verifiers.pool as pool
started = []
class Counting(procs._Zygote):
    def __init__(self, memory_mb):
        started.append(memory_mb)
        super().__init__(memory_mb)
pool._Zygote = Counting
from selfplay_verifiers.__main__ import main
code = main(["math", sys.argv[1], "-o", sys.argv[2], "-q"])
print(len(started), "sympy" in sys.modules, code)
"""


def _run_counting(tmp_path: Path, rows: list[dict]) -> tuple[str, list[dict]]:
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = subprocess.run([sys.executable, "-c", _COUNT_ZYGOTES, str(src), str(out)],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout.strip(), [json.loads(line) for line in out.read_text().splitlines()]


def test_cli_without_sympy_cases_starts_no_worker(tmp_path: Path) -> None:
    rows = [{"gold": "18", "pred": "So the answer is 18."}, {"gold": "1/3", "pred": "0.333"},
            {"gold": "(1,2]", "pred": "[1,2]"}, {"gold": "2, 3", "pred": "3, 2"}] * 50
    report, out = _run_counting(tmp_path, rows)
    assert report == "0 False 0"  # no zygote, sympy never imported, exit 0
    assert [r["verdict"] for r in out[:4]] == ["correct", "incorrect", "incorrect", "correct"]
    assert len(out) == 200


def test_cli_with_one_sympy_case_starts_one_zygote(tmp_path: Path) -> None:
    rows = [{"gold": "18", "pred": "18"}, {"gold": "x^2-1", "pred": "(x-1)(x+1)"},
            {"gold": "x^2-1", "pred": "(x-1)(x+2)"}]
    report, out = _run_counting(tmp_path, rows)
    assert report == "1 False 0"  # the sympy work ran in the workers, not in the CLI process
    assert [(r["verdict"], r["reason"]) for r in out] == [
        ("correct", "ok"), ("correct", "ok"), ("incorrect", "wrong")]


class _SlowFirstVerifier:
    """Stands in for MathVerifier: the first line's verdict arrives only after ``release``
    later lines were submitted (as a sympy line waits while the workers import sympy); a
    timer resolves it anyway after 10 s so that a CLI which blocks on it fails instead of
    hanging."""

    release = 1000

    def __init__(self, workers=None, timeout=3.0) -> None:
        self.workers = 2
        self.submitted = 0
        self.submitted_when_first_done: int | None = None
        self.first: Future = Future()
        self.timer = threading.Timer(10.0, self._finish_first)
        self.timer.start()
        _SlowFirstVerifier.last = self

    def _finish_first(self) -> None:
        if not self.first.done():
            self.submitted_when_first_done = self.submitted
            self.first.set_result(Verdict("correct", "ok", "x", 0.0))

    def submit(self, gold: str, pred: str) -> Future | Verdict:
        self.submitted += 1
        if self.submitted == 1:
            return self.first
        if self.submitted == 1 + self.release:
            self._finish_first()
        fut: Future = Future()
        fut.set_result(Verdict("correct" if gold == pred else "incorrect", "ok", pred, 0.0))
        return fut

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.timer.cancel()


def test_cli_reads_on_while_the_first_sympy_line_waits(tmp_path, monkeypatch, capsysbinary) -> None:
    import selfplay_verifiers.pool
    monkeypatch.setattr(selfplay_verifiers.pool, "MathVerifier", _SlowFirstVerifier)
    src = tmp_path / "in.jsonl"
    n = 1500
    src.write_text("".join(json.dumps({"gold": str(i), "pred": str(i)}) + "\n" for i in range(n)))
    assert cli.main(["math", str(src), "-q"]) == 0
    fake = _SlowFirstVerifier.last
    # the first verdict was released by the 1000th later submission, not by the 10 s timer
    assert fake.submitted_when_first_done == 1 + _SlowFirstVerifier.release
    out = [json.loads(line) for line in capsysbinary.readouterr().out.splitlines()]
    assert [r["gold"] for r in out] == [str(i) for i in range(n)]  # still in input order


def test_every_warm_up_input_parses() -> None:
    from selfplay_verifiers import _worker
    from selfplay_verifiers.mathcheck import equivalent
    steps = _worker._WARM_FIRST + _worker._WARM_LATER
    assert len(steps) == 29 and len(set(steps)) == 29
    for step in steps:
        _worker._warm(step)  # raises if latex2sympy cannot read one
        if step[0] == "eq":
            assert equivalent(step[1], step[2]).reason in ("ok", "wrong"), step


def test_first_worker_skips_the_deferred_warm_up_and_replacements_inherit_it() -> None:
    from selfplay_verifiers import MathVerifier
    from selfplay_verifiers._worker import _WARM_LATER
    with MathVerifier(workers=1, timeout=2.0) as mv:
        # the fork was asked for before the zygote had imported sympy: it is served first
        assert mv._debug("_warm_left", "").reason == str(len(_WARM_LATER))
        assert mv.verify("x^2-1", "(x-1)(x+1)").is_correct
        left = []
        for _ in range(10):  # each timeout replaces the worker with a fresh fork of the zygote
            # while the worker sleeps (2 s) the zygote has no fork to do: after 1 s it warms
            assert mv._debug("_sleep", "60").reason == "timeout"
            left.append(int(mv._debug("_warm_left", "").reason))
            if left[-1] == 0:
                break
        assert left[-1] == 0, left  # the zygote finished its warm-up while idle
        assert mv.verify("\\sin(x)+\\cos(2x)", "\\cos(2x)+\\sin(x)").is_correct


_MANY_FDS = """
import os, resource
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
held = [os.dup(0) for _ in range(1100)]  # the zygote's socket gets a number above 1024
from selfplay_verifiers import MathVerifier
with MathVerifier(workers=1, timeout=5.0) as mv:
    print(mv.verify("x^2-1", "(x-1)(x+1)").label, max(held) > 1024)
"""


def test_zygote_works_when_the_caller_holds_many_files() -> None:
    import resource
    if resource.getrlimit(resource.RLIMIT_NOFILE)[1] < 1200:
        pytest.skip("cannot open more than 1024 files here")
    out = subprocess.run([sys.executable, "-c", _MANY_FDS], capture_output=True, text=True,
                         timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "correct True"


_DIES = """
import os, sys
from selfplay_verifiers import MathVerifier
mv = MathVerifier(workers=2, timeout=5.0)
assert mv.verify("x^2-1", "(x-1)(x+1)").is_correct
pids = mv._worker_pids()
zygote = int(open(f"/proc/{pids[0]}/stat").read().rsplit(")", 1)[1].split()[1])
print(*pids, zygote, flush=True)
os._exit(0)  # dies without closing the verifier
"""


def _running(pid: int) -> bool:
    """Alive and not a zombie (a zombie answers kill(pid, 0) too)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_workers_and_zygote_go_when_the_verifier_process_dies() -> None:
    out = subprocess.run([sys.executable, "-c", _DIES], capture_output=True, text=True,
                         timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    pids = [int(p) for p in out.stdout.split()]
    assert len(pids) == 3
    deadline = time.monotonic() + 5.0  # workers notice within 1 s; the zygote reaps them
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)
    assert not [p for p in pids if _alive(p)], [(p, _running(p)) for p in pids]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
