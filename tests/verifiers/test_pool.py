"""MathVerifier: hard time/memory bounds, worker replacement, threads, order, streaming."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

import selfplay_verifiers
from selfplay_verifiers import MathVerifier

TIMEOUT = 1.0
SLACK = 0.5  # the bound: every case finishes within budget + 0.5 s


@pytest.fixture(scope="module")
def mv():
    with MathVerifier(workers=2, timeout=TIMEOUT) as v:
        assert v.verify("x^2-1", "(x-1)(x+1)").is_correct  # warm: workers started
        yield v


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_fast_path_never_starts_workers() -> None:
    with MathVerifier(workers=2) as v:
        out = [v.verify("18", "So the answer is 18."), v.verify("1/3", "0.333"),
               v.verify("(1,2]", "[1,2]"), v.verify("2, 3", "3, 2")]
        assert [o.label for o in out] == ["correct", "incorrect", "incorrect", "correct"]
        assert v._worker_pids() == [] and v._pool.thread is None


def test_sympy_cases_go_through_workers(mv) -> None:
    v = mv.verify("\\sqrt{8}", "The answer is $2\\sqrt{2}$.")
    assert (v.label, v.reason, v.extracted) == ("correct", "ok", "$2\\sqrt{2}$")
    assert mv.verify("x^2-1", "\\boxed{x^2+1}").label == "incorrect"
    assert len(mv._worker_pids()) == 2


def test_repeated_answers_are_compared_once(mv) -> None:
    gold, answers = "x^3-1", ["(x-1)(x^2+x+1)", "(x-1)(x^2+x+2)"] * 20
    first = [v.label for v in mv.verify_many((gold, f"The answer is ${a}$.") for a in answers)]
    assert first == ["correct", "incorrect"] * 20
    assert mv._verdicts.done[(gold, "$(x-1)(x^2+x+1)$")] == ("correct", "ok")
    again = mv.verify(gold, "So the answer is $(x-1)(x^2+x+2)$.")
    assert (again.label, again.reason, again.extracted) == ("incorrect", "wrong", "$(x-1)(x^2+x+2)$")


def test_timeouts_are_not_cached(mv) -> None:
    case = ("1", "\\boxed{\\sum_{k=1}^{9999} \\sqrt{k}}")
    assert mv.verify(*case).reason == "timeout"
    assert not any(k[1] == "\\sum_{k=1}^{9999} \\sqrt{k}" for k in mv._verdicts.done)


def test_timeout_kills_and_replaces_the_worker(mv) -> None:
    before = set(mv._worker_pids())
    t0 = time.perf_counter()
    v = mv._debug("_sleep", "60")
    took = time.perf_counter() - t0
    assert (v.label, v.reason) == ("unknown", "timeout")
    assert TIMEOUT <= took < TIMEOUT + SLACK
    after = set(mv._worker_pids())
    killed = before - after
    assert len(killed) == 1 and len(after) == 2
    time.sleep(0.1)
    assert not any(_alive(p) for p in killed)
    assert mv.verify("2x", "x+x").is_correct  # the pool still works at full strength


def test_real_sympy_overrun_is_killed(mv) -> None:
    # passes the size screen (bounds <= 10^4) but sympy grinds on it for far longer than 1 s
    t0 = time.perf_counter()
    v = mv.verify("1", "\\boxed{\\sum_{k=1}^{9999} \\sqrt{k}}")
    assert (v.label, v.reason) == ("unknown", "timeout")
    assert time.perf_counter() - t0 < TIMEOUT + SLACK


def test_memory_limit_gives_unknown_and_keeps_the_worker_usable(mv) -> None:
    v = mv._debug("_alloc", "8000")  # 8 GB > memory_mb
    assert (v.label, v.reason) == ("unknown", "too_large")
    assert mv.verify("x^2", "x \\cdot x").is_correct


PATHOLOGICAL = [
    "\\boxed{100000000!}",
    "\\boxed{9^{9^{9^{9}}}}",
    "The answer is " + "7" * 100_000,
    "\\boxed{\\sum_{i=1}^{10^{12}} i}",
    "\\boxed{" + "{" * 10_000 + "1" + "}" * 10_000 + "}",
    "The answer is 5 " + "blah " * 200_000 + "\\boxed{" + "x+" * 300_000 + "1}",  # > 1 MB
]


@pytest.mark.parametrize("completion", PATHOLOGICAL, ids=lambda s: s[:24])
def test_pathological_inputs_are_bounded(mv, completion: str) -> None:
    t0 = time.perf_counter()
    v = mv.verify("18", completion)
    assert time.perf_counter() - t0 < TIMEOUT + SLACK
    assert v.label != "correct"


def test_threads_share_one_verifier(mv) -> None:
    results: dict[int, list[str]] = {}

    def work(i: int) -> None:
        results[i] = [mv.verify(f"{i}x", f"x \\cdot {i}").label,       # sympy, correct
                      mv.verify(f"{i}x", f"x + {i}").label,             # sympy, incorrect
                      mv.verify(str(i), f"The answer is {i}.").label]   # fast path

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2, 10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == {i: ["correct", "incorrect", "correct"] for i in range(2, 10)}


def test_overruns_and_normal_work_at_the_same_time(mv) -> None:
    sleeps: list = []
    threads = [threading.Thread(target=lambda: sleeps.append(mv._debug("_sleep", "30")))
               for _ in range(2)]  # both workers get stuck...
    for t in threads:
        t.start()
    time.sleep(0.05)
    t0 = time.perf_counter()
    labels = [v.label for v in mv.verify_many((f"{k}x", f"x \\cdot {k}") for k in range(2, 22))]
    for t in threads:
        t.join(10)
    assert labels == ["correct"] * 20  # ...and the queued work is done by their replacements
    assert [v.reason for v in sleeps] == ["timeout", "timeout"]
    assert time.perf_counter() - t0 < TIMEOUT + 3


def test_verify_many_keeps_input_order(mv) -> None:
    items, expected = [], []
    for i in range(40):
        if i % 3 == 0:
            items.append((f"x^{i % 5 + 2}", f"x^{i % 5 + 2}" if i % 2 else "x"))  # slow
            expected.append("correct" if i % 2 else "incorrect")
        else:
            items.append((str(i), f"\\boxed{{{i if i % 2 else i + 1}}}"))  # fast
            expected.append("correct" if i % 2 else "incorrect")
    assert [v.label for v in mv.verify_many(items)] == expected


def test_verify_many_streams_lazily(mv) -> None:
    pulled = 0

    def gen():
        nonlocal pulled
        for i in range(1000):
            pulled += 1
            yield (str(i), str(i))

    it = mv.verify_many(gen(), window=8)
    assert next(it).is_correct
    assert pulled <= 9  # not the whole input
    assert sum(v.is_correct for v in it) == 999


_DAEMONIC = """
import multiprocessing as mp
def check(_):
    from selfplay_verifiers import MathVerifier
    with MathVerifier(workers=1, timeout=2.0) as v:
        return v.verify("x^2-1", "(x+1)(x-1)").label, v.verify("7", "#### 7").label
