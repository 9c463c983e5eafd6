"""kill -9 at seeded kill points of a small two-round run with real DPO training, then resume:
the resumed run must leave the same files as an uninterrupted run with the same seed.

Kill points are named places in the code (selfplay/core/faults.py; SELFPLAY_KILL_AT="name:N" sends
SIGKILL to the process the Nth time it passes one), so each kill lands exactly where it is meant
to, every time. One chain of processes takes all the kills in pipeline order: each process
resumes what the previous one left and is killed at the next point.

Generation is the scripted fake for the ten-point chain (training is the real model under TRL,
so `train:step` kills inside DPO training); a second, smaller chain runs the real model on the
hf backend and is killed twice inside its generation.
"""
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tests.conftest import needs_bwrap

pytestmark = [pytest.mark.model, needs_bwrap]
ROOT = Path(__file__).resolve().parents[2]

# The only fields allowed to differ between a resumed and an uninterrupted run: wall-clock times.
TIMING_FIELDS = {"verify_seconds", "seconds"}

# Per round, in pipeline order (eval:done first for the base model's evaluation).
ROUND_POINTS = ["problems:recorded", "solve:recorded", "solve:batch", "pair:recorded", "pair:filters",
                "train:set", "train:step", "train:saved", "eval:done"]
COMPARED = ["eval_base.json", *(f"round_{k}/{f}" for k in (0, 1) for f in (
    "problems.jsonl", "pose.json", "rollouts.jsonl", "filters.json", "pairs.jsonl", "train_pairs.jsonl",
    "eval.json", "contamination.json"))]

SCRIPTED = """
[run]
seed = 11
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
batch_problems = 2
[train]
max_steps = 1
batch_size = 2
grad_accum = 1
max_length = 256
[eval]
heldout_problems = 4
samples = 2
ood = false  # kill points; the out-of-distribution sets run in test_vllm_loop
"""

REAL = """
[run]
seed = 3
rounds = 1
out = "{out}"
[model]
backend = "hf"
batch_size = 4
[seeds]
problems = 2
[pose]
enabled = false
[solve]
samples = 4
max_new_tokens = 64
batch_problems = 1
[filters]
enabled = false
[train]
enabled = false
[eval]
heldout_problems = 2
samples = 1
max_new_tokens = 24
ood = false
"""


def _run(cfg: Path, kill_at: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # same threads in every process: same DPO step
    env.pop("SELFPLAY_KILL_AT", None)
    if kill_at:
        env["SELFPLAY_KILL_AT"] = kill_at
    return subprocess.run([sys.executable, "-m", "selfplay", "run", "--config", str(cfg)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)


def _canon(path: Path) -> list:
    """A file's records with the timing fields removed, in file order."""
    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k not in TIMING_FIELDS}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x

    data = path.read_bytes()
    if path.suffix == ".jsonl":
        return [strip(orjson.loads(line)) for line in data.splitlines() if line.strip()]
    return [strip(orjson.loads(data))]


def _same_files(ref: Path, out: Path, names: list[str]) -> None:
    for name in names:
        assert (out / name).exists() == (ref / name).exists(), name
        if (ref / name).exists():
            a, b = _canon(ref / name), _canon(out / name)
            # eval/contamination files name the model by its path, which contains the run dir
            a = orjson.loads(orjson.dumps(a).replace(str(ref).encode(), b"OUT"))
            b = orjson.loads(orjson.dumps(b).replace(str(out).encode(), b"OUT"))
            assert a == b, f"{name} differs after the kills"


def _chain(cfg: Path, points: list[str]) -> None:
    for point in points:
        r = _run(cfg, point)
        assert r.returncode == -signal.SIGKILL, f"{point}: not killed (rc {r.returncode}): {r.stderr[-2000:]}"
    r = _run(cfg)
    assert r.returncode == 0, r.stderr[-3000:]


def _write(tmp_path: Path, name: str, toml: str) -> tuple[Path, Path]:
    out = tmp_path / name
    cfg = tmp_path / f"{name}.toml"
    cfg.write_text(toml.format(out=out))
    return cfg, out


def test_ten_seeded_kill_points_then_resume_give_the_uninterrupted_files(tmp_path):
    ref_cfg, ref = _write(tmp_path, "ref", SCRIPTED)
    r = _run(ref_cfg)
    assert r.returncode == 0, r.stderr[-3000:]
    for k in (0, 1):  # max_length 256 trains (it used to be skipped as "no usable pairs")
        tr = orjson.loads((ref / f"round_{k}" / "train_stats.json").read_bytes())
        assert tr["trained"] is True and tr["steps"] == 1 and tr["n_train"] > 0
    # 10 of the 19 points of the timeline (base eval + 9 per round), drawn with a fixed seed,
    # always including one inside DPO training; then taken in pipeline order.
    timeline = ["eval:done"] + [f"{p}@{k}" for k in (0, 1) for p in ROUND_POINTS]
    rng = random.Random(20261201)
    picked = set(rng.sample([t for t in timeline if t != "train:step@0"], 9)) | {"train:step@0"}
    chosen = [t for t in timeline if t in picked]
    assert len(chosen) == 10
    cfg, out = _write(tmp_path, "killed", SCRIPTED)
    _chain(cfg, [t.split("@")[0] + ":1" for t in chosen])
    _same_files(ref, out, COMPARED)
    for k in (0, 1):
        assert orjson.loads((out / f"round_{k}" / "train_stats.json").read_bytes())["trained"] is True
    assert not list(out.glob("round_*/model.tmp")) and not list(out.glob("round_*/model.work"))


def test_kills_inside_real_generation(tmp_path):
    ref_cfg, ref = _write(tmp_path, "ref", REAL)
    r = _run(ref_cfg)
    assert r.returncode == 0, r.stderr[-3000:]
    cfg, out = _write(tmp_path, "killed", REAL)
    # Kills inside the real model's generation: the base model's evaluation (its one generate
    # call), then round 0's solve (2nd and last problem: 1 eval batch + 2 solve batches). Training is off
    # here: the ten-point chain above kills inside real DPO training (train:step@0), so this
    # chain stays short enough for the table's 5-minute CI budget.
    _chain(cfg, ["hf:batch:1", "hf:batch:3"])
    _same_files(ref, out, ["eval_base.json", "round_0/problems.jsonl", "round_0/rollouts.jsonl",
                           "round_0/filters.json", "round_0/pairs.jsonl"])
    pairs = (out / "round_0" / "pairs.jsonl").read_bytes().splitlines()
    assert len(pairs) == 5  # seed 3: the real model's paths make 5 pairs
