"""`selfplay status`, OUT/run.log, resuming a run from its own config.json, and a finished round
rerun: killed mid-round, status names the stage in progress and counts what the files hold."""
import os
import re
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from selfplay import __version__
from selfplay.core import io
from selfplay.core import log as runlog
from selfplay.inspect.status import format_status, run_status
from tests.conftest import RUN_TOML as TOML
from tests.conftest import one_line_error

ROOT = Path(__file__).resolve().parents[2]
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} \[\d+\] (INFO|WARNING|ERROR) .*$")


def sp(*args, env=None):
    return subprocess.run([sys.executable, "-m", "selfplay", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, **(env or {})})


def config(tmp_path, out, rounds=2):
    f = tmp_path / "c.toml"
    text = TOML.format(out=out, rounds=rounds, train="false", model="scripted-model")
    assert "[solve]\nsamples = 4\n" in text
    # batch_problems = 2: rollouts.jsonl grows by 2 problems x 4 samples at a time
    f.write_text(text.replace("[solve]\nsamples = 4\n", "[solve]\nsamples = 4\nbatch_problems = 2\n"))
    return f


def lines(path):
    return [orjson.loads(x) for x in path.read_bytes().splitlines() if x.strip()]


def test_killed_mid_round_status_names_the_stage_and_counts_the_files(tmp_path):
    out = tmp_path / "o"
    cfg = config(tmp_path, out)
    r = sp("run", "--config", cfg, env={"SELFPLAY_KILL_AT": "solve:batch:2"})
    assert r.returncode == -9, r.stderr[-2000:]
    r = sp("status", out, "--json")
    assert r.returncode == 0, r.stderr
    s = orjson.loads(r.stdout)
    r0 = s["rounds"][0]
    problems, rollouts = lines(out / "round_0" / "problems.jsonl"), lines(out / "round_0" / "rollouts.jsonl")
    assert len(rollouts) == 16  # two batches of 2 problems x 4 samples were appended before the kill
    assert r0["in_progress"] == "solve" and r0["stages"]["problems"] == "done" and r0["stages"]["pair"] == "pending"
    assert r0["counts"]["problems"] == len(problems) == 6
    assert r0["counts"]["samples"] == len(rollouts)
    assert r0["counts"]["solved_problems"] == len({x["problem_id"] for x in rollouts}) == 4
    assert r0["counts"]["samples_expected"] == 6 * 4 and r0["counts"]["pairs"] is None
    assert r0["eta_s"] is not None and r0["eta_s"] >= 0
    assert s["state"] == "stopped" and "killed" in s["how"]
    assert s["rounds"][1]["exists"] is False and s["rounds"][1]["in_progress"] is None
    text = sp("status", out).stdout
    assert "round 0: in progress: solve" in text
    assert "4/6 problems solved, 16/24 samples (rollouts.jsonl: 16 lines)" in text
    assert "round 1: not started" in text and "resumes" in text

    # resume without --config: the run's own config.json; a finished round is not replayed
    r = sp("run", "--out", out)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resuming" in r.stderr and "== round 0 summary ==" in r.stdout
    s = run_status(out)
    assert s["state"] == "finished" and all(x["complete"] for x in s["rounds"])
    assert [x["counts"]["pairs"] for x in s["rounds"]] == [len(lines(out / f"round_{k}" / "pairs.jsonl"))
                                                          for k in (0, 1)]
    r = sp("run", "--out", out)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.splitlines() == ["round 0 complete, skipped", "round 1 complete, skipped"]
    # with evaluations (this config has none: written here), each round's kinds and paired gains
    def ev(right):
        return {"n": 10, "pass@1": len(right) / 10, "pass@1_ci": [0.0, 1.0], "kind": "out-of-distribution",
                "problems": [{"id": f"q{i}", "greedy": {"label": "correct" if i in right else "incorrect"}}
                             for i in range(10)]}
    io.write_json(out / "eval_base.json", {"sets": {"svamp": ev({0, 1})}})
    io.write_json(out / "round_1" / "eval.json", {"sets": {"svamp": ev({0, 1, 2, 3, 4})}})
    text = format_status(run_status(out))
    assert "svamp (out-of-distribution) pass@1 50.0%" in text
    assert "  gain vs start (greedy pass@1, paired, 95% CI): ID none evaluated | OOD +30.0 pts [" in text

    log = (out / "run.log").read_text().splitlines()
    assert all(LOG_LINE.match(x) for x in log), [x for x in log if not LOG_LINE.match(x)][:3]
    starts = [x for x in log if " START run " in x]
    assert len(starts) == 3 and sum(" END ok " in x for x in log) == 2  # the killed run wrote no END
    assert any("round 0: starting (model scripted-model; rollouts.jsonl has 16 lines)" in x for x in log)
    assert any("resuming" in x for x in log) and any("round 1 complete, skipped" in x for x in log)
    assert any(" INFO == round 1 summary ==" in x for x in log)


