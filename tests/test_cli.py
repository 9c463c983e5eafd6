"""The `selfplay` CLI: one clear error line for bad input, eval on a saved/default model."""
import subprocess
import sys
from pathlib import Path

import pytest

from selfplay import io

ROOT = Path(__file__).resolve().parents[1]


def sp(*args, **kw):
    return subprocess.run([sys.executable, "-m", "selfplay", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=kw.get("timeout", 120))


def test_help_lists_every_command():
    out = sp("--help").stdout
    for cmd in ("run", "problems", "solve", "pair", "stats", "verify", "eval", "report"):
        assert cmd in out
    assert "--max-new-tokens" in sp("run", "--help").stdout


@pytest.mark.parametrize("toml,needle", [
    ("[solve]\nsamples = 1\n", "config: solve.samples: must be >= 2"),
    ("[solve]\nsampels = 3\n", "config: solve.sampels: unknown field"),
    ("[seeds]\nfiles = ['nope.jsonl']\n", "config: seeds.files: nope.jsonl not found"),
])
def test_bad_config_is_one_line(tmp_path, toml, needle):
    f = tmp_path / "c.toml"
    f.write_text(toml)
    r = sp("run", "--config", f, "--out", tmp_path / "o")
    assert r.returncode == 2 and needle in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists()  # nothing half-written


def test_eval_bad_data_line_names_file_and_line(tmp_path):
    f = tmp_path / "e.jsonl"
    f.write_text('{"question": "1+1?", "answer": "2"}\n{"question": "no answer"}\n')
    r = sp("eval", "--model", "default", "--data", f)
    assert r.returncode == 2 and "e.jsonl:2" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_verify_missing_file(tmp_path):
    r = sp("verify", tmp_path / "rollouts.jsonl")
    assert r.returncode == 2 and "file not found" in r.stderr


@pytest.mark.model
def test_eval_real_model(tmp_path):
    f = tmp_path / "mini.jsonl"
    io.write_jsonl(f, [{"question": "What is 2 + 2?", "answer": "4"}, {"question": "What is 5 + 3?", "answer": "8"}])
    out = tmp_path / "eval.json"
    r = sp("eval", "--model", "default", "--data", f, "--samples", "2", "--max-new-tokens", "48", "-o", out,
           timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    res = io.read_json(out)
    s = res["sets"]["mini"]
    assert s["n"] == 2 and 0 <= s["pass@1"] <= 1 and len(s["pass@1_ci"]) == 2 and s["k"] == 2


def test_eval_needs_data_or_heldout():
    r = sp("eval", "--model", "default")
    assert r.returncode == 2 and "--data FILE.jsonl and/or --heldout N" in r.stderr
