"""`selfplay verify`: it invalidates only what changed. Unchanged verdicts move nothing and the next
`selfplay run` resumes without redoing anything; a changed label (or reason, or extracted answer)
still moves round K's products and every later round to OUT/stale/; --dry-run writes nothing."""
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from selfplay.core import io, provenance
from tests.conftest import cfg_file, one_line_error

ROOT = Path(__file__).resolve().parents[2]
OLD_VERIFIER = "0123456789abcdef"  # what an older verifier's fingerprint looks like in provenance.json


def sp(*args):
    return subprocess.run([sys.executable, "-m", "selfplay", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, check=False)


def snapshot(root: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every file under `root`: mtime (ns), size and content; directories by name."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            out[os.path.relpath(os.path.join(dirpath, name), root) + "/"] = (0, 0, b"")
        for name in filenames:
            p = Path(dirpath) / name
            st = p.stat()
            out[os.path.relpath(p, root)] = (st.st_mtime_ns, st.st_size, p.read_bytes())
    return out


@pytest.fixture
def run(tmp_path):
    """A finished two-round scripted run (no training, no eval: the products are problems,
    rollouts, filters, pairs and stats)."""
    out = tmp_path / "o"
    r = sp("run", "--config", cfg_file(tmp_path, out, rounds=2))
    assert r.returncode == 0, r.stderr[-2000:]
    assert (out / "round_1" / "pairs.jsonl").exists()
    return out


def _edit_first(path: Path, field: str, value=None):
    """Change one judged rollout's `field` (a label flipped, or another extracted answer)."""
    rows = [orjson.loads(x) for x in path.read_bytes().splitlines()]
    i = next(i for i, d in enumerate(rows) if d["label"] in ("correct", "incorrect"))
    rows[i][field] = ({"correct": "incorrect", "incorrect": "correct"}[rows[i]["label"]] if field == "label"
                      else value)
    io.write_jsonl(path, rows)
    return rows[i]


def test_verify_of_unchanged_labels_moves_nothing_and_the_run_goes_on(run):
    rollouts = run / "round_0" / "rollouts.jsonl"
    # as after a verifier upgrade: the rollouts were labelled by another verifier, so `run` refuses them
    prov = io.read_json(run / "round_0" / "provenance.json")
    prov["rollouts.jsonl"]["verifier"] = OLD_VERIFIER
    io.write_json(run / "round_0" / "provenance.json", prov)
    r = sp("run", "--out", run)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "rollouts.jsonl: made with verifier='0123" in r.stderr and "selfplay verify" in r.stderr
    before = snapshot(run)

    r = sp("verify", rollouts)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "24 rollouts" in r.stdout and "0 labels changed, 0 verdicts" in r.stdout
    assert "nothing moved" in r.stdout and "moved to" not in r.stdout
    after = snapshot(run)
    assert not (run / "stale").exists()
    # only the rollouts' provenance entry (and the log) changed: the rollouts file keeps its bytes
    # (the pairs' provenance names its hash), every product stays where it was
    assert {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)} == {
        "round_0/provenance.json", "run.log"}
    entry = io.read_json(run / "round_0" / "provenance.json")["rollouts.jsonl"]
    assert entry == {**prov["rollouts.jsonl"], "verifier": provenance.verifier_version()}

    r = sp("run", "--out", run)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.splitlines() == ["round 0 complete, skipped", "round 1 complete, skipped"]
    again = snapshot(run)
    for k in (0, 1):
        for name in ("problems.jsonl", "rollouts.jsonl", "filters.json", "pairs.jsonl"):
            key = f"round_{k}/{name}"
            assert again[key] == after[key], key  # not remade: same bytes, same mtime


@pytest.mark.parametrize("field,labels", [("label", 1), ("extracted", 0)])
def test_verify_with_a_changed_verdict_invalidates_round_k_and_later(run, field, labels):
    rollouts = run / "round_0" / "rollouts.jsonl"
    old_pairs = (run / "round_0" / "pairs.jsonl").read_bytes()
    edited = _edit_first(rollouts, field, "12345678")
    r = sp("verify", rollouts)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"{labels} labels changed, 1 verdicts" in r.stdout  # an extracted answer alone counts too
    assert "moved to" in r.stdout and "round_0/pairs.jsonl" in r.stdout and "round_1" in r.stdout
    for gone in ("round_0/pairs.jsonl", "round_0/filters.json", "round_0/stats.json", "round_1"):
        assert not (run / gone).exists(), gone
        assert len(list((run / "stale").glob(f"*/{gone}"))) == 1, gone
    restored = next(d for d in io.iter_jsonl(rollouts)
                    if (d["problem_id"], d["sample_index"]) == (edited["problem_id"], edited["sample_index"]))
    assert restored[field] != edited[field]  # relabelled by the verifier
    r = sp("run", "--out", run)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "round 0 complete, skipped" not in r.stdout  # remade, not skipped
    assert (run / "round_0" / "pairs.jsonl").read_bytes() == old_pairs  # same verdicts again: same pairs
    assert (run / "round_1" / "pairs.jsonl").exists()


def test_dry_run_writes_nothing(run, tmp_path):
    rollouts = run / "round_0" / "rollouts.jsonl"
    _edit_first(rollouts, "label")
    before = snapshot(tmp_path)
    r = sp("verify", rollouts, "--dry-run")
    assert r.returncode == 0, r.stderr[-2000:]
    assert snapshot(tmp_path) == before  # no file, folder, mtime or byte changed (run.log included)
    out = r.stdout.splitlines()
    assert "would change 1 labels, 1 verdicts" in out[0] and "nothing written" in out[0]
    assert out[1] == f"would rewrite {rollouts}"
    assert out[2] == (f"would move to {run.resolve() / 'stale'}/: round_0/filters.json, round_0/pairs.jsonl, "
                      f"round_0/stats.json, round_1")
    # what the real command then moves is what the dry run listed
    r = sp("verify", rollouts)
    assert "moved to" in r.stdout
    assert "round_0/filters.json, round_0/pairs.jsonl, round_0/stats.json, round_1;" in r.stdout


def test_dry_run_of_unchanged_labels(run):
    before = snapshot(run)
    r = sp("verify", run / "round_1" / "rollouts.jsonl", "--dry-run")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "would change 0 labels, 0 verdicts" in r.stdout and r.stdout.splitlines()[-1] == "would move nothing"
    assert snapshot(run) == before


def test_dry_run_of_a_missing_file_is_one_line(tmp_path):
    one_line_error(sp("verify", tmp_path / "round_0" / "rollouts.jsonl", "--dry-run"), "file not found")
    assert list(tmp_path.iterdir()) == []