def test_config_mismatch_lists_every_key_and_is_logged(tmp_path):
    out = tmp_path / "o"
    cfg = config(tmp_path, out, rounds=1)
    assert sp("run", "--config", cfg).returncode == 0
    line = one_line_error(sp("run", "--out", out, "--samples", "6", "--problems", "7", "--seed", "4"),
                          "3 setting(s) differ")
    for key in ("run.seed was 3, now 4", "seeds.problems was 6, now 7", "solve.samples was 4, now 6"):
        assert key in line
    log = (out / "run.log").read_text().splitlines()
    assert re.search(r" ERROR ValueError: .*3 setting\(s\) differ", log[-2]) and " END error " in log[-1]
    s = run_status(out)
    assert s["state"] == "stopped" and "3 setting(s) differ" in s["how"]
    assert s["rounds"][0]["complete"]  # the refused resume changed nothing
    # a setting no output depends on may change on resume (provenance.MUTABLE_ON_RESUME)
    cfg.write_text(cfg.read_text() + '\n[train]\nreport_to = "tensorboard"\n' if "[train]" not in cfg.read_text()
                   else cfg.read_text().replace("[train]", '[train]\nreport_to = "tensorboard"', 1))
    r = sp("run", "--config", cfg)
    assert r.returncode == 0, r.stderr


def test_stage_commands_log_into_the_run(tmp_path):
    out = tmp_path / "o"
    cfg = config(tmp_path, out, rounds=1)
    for cmd in ("problems", "solve"):
        assert sp(cmd, "--config", cfg).returncode == 0
    one_line_error(sp("stats", "--config", cfg), "pairs.jsonl not found")
    log = (out / "run.log").read_text().splitlines()
    assert all(LOG_LINE.match(x) for x in log)
    text = "\n".join(log)
    assert re.search(rf"INFO START problems --round 0 \(selfplay {__version__}, pid \d+, argv: problems --config ", text)
    assert f"INFO 6 problems -> {out / 'round_0' / 'problems.jsonl'}" in text
    assert "INFO START solve --round 0" in text and f"INFO 24 rollouts -> {out / 'round_0' / 'rollouts.jsonl'}" in text
    assert sum(" END ok " in x for x in log) == 2
    assert re.search(r" ERROR ValueError: stats: .*pairs\.jsonl not found", log[-2]) and " END error " in log[-1]


def test_a_refused_fresh_run_writes_no_log(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text("[solve]\nsamples = 1\n")
    one_line_error(sp("run", "--config", f, "--out", tmp_path / "o"), "solve.samples")
    assert not (tmp_path / "o").exists()


def _write_prov(d, names):
    io.write_json(d / "provenance.json", {n: {"code": "x"} for n in names})


def test_status_of_training_in_progress_with_eta_from_the_log(tmp_path):
    out = tmp_path / "o"
    cfg = {"run": {"rounds": 2, "seed": 0}, "model": {"name": "m", "backend": "hf"}, "solve": {"samples": 2},
           "train": {"enabled": True, "max_steps": 4}, "eval": {"enabled": True, "heldout_problems": 4}}
    io.write_json(out / "config.json", cfg)
    d = out / "round_0"
    io.write_jsonl(d / "problems.jsonl", [{"id": f"p{i}", "origin": "procedural"} for i in range(3)])
    io.write_jsonl(d / "rollouts.jsonl", [{"problem_id": f"p{i}", "sample_index": j} for i in range(3) for j in (0, 1)])
    io.write_jsonl(d / "pairs.jsonl", [{"prompt": []}] * 5)
    io.write_jsonl(d / "train_pairs.jsonl", [{"prompt": []}] * 5)
    _write_prov(d, ["problems.jsonl", "rollouts.jsonl", "pairs.jsonl", "train_pairs.jsonl", "train_stats.json"])
    import time as _time

    t = _time.time() - 35
    entries = [(t, "START run (selfplay 0.2.0, pid {pid}, argv: run)"), (t + 1, "round 0: training on 5 pairs"),
               (t + 20, "dpo step 1/4 loss=0.69"), (t + 30, "dpo step 2/4 loss=0.60")]

    def write_log(pid):
        (out / "run.log").write_text("".join(f"{runlog.stamp(ts)} [{pid}] INFO {m.format(pid=pid)}\n"
                                             for ts, m in entries))

    write_log(os.getpid())  # a live process (this one) that wrote no END line: running
    s = run_status(out)
    r0 = s["rounds"][0]
    assert s["state"] == "running"
    assert r0["in_progress"] == "train" and r0["stages"]["solve"] == "done" and r0["stages"]["eval"] == "pending"
    # 10 s per step, 2 steps left, the last step logged 5 s ago
    assert r0["progress"] == "step 2/4" and r0["eta_s"] == pytest.approx(15, abs=1.5)
    text = format_status(s)
    assert re.search(r"\n  train     in progress  step 2/4; ETA 1[3-6] s\n", text), text
    assert "\n  pair      done         5 pairs\n" in text
    gone = subprocess.Popen(["true"])
    gone.wait()
    write_log(gone.pid)  # its process has exited: stopped, the time left counts from a resume
    s = run_status(out)
    assert s["state"] == "stopped" and s["rounds"][0]["eta_s"] == pytest.approx(20, abs=0.01)
    assert "step 2/4; about 20 s left once resumed" in format_status(s)
    assert s["rounds"][1]["exists"] is False


def test_status_refuses_what_is_not_a_run(tmp_path):
    one_line_error(sp("status", tmp_path / "nope"), "is not a directory")
    one_line_error(sp("status", tmp_path), "holds no run")