if __name__ == "__main__":
    with mp.get_context("fork").Pool(1) as pool:  # Pool workers are daemonic
        print(pool.map(check, [0])[0])
"""


def test_usable_inside_a_daemonic_process() -> None:
    # Daemonic processes may not start multiprocessing children; our workers come from a
    # subprocess zygote, so a MathVerifier works inside a multiprocessing.Pool worker.
    out = subprocess.run([sys.executable, "-c", _DAEMONIC], capture_output=True, text=True,
                         timeout=60, cwd=os.path.dirname(os.path.dirname(selfplay_verifiers.__file__)))
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "('correct', 'correct')"


def test_close_is_idempotent_and_later_calls_do_not_hang() -> None:
    v = MathVerifier(workers=1, timeout=1.0)
    assert v.verify("x+x", "2x").is_correct
    pids = v._worker_pids()
    v.close()
    v.close()
    t0 = time.perf_counter()
    out = v.verify("x+x", "3x")
    assert (out.label, out.reason) == ("unknown", "error") and time.perf_counter() - t0 < 1
    assert v.verify("18", "18").is_correct  # the in-process fast path still answers
    time.sleep(0.2)
    assert not any(_alive(p) for p in pids)


@pytest.mark.parametrize("kwargs", [{"workers": 0}, {"timeout": 0}, {"memory_mb": 10}])
def test_bad_arguments_name_the_field(kwargs) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        MathVerifier(**kwargs)
