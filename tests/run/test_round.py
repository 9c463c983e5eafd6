"""A whole round on the scripted backend (fast), plus resume after kill -9 at random moments."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from selfplay.config import load_config
from selfplay.core import io
from selfplay.run.loop import run_loop
from tests.conftest import needs_bwrap

ROOT = Path(__file__).resolve().parents[2]
TOML = """
[run]
seed = 5
rounds = {rounds}
out = "{out}"
[model]
backend = "scripted"
name = "scripted-model"
[seeds]
problems = 12
[pose]
attempts = 4
[solve]
samples = 6
batch_problems = 2
[train]
enabled = false
[eval]
enabled = false
"""


def cfg_file(tmp_path, out, rounds=1):
    f = tmp_path / "c.toml"
    f.write_text(TOML.format(out=out, rounds=rounds))
    return f


@needs_bwrap
def test_scripted_round_files_and_stats(tmp_path):
    cfg = load_config(cfg_file(tmp_path, tmp_path / "out"))
    [stats] = run_loop(cfg)
    rd = tmp_path / "out" / "round_0"
    for name in ("problems.jsonl", "rollouts.jsonl", "pairs.jsonl", "stats.json", "pose.json"):
        assert (rd / name).exists(), name
    assert (tmp_path / "out" / "config.json").exists()
    problems = list(io.iter_jsonl(rd / "problems.jsonl"))
    rollouts = list(io.iter_jsonl(rd / "rollouts.jsonl"))
    pairs = list(io.iter_jsonl(rd / "pairs.jsonl"))
    assert len(rollouts) == 6 * len(problems) == stats["samples"]
    assert stats["posed"]["attempted"] == 4 and stats["by_origin"].get("posed", 0) == stats["posed"]["kept"]
    assert stats["correct"] + stats["incorrect"] + stats["unknown"] == stats["samples"]
    assert stats["verdict_reasons"].get("no_answer", 0) > 0  # the scripted model sometimes rambles
    assert 0 < len(pairs) <= 4 * len(problems) and stats["pairs"] == len(pairs)
    gold = {p["id"]: p["answer"] for p in problems}
    for pr in pairs:
        m = pr["metadata"]
        assert m["chosen_extracted"] == gold[m["problem_id"]] != m["rejected_extracted"]
        assert pr["chosen"][0]["content"] != pr["rejected"][0]["content"]
        assert set(pr) == {"prompt", "chosen", "rejected", "metadata"}


@needs_bwrap
def test_resume_refuses_changed_settings(tmp_path):
    cfg = load_config(cfg_file(tmp_path, tmp_path / "out"))
    run_loop(cfg)
    cfg.solve.samples = 4
    with pytest.raises(ValueError, match="solve.samples was 6"):
        run_loop(cfg)


def _run(cfg_path, env=None, wait=True):
    cmd = [sys.executable, "-m", "selfplay", "run", "--config", str(cfg_path)]
    p = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **(env or {})},
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if wait:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()[-2000:]
    return p


def _key(d):
    d.pop("verify_seconds")  # wall time differs between runs; everything else must be identical
    return str(sorted(d.items()))


@needs_bwrap
def test_kill_9_and_resume_loses_and_duplicates_nothing(tmp_path):
    ref = cfg_file(tmp_path, tmp_path / "ref", rounds=2)
    _run(ref)
    (tmp_path / "k").mkdir()
    killed = cfg_file(tmp_path / "k", tmp_path / "killed", rounds=2)
    # Kill at several moments: during solve of round 0, later in round 0, during round 1. Each
    # kill waits for its moment (a batch of rollouts appended), not for a guessed delay.
    partial_seen = 0

    def lines(k):
        path = tmp_path / "killed" / f"round_{k}" / "rollouts.jsonl"
        return path.read_bytes().count(b"\n") if path.exists() else 0

    for k in (0, 0, 1):
        want = lines(k) + 1
        p = _run(killed, env={"SELFPLAY_SCRIPTED_DELAY": "0.3"}, wait=False)
        deadline = time.monotonic() + 120
        while lines(k) < want and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        p.send_signal(signal.SIGKILL)
        p.wait()
        assert not (tmp_path / "killed" / "round_1" / "stats.json").exists(), "the kill came too late"
        partial_seen += any((tmp_path / "killed" / f"round_{k}" / "rollouts.jsonl").exists()
                            and not (tmp_path / "killed" / f"round_{k}" / "pairs.jsonl").exists() for k in (0, 1))
    assert partial_seen >= 1  # at least one kill landed in the middle of solving
    _run(killed)
    for k in (0, 1):
        for name in ("problems.jsonl", "pairs.jsonl"):
            a = (tmp_path / "ref" / f"round_{k}" / name).read_bytes()
            b = (tmp_path / "killed" / f"round_{k}" / name).read_bytes()
            assert a == b, f"round_{k}/{name} differs after kill/resume"
        ra = sorted(map(_key, io.iter_jsonl(tmp_path / "ref" / f"round_{k}" / "rollouts.jsonl")))
        rb = list(map(_key, io.iter_jsonl(tmp_path / "killed" / f"round_{k}" / "rollouts.jsonl")))
        assert len(rb) == len(set(rb)) and sorted(rb) == ra


@needs_bwrap
def test_sigterm_unwinds_closes_the_backend_and_resumes(tmp_path):
    ref = cfg_file(tmp_path, tmp_path / "ref")
    _run(ref)
    (tmp_path / "t").mkdir()
    stopped = cfg_file(tmp_path / "t", tmp_path / "stopped")
    p = _run(stopped, env={"SELFPLAY_SCRIPTED_DELAY": "0.3"}, wait=False)
    deadline = time.time() + 60
    while not (tmp_path / "stopped" / "round_0" / "rollouts.jsonl").exists() and time.time() < deadline:
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    err = err.decode()
    assert p.returncode == 143, err[-2000:]
    assert "stopped by SIGTERM; rerun the same command to resume" in err
    assert "[scripted] backend closed" in err  # the finally blocks ran
    assert not (tmp_path / "stopped" / "round_0" / "pairs.jsonl").exists()
    _run(stopped)
    for name in ("problems.jsonl", "pairs.jsonl"):
        assert (tmp_path / "ref" / "round_0" / name).read_bytes() == \
            (tmp_path / "stopped" / "round_0" / name).read_bytes()
