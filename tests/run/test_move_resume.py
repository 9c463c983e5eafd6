"""A run you can move: provenance stores paths inside OUT relative to OUT and identifies a local
model by its fingerprint, so a finished run moved elsewhere (or named by another path string)
resumes with every round skipped, and a model that really changed is still refused.

Training is a stand-in (selfplay.train.launch.train writes a small model directory): the loop's
bookkeeping of trained rounds is what is tested, not DPO."""
import json
import shutil
from pathlib import Path

import pytest

from selfplay.cli.main import main
from selfplay.core import io, provenance
from selfplay.run.context import round_model
from selfplay.run.layout import run_config
from selfplay.train import launch as train_launch
from selfplay.train.data import NoUsablePairs
from tests.conftest import needs_bwrap

pytestmark = needs_bwrap
TOML = """
[run]
seed = 4
rounds = 3
out = "{out}"
[model]
backend = "scripted"
name = "scripted-model"
[seeds]
problems = 5
[pose]
attempts = 2
witness = "program"
[solve]
samples = 4
[eval]
heldout_problems = 4
samples = 2
ood_problems = 2
"""
NOT_TRAINED = "round_2"  # its pairs count as unusable: round 3 (its eval) starts from round 1's model


def fake_train(calls):
    def train(cfg, pair_files, base_model, out_dir, *, seed, logging_dir, stats_path):
        out_dir = Path(out_dir)
        calls.append((out_dir.parent.name, base_model))
        if out_dir.parent.name == NOT_TRAINED:
            raise NoUsablePairs("no usable pairs (stand-in)")
        out_dir.mkdir(parents=True)
        (out_dir / "config.json").write_text(json.dumps({"model_type": "llama", "seed": seed}))
        (out_dir / "model.safetensors").write_bytes(f"weights of seed {seed}".encode() * 64)
        return {"n_train": len(pair_files), "steps": 1}
    return train


@pytest.fixture
def trainer(monkeypatch):
    calls = []
    monkeypatch.setattr(train_launch, "train", fake_train(calls))
    return calls


def selfplay(capsys, *args):
    rc = main([str(a) for a in args])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


OUTPUTS = ("problems.jsonl", "rollouts.jsonl", "pairs.jsonl", "train_pairs.jsonl", "train_stats.json", "eval.json",
           "provenance.json", "model/config.json", "model/model.safetensors")


def snapshot(out):
    """Every stage output of the run with its mtime and bytes (a regenerated one differs in mtime)."""
    files = [out / "eval_base.json", out / "provenance.json"]
    files += [out / f"round_{k}" / name for k in range(3) for name in OUTPUTS]
    return {str(f.relative_to(out)): (f.stat().st_mtime_ns, f.read_bytes()) for f in files if f.exists()}


@pytest.fixture
def finished(tmp_path, trainer, capsys, monkeypatch):
    """A finished three-round run made with a relative --out from tmp_path (as `runs/default`)."""
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "c.toml"
    cfg.write_text(TOML.format(out="runs/a"))
    rc, _, err = selfplay(capsys, "run", "--config", cfg)
    assert rc == 0, err[-3000:]
    assert [c[0] for c in trainer] == ["round_0", "round_1", "round_2"]
    assert trainer[1][1] == "runs/a/round_0/model"  # round 1 trains from round 0's model, named in OUT
    stats2 = io.read_json(tmp_path / "runs/a/round_2/train_stats.json")
    assert stats2["trained"] is False
    trainer.clear()
    return tmp_path / "runs" / "a"


def resume(capsys, out):
    rc, text, err = selfplay(capsys, "run", "--out", out)
    assert rc == 0, err[-3000:]
    return text


def test_same_run_by_absolute_path_is_skipped(finished, capsys, trainer):
    before = snapshot(finished)
    text = resume(capsys, finished.resolve())
    for k in range(3):
        assert f"round {k} complete, skipped" in text
    assert trainer == [] and snapshot(finished) == before


def test_moved_run_resumes_by_absolute_and_relative_path(finished, tmp_path, capsys, trainer, monkeypatch):
    before = snapshot(finished)
    assert len(before) == 2 + 3 * len(OUTPUTS) - 2  # round 2 (not trained) has no model
    moved = tmp_path / "elsewhere" / "b"
    moved.parent.mkdir()
    shutil.move(str(finished), str(moved))
    for how in (moved.resolve(), "../elsewhere/b"):
        cwd = tmp_path / "other"
        cwd.mkdir(exist_ok=True)
        monkeypatch.chdir(cwd)
        text = resume(capsys, how)
        assert [line for line in text.splitlines() if "complete" in line] == [
            f"round {k} complete, skipped" for k in range(3)], text
        assert trainer == [], f"resuming {how} trained again"
        assert snapshot(moved) == before, f"resuming {how} rewrote a stage output"
    # round 2 was not trained: round 3 starts from round 1's model, found where the run now is
    cfg = run_config(moved, {"run.out": str(moved)})
    assert Path(round_model(cfg, moved, 3)) == moved / "round_1" / "model"
    assert Path(round_model(cfg, moved, 2)) == moved / "round_1" / "model"


def test_entries_name_models_inside_out_relative_to_out(finished):
    prov = provenance.read(finished / "round_1")
    for name in ("problems.jsonl", "rollouts.jsonl", "train_stats.json", "eval.json"):
        assert prov[name]["model"] in ("round_0/model", "round_1/model"), (name, prov[name])
        assert not prov[name]["model_fingerprint"].startswith("id:")
    assert io.read_json(finished / "round_2" / "train_stats.json")["start_model"] == "round_1/model"
    assert provenance.read(finished / "round_0")["rollouts.jsonl"]["model"] == "scripted-model"


