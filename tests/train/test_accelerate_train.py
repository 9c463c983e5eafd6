"""`selfplay train --round K` under `accelerate launch` on CPU: 2 processes (DDP over gloo), a
couple of real DPO steps on the embedded model; and the loop's own launcher
(train.launcher = "accelerate"), which spawns the same launch itself.

The round's pairs come from the scripted backend (fast); the training is the real model under
TRL on every rank, and only rank 0 writes the model and the stats. DeepSpeed ZeRO-2/3 (an
accelerate config file) needs GPUs: those tests are marked gpu and skip here.
"""
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tests.conftest import needs_bwrap

pytestmark = [pytest.mark.model, needs_bwrap]
ROOT = Path(__file__).resolve().parents[2]

TOML = """
[run]
seed = 3
out = "{out}"
[model]
backend = "scripted"
[seeds]
problems = 6
[pose]
attempts = 0
[solve]
samples = 4
[filters]
enabled = false
[train]
max_steps = 2
batch_size = 1
grad_accum = 1
max_length = 256
launcher = "{launcher}"
num_processes = {n}
{extra}
[eval]
enabled = false
"""


def _pairs_round(tmp_path: Path, launcher: str = "none", n: int = 1, extra: str = "") -> tuple[Path, Path]:
    out = tmp_path / "out"
    cfg = tmp_path / "c.toml"
    cfg.write_text(TOML.format(out=out, launcher=launcher, n=n, extra=extra))
    for stage in ("problems", "solve", "pair"):
        r = subprocess.run([sys.executable, "-m", "selfplay", stage, "--config", str(cfg), "--round", "0"],
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
    assert (out / "round_0" / "pairs.jsonl").read_bytes().count(b"\n") >= 2
    return cfg, out


def _env() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # 2 processes on 2 cores
    for k in ("SELFPLAY_KILL_AT", "WORLD_SIZE", "RANK", "LOCAL_RANK"):
        env.pop(k, None)
    return env


def _check_trained(out: Path, processes: int) -> dict:
    rdir = out / "round_0"
    stats = orjson.loads((rdir / "train_stats.json").read_bytes())
    assert stats["trained"] is True and stats["steps"] == 2 and stats["processes"] == processes
    assert (rdir / "model" / "config.json").exists() and (rdir / "model" / "model.safetensors").exists()
    assert not list(rdir.glob("model.tmp")) and not list(rdir.glob("model.work")) and not list(rdir.glob(".train_job*"))
    return stats


def test_train_stage_under_accelerate_launch_with_two_cpu_processes(tmp_path):
    cfg, out = _pairs_round(tmp_path)
    # accelerate's --cpu runs one process; its torchrun launcher (--multi_gpu) starts both ranks,
    # which find no CUDA and join over gloo (docs/scale.md)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "-m", "selfplay", "train", "--round", "0", "--config", str(cfg)]
    r = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    assert "round 0: trained 2 steps" in r.stdout
    _check_trained(out, processes=2)
    # the stage is done: a rerun (single process) reuses it instead of training again
    again = subprocess.run([sys.executable, "-m", "selfplay", "train", "--round", "0", "--config", str(cfg)],
                           cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "trained 2 steps" in again.stdout, again.stderr[-2000:]


def test_loop_launcher_accelerate_spawns_the_launch(tmp_path):
    cfg, out = _pairs_round(tmp_path, launcher="accelerate", n=2)
    r = subprocess.run([sys.executable, "-m", "selfplay", "train", "--round", "0", "--config", str(cfg)],
                       cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    assert "accelerate.commands.launch --num_processes 2" in r.stderr
    _check_trained(out, processes=2)


@pytest.mark.gpu
@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_zero_config_trains_on_gpus(tmp_path, stage):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available() or torch.cuda.device_count() < 2:
        pytest.skip("needs 2 CUDA GPUs")
    pytest.importorskip("deepspeed")
    conf = ROOT / "configs" / "accelerate" / f"zero{stage}.yaml"
    cfg, out = _pairs_round(tmp_path, launcher="accelerate", n=2, extra=f'accelerate_config = "{conf}"')
    r = subprocess.run([sys.executable, "-m", "selfplay", "train", "--round", "0", "--config", str(cfg)],
                       cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    _check_trained(out, processes=2)
