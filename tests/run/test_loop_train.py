"""The loop with real DPO training on the real embedded model (generation scripted for speed):
train_pairs/model/eval files per round, resume after kill -9 during training, contamination."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from selfplay.core import io
from tests.conftest import needs_bwrap

pytestmark = [pytest.mark.model, needs_bwrap]
ROOT = Path(__file__).resolve().parents[2]
TOML = """
[run]
seed = 2
rounds = 2
out = "{out}"
[model]
backend = "scripted"
[seeds]
problems = 6
[pose]
attempts = 2
[solve]
samples = 4
[train]
max_steps = 2
batch_size = 2
grad_accum = 1
[eval]
heldout_problems = 6
samples = 2
ood = false  # kill and resume; the out-of-distribution sets run in test_vllm_loop
"""


def _start(cfg):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "selfplay", "run", "--config", str(cfg)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_two_rounds_with_training_resume_after_kill_in_training(tmp_path):
    cfg = tmp_path / "c.toml"
    out = tmp_path / "out"
    cfg.write_text(TOML.format(out=out))
    p = _start(cfg)
    deadline = time.time() + 600
    while not (out / "round_0" / "train_pairs.jsonl").exists():  # training of round 0 has begun
        assert p.poll() is None, p.stdout.read().decode()[-3000:]
        assert time.time() < deadline
        time.sleep(0.2)
    time.sleep(3)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert not (out / "round_0" / "train_stats.json").exists(), "the kill came after training"
    p = _start(cfg)
    log = p.communicate(timeout=1200)[0].decode()
    assert p.returncode == 0, log[-3000:]
    for k in (0, 1):
        rd = out / f"round_{k}"
        assert (rd / "model" / "config.json").exists() and (rd / "eval.json").exists()
        assert not (rd / "model.tmp").exists()
        tr = io.read_json(rd / "train_stats.json")
        assert tr["n_train"] > 0 and tr["steps"] == 2 and tr["mix"]["rounds_used"] == list(range(k + 1))
        c = io.read_json(rd / "contamination.json")
        assert c["heldout"] == 6 and c["clean"] is True, c
    stats1 = io.read_json(out / "round_1" / "stats.json")
    assert stats1["model"].endswith("round_0/model")  # round 1 sampled from round 0's model
    assert (out / "eval_base.json").exists() and (out / "report.md").exists()
    report = (out / "report.md").read_text()
    assert "| 0 " in report and "| 1 " in report
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(out / "round_1" / "model")