def test_a_model_that_really_changed_is_refused(finished, capsys):
    weights = finished / "round_0" / "model" / "model.safetensors"
    weights.write_bytes(b"other weights" * 64)
    before = snapshot(finished)
    rc, _, err = selfplay(capsys, "run", "--out", finished)
    assert rc == 2
    line = err.strip().splitlines()[-1]
    # the first stage made from round 0's model: its evaluation
    assert line.startswith(f"selfplay: error: {finished / 'round_0' / 'eval.json'}: made with model_fingerprint="), err
    assert "(model 'round_0/model'), now " in line and "delete it to redo" in line, err
    assert snapshot(finished) == before


def _as_old_run(out, how):
    """Rewrite the run's provenance entries (and start_model) the way selfplay wrote them before:
    the model as the path string it was reached by (`how(round dir)`)."""
    for k in range(3):
        rdir = out / f"round_{k}"
        prov = provenance.read(rdir)
        for entry in prov.values():
            m = entry.get("model", "")
            if m.startswith("round_"):
                entry["model"] = str(how(out / m))
        io.write_json(rdir / provenance.PROVENANCE, prov)
    stats_path = out / "round_2" / "train_stats.json"
    stats = io.read_json(stats_path)
    stats["start_model"] = str(how(out / stats["start_model"]))
    io.write_json(stats_path, stats)


@pytest.mark.parametrize("old_style", ["absolute", "cwd-relative"])
def test_old_runs_resume_when_the_fingerprint_matches(finished, tmp_path, capsys, trainer, monkeypatch, old_style):
    how = (lambda p: p.resolve()) if old_style == "absolute" else (lambda p: p.relative_to(tmp_path))
    _as_old_run(finished, how)
    assert provenance.read(finished / "round_1")["eval.json"]["model"].endswith("a/round_1/model")
    before = snapshot(finished)
    moved = tmp_path / "moved"
    shutil.move(str(finished), str(moved))  # the old strings now name nothing
    text = resume(capsys, moved)
    assert [line for line in text.splitlines() if "complete" in line] == [
        f"round {k} complete, skipped" for k in range(3)], text
    assert trainer == [] and snapshot(moved) == before


# ---- the comparison itself

class _Cfg:
    """The part of a Config that provenance.key reads."""

    def __init__(self, out):
        self.run = type("Run", (), {"out": str(out)})()

    def to_dict(self):
        return {"run": {"out": self.run.out}}


def _model(path, weights=b"w" * 100):
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    (path / "model.safetensors").write_bytes(weights)
    return path


def test_key_and_check_compare_models_by_content(tmp_path, monkeypatch):
    out = tmp_path / "run"
    model = _model(out / "round_0" / "model")
    outside = _model(tmp_path / "base")
    monkeypatch.chdir(tmp_path)
    target = out / "round_1" / "eval.json"
    target.parent.mkdir()
    k_abs = provenance.key(_Cfg(out), model=str(model))
    k_rel = provenance.key(_Cfg("run"), model="run/round_0/model")
    assert k_abs["model"] == k_rel["model"] == "round_0/model" and k_abs == k_rel
    assert provenance.key(_Cfg(out), model=str(outside))["model"] == str(outside)  # outside OUT: as given
    assert provenance.key(_Cfg(out), model="org/hub-model")["model"] == "org/hub-model"
    provenance.record(target, k_abs)
    target.write_text("{}")
    assert provenance.check(target, k_rel)
    # an old entry naming the model by another path string: the fingerprint decides
    provenance.record(target, {**k_abs, "model": "/somewhere/it/was/round_0/model"})
    assert provenance.check(target, k_abs)
    # the same path, other weights: refused
    (model / "model.safetensors").write_bytes(b"x" * 100)
    with pytest.raises(provenance.StaleOutput, match="model_fingerprint="):
        provenance.check(target, provenance.key(_Cfg(out), model=str(model)))
    # hub ids (fingerprint id:NAME) compare by name
    provenance.record(target, provenance.key(_Cfg(out), model="org/hub-model"))
    assert provenance.check(target, provenance.key(_Cfg(out), model="org/hub-model"))
    with pytest.raises(provenance.StaleOutput, match="model='org/hub-model', now 'org/other'"):
        provenance.check(target, provenance.key(_Cfg(out), model="org/other"))


def test_a_model_dir_gone_is_not_the_model_it_was(tmp_path):
    out = tmp_path / "run"
    model = _model(out / "round_0" / "model")
    target = out / "round_1" / "eval.json"
    target.parent.mkdir()
    entry = provenance.key(_Cfg(out), model=str(model))
    provenance.record(target, entry)
    target.write_text("{}")
    shutil.rmtree(model)
    with pytest.raises(provenance.StaleOutput, match="model_fingerprint"):
        provenance.check(target, provenance.key(_Cfg(out), model=str(model)))


def test_locate_reads_an_out_relative_model_back(tmp_path):
    out = tmp_path / "run"
    _model(out / "round_0" / "model")
    assert provenance.locate("round_0/model", out) == str(out / "round_0" / "model")
    assert provenance.locate("org/hub-model", out) == "org/hub-model"
    assert provenance.locate("/abs/elsewhere", out) == "/abs/elsewhere"
    assert provenance.locate(str(tmp_path), out) == str(tmp_path)
