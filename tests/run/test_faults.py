"""Fault table (issue: a run does what its config says, or stops with one clear line).

One test per scenario. Each either checks that the right thing happens or that the command exits
2 with one line naming the file, field or stage, and that nothing is left half-written. Crash
resume lives in test_kill_points.py. Generation here is the scripted fake (fast); the scenarios
are about the loop's bookkeeping, and the real model's path is covered there and in
test_loop_train.py / test_real_round.py."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from selfplay.config import load_config
from selfplay.core import io, provenance
from selfplay.run.loop import run_loop
from tests.conftest import RUN_TOML as TOML  # noqa: F401
from tests.conftest import cfg_file, one_line_error

ROOT = Path(__file__).resolve().parents[2]




def sp(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "selfplay", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})




# -- training: only "no usable pairs" is carried on from --------------------------------------

def test_other_training_error_stops_the_run(tmp_path, monkeypatch):
    import selfplay.train.launch as launch

    def boom(*a, **k):
        raise ValueError("max_prompt_length must be < max_length")

    monkeypatch.setattr(launch, "train_dpo", boom)
    cfg = load_config(cfg_file(tmp_path, tmp_path / "o", rounds=2, train="true"))
    with pytest.raises(ValueError, match="max_prompt_length"):
        run_loop(cfg)
    assert not (tmp_path / "o" / "round_0" / "train_stats.json").exists()
    assert not (tmp_path / "o" / "round_1").exists()  # never went on to an untrained round


def test_no_usable_pairs_marks_round_not_trained_and_hands_on_a_hub_id(tmp_path, monkeypatch):
    import selfplay.train.launch as launch
    from selfplay.train.data import NoUsablePairs

    calls = []

    def none_usable(files, base, out_dir, cfg, **kw):
        calls.append(base)
        raise NoUsablePairs("no usable DPO pairs: all too long")

    monkeypatch.setattr(launch, "train_dpo", none_usable)
    # a hub id, not a directory: the old fallback copied the model directory and crashed here
    cfg = load_config(cfg_file(tmp_path, tmp_path / "o", rounds=2, train="true", model="org/hub-model"))
    stats = run_loop(cfg)
    assert calls == ["org/hub-model", "org/hub-model"]  # round 1 started from the same model
    tr = io.read_json(tmp_path / "o" / "round_0" / "train_stats.json")
    assert tr["trained"] is False and tr["start_model"] == "org/hub-model" and "too long" in tr["reason"]
    assert not (tmp_path / "o" / "round_0" / "model").exists()  # by reference, no copy
    assert stats[1]["model"] == "org/hub-model"
    from selfplay.inspect.report import write_report
    from selfplay.run.summary import print_summary

    text = write_report(tmp_path / "o").read_text()
    assert "NOT TRAINED" in text and "Rounds without training" in text
    print_summary(stats[0])


# -- stage provenance -------------------------------------------------------------------------

def test_verify_invalidates_everything_made_from_the_old_labels(tmp_path):
    out = tmp_path / "o"
    cfg = cfg_file(tmp_path, out, rounds=2)
    assert sp("run", "--config", cfg).returncode == 0
    old_pairs = (out / "round_0" / "pairs.jsonl").read_bytes()
    rows = list(io.iter_jsonl(out / "round_0" / "rollouts.jsonl"))  # one stale label: verify changes it back
    rows[0]["label"] = "incorrect" if rows[0]["label"] == "correct" else "correct"
    io.write_jsonl(out / "round_0" / "rollouts.jsonl", rows)
    r = sp("verify", out / "round_0" / "rollouts.jsonl")
    assert r.returncode == 0, r.stderr
    assert "moved to" in r.stdout and "round_1" in r.stdout
    assert not (out / "round_0" / "pairs.jsonl").exists() and not (out / "round_1").exists()
    assert list((out / "stale").glob("*/round_0/pairs.jsonl"))
    assert (out / "round_0" / "rollouts.jsonl").exists()  # the relabelled input stays
    r = sp("run", "--config", cfg)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (out / "round_0" / "pairs.jsonl").read_bytes() == old_pairs  # same verifier: same pairs
    assert (out / "round_1" / "pairs.jsonl").exists()


def test_pair_refuses_incomplete_rollouts(tmp_path):
    out = tmp_path / "o"
    cfg = cfg_file(tmp_path, out)
    assert sp("problems", "--config", cfg).returncode == 0
    one_line_error(sp("pair", "--config", cfg), "rollouts.jsonl not found", "selfplay solve --round 0")
    assert sp("solve", "--config", cfg).returncode == 0
    lines = (out / "round_0" / "rollouts.jsonl").read_bytes().splitlines(keepends=True)
    (out / "round_0" / "rollouts.jsonl").write_bytes(b"".join(lines[:-4]))  # the last problem unsolved
    one_line_error(sp("pair", "--config", cfg), "1 of 6 problems are not solved yet")
    assert not (out / "round_0" / "pairs.jsonl").exists()


def test_pair_and_stats_before_solve_are_refused(tmp_path):
    cfg = cfg_file(tmp_path, tmp_path / "o", rounds=3)
    one_line_error(sp("pair", "--config", cfg, "--round", "2"), "problems.jsonl not found")
    one_line_error(sp("stats", "--config", cfg, "--round", "0"), "problems.jsonl not found")
    assert not (tmp_path / "o" / "round_2" / "pairs.jsonl").exists()


def test_stage_of_a_round_whose_previous_round_is_untrained_is_refused(tmp_path):
    out = tmp_path / "o"
    cfg = cfg_file(tmp_path, out, rounds=2, train="true")
    one_line_error(sp("problems", "--config", cfg, "--round", "1"), "round 0 is not trained yet", "--model")
    assert not (out / "round_1").exists()
    # --model names the round's model: accepted, and recorded as what the rollouts came from
    for cmd in ("problems", "solve"):
        assert sp(cmd, "--config", cfg, "--round", "1", "--model", "other-model").returncode == 0
    assert provenance.read(out / "round_1")["rollouts.jsonl"]["model"] == "other-model"


def test_rollouts_from_another_model_are_refused_not_reused(tmp_path, monkeypatch):
    out = tmp_path / "o"
    cfg = load_config(cfg_file(tmp_path, out))
    run_loop(cfg)
    import selfplay.run.context as context

    monkeypatch.setattr(context, "round_model", lambda *a: "a-newer-model")
    with pytest.raises(provenance.StaleOutput, match="model='scripted-model', now 'a-newer-model'"):
        run_loop(cfg)


def test_resume_after_a_verifier_upgrade_is_refused_with_the_way_out(tmp_path, monkeypatch):
    out = tmp_path / "o"
    cfg = load_config(cfg_file(tmp_path, out))
    run_loop(cfg)
    assert io.read_json(out / "config.json")["versions"]["verifier"] == provenance.verifier_version()
    monkeypatch.setattr(provenance, "verifier_version", lambda: "0123456789abcdef")
    with pytest.raises(provenance.StaleOutput, match=r"rollouts.jsonl: made with verifier=.*selfplay verify"):
        run_loop(cfg)


def test_output_without_provenance_is_refused(tmp_path):
    out = tmp_path / "o"
    cfg = load_config(cfg_file(tmp_path, out))
    run_loop(cfg)
    (out / "round_0" / "provenance.json").unlink()  # as written by selfplay 0.1
    with pytest.raises(provenance.StaleOutput, match="problems.jsonl: no provenance record"):
        run_loop(cfg)


# -- errors up front: one line, nothing written -----------------------------------------------

def test_out_is_a_file_or_under_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    cfg = cfg_file(tmp_path, tmp_path / "unused")
    one_line_error(sp("run", "--config", cfg, "--out", f), "is a file")
    one_line_error(sp("run", "--config", cfg, "--out", f / "sub"), "is a file")


def test_out_not_writable(tmp_path):
    cfg = cfg_file(tmp_path, tmp_path / "unused")
    one_line_error(sp("run", "--config", cfg, "--out", "/proc/selfplay-out"), "/proc")


def test_config_is_a_directory(tmp_path):
    one_line_error(sp("run", "--config", tmp_path), "is a directory")


def test_missing_model_path_writes_nothing_and_the_rerun_works(tmp_path):
    out = tmp_path / "o"
    cfg = cfg_file(tmp_path, out)
    r = sp("run", "--config", cfg, "--model", "./no/such/model", "--backend", "hf")
    one_line_error(r, "--model ./no/such/model", "no such directory")
    assert not out.exists()  # config.json was not pinned to the bad path
    assert sp("run", "--config", cfg).returncode == 0


def test_hub_typo_fails_fast(tmp_path):
    import time

    cfg = cfg_file(tmp_path, tmp_path / "o")
    t0 = time.monotonic()
    r = sp("run", "--config", cfg, "--model", "HuggingFaceTB/SmolLM2-135M-Instrcut", "--backend", "hf",
           env={"HF_HUB_OFFLINE": "1"})
    one_line_error(r, "SmolLM2-135M-Instrcut")
    assert time.monotonic() - t0 < 30  # the hub client's retries took ~49 s before
    assert not (tmp_path / "o").exists()


def test_eval_of_an_empty_set_is_refused_before_loading(tmp_path):
    f = tmp_path / "empty.jsonl"
    f.write_text("")
    one_line_error(sp("eval", "--model", "default", "--data", f), "'empty'", "no problems")


def test_report_on_an_empty_dir(tmp_path):
    one_line_error(sp("report", "--out", tmp_path), "holds no run")
    assert not (tmp_path / "report.md").exists()


def test_stats_keeps_train_eval_and_warnings(tmp_path):
    out = tmp_path / "o"
    cfg = cfg_file(tmp_path, out)
    assert sp("run", "--config", cfg).returncode == 0
    path = out / "round_0" / "stats.json"
    stats = io.read_json(path)
    stats.update(train={"n_train": 5}, eval={"sets": {}}, warnings=["w"])
    io.write_json(path, stats)
    assert sp("stats", "--config", cfg, "--round", "0").returncode == 0
    again = io.read_json(path)
    assert again["train"] == {"n_train": 5} and again["eval"] == {"sets": {}} and again["warnings"] == ["w"]
    assert again["pairs"] == stats["pairs"]


# -- CI honesty -------------------------------------------------------------------------------

def test_a_skip_is_a_failure_under_ci(tmp_path):
    t = tmp_path / "test_probe.py"
    t.write_text("import pytest\n\ndef test_needs_bwrap():\n    pytest.skip('bubblewrap not installed')\n")
    conftest = (ROOT / "tests" / "conftest.py").read_text()
    (tmp_path / "conftest.py").write_text(conftest)
    run = lambda ci: subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(t)],
                                    cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "CI": ci})
    assert run("true").returncode == 1
    assert run("").returncode == 0


def test_setup_stops_when_the_model_conversion_fails(tmp_path):
    r = subprocess.run(["bash", "scripts/setup.sh"], cwd=ROOT, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "SELFPLAY_CACHE": "/proc/no-cache-here"})
    assert r.returncode != 0 and "converting the embedded model failed" in r.stderr, r.stderr[-2000:]
