"""How a round's DPO step is launched: `train.launcher = "none" | "accelerate"`.

none        train_dpo in this process (the path every run took before there was a choice).
accelerate  `accelerate launch --num_processes N [--config_file F] -m selfplay.train.launch JOB`:
            N processes (one per GPU; gloo on CPU) train with DDP, or DeepSpeed ZeRO-2/3 when F
            says so; rank 0 writes the model and the stats. The loop waits for it and reads them.

`selfplay train --round K` (the stage command, selfplay.run.train_round.stage_train) also runs under a launcher the
user starts, e.g. `accelerate launch --num_processes 2 -m selfplay train --round 0 --out OUT`:
rank 0 does the stage (provenance, the training set, train_stats.json) and hands each rank the
same train_dpo job, so every rank trains together and only rank 0 writes.
"""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

from selfplay.config import Config, TrainSection
from selfplay.core import io
from selfplay.core.log import log
from selfplay.train.data import NoUsablePairs
from selfplay.train.dist import broadcast, join_launch, rank, world_size
from selfplay.train.dpo import train_dpo

__all__ = ["NO_USABLE_PAIRS_RC", "accelerate_command", "main", "make_job", "run_job", "train"]

NO_USABLE_PAIRS_RC = 3  # the launched job's exit status when every pair was filtered out


def make_job(pair_files: Sequence[Path], base_model: str, out_dir: Path, tcfg: TrainSection, *, seed: int,
             logging_dir: str | None, stats_path: Path) -> dict[str, Any]:
    """train_dpo's arguments as JSON: the [train] section, the round's seed and log dir, the paths."""
    return {"pair_files": [str(f) for f in pair_files], "base_model": base_model, "out_dir": str(out_dir),
            "train": dataclasses.asdict(tcfg), "seed": seed, "logging_dir": logging_dir,
            "stats_path": str(stats_path)}


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """train_dpo on a job (the same on every rank of a launch)."""
    return train_dpo([Path(f) for f in job["pair_files"]], job["base_model"], Path(job["out_dir"]),
                     TrainSection(**job["train"]), seed=job["seed"], logging_dir=job["logging_dir"],
                     stats_path=Path(job["stats_path"]))


def accelerate_command(cfg: Config, job_path: Path) -> list[str]:
    """The command that trains `job_path` with train.num_processes processes."""
    t = cfg.train
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(t.num_processes)]
    if t.accelerate_config:
        cmd += ["--config_file", str(Path(t.accelerate_config).resolve())]
    else:
        # --multi_gpu is accelerate's torchrun launcher; without CUDA the ranks join over gloo
        # (join_launch). Its --cpu flag would run one process (its multi-CPU mode wants mpirun).
        cmd += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
        cmd += ["--multi_gpu"] if t.num_processes > 1 else []
    return cmd + ["-m", "selfplay.train.launch", str(job_path)]


def train(cfg: Config, pair_files: Sequence[Path], base_model: str, out_dir: Path, *, seed: int,
          logging_dir: str | None, stats_path: Path) -> dict[str, Any]:
    """train_dpo's result for the round (cfg.train, `seed`, tensorboard in `logging_dir`), run the
    way train.launcher says (see the module doc). Raises NoUsablePairs as train_dpo does."""
    spec = make_job(pair_files, base_model, out_dir, cfg.train, seed=seed, logging_dir=logging_dir,
                    stats_path=stats_path)
    if world_size() > 1:  # rank 0 of a launch the user started (stage_train): every rank trains
        broadcast(("train", spec))
        return {**run_job(spec), "processes": world_size()}
    if cfg.train.launcher == "none":
        return train_dpo(list(pair_files), base_model, out_dir, cfg.train, seed=seed, logging_dir=logging_dir,
                         stats_path=stats_path)
    job_path = Path(out_dir).parent / ".train_job.json"
    io.write_json(job_path, spec)
    stats_path.unlink(missing_ok=True)
    cmd = accelerate_command(cfg, job_path)
    log(f"training with {cfg.train.num_processes} process(es): {' '.join(cmd)}")
    rc = subprocess.run(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"}).returncode
    job_path.unlink(missing_ok=True)
    result = job_path.with_name(".train_job.result.json")
    if rc == NO_USABLE_PAIRS_RC and result.exists():
        reason = io.read_json(result)["no_usable_pairs"]
        result.unlink()
        raise NoUsablePairs(reason)
    if rc != 0 or not stats_path.exists():
        raise RuntimeError(f"train: `accelerate launch` failed (exit status {rc}; its output is above): "
                           f"{' '.join(cmd)}")
    return {**io.read_json(stats_path), "processes": cfg.train.num_processes}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry of `accelerate launch -m selfplay.train.launch JOB.json` (train.launcher accelerate)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m selfplay.train.launch JOB.json (written by the loop)", file=sys.stderr)
        return 2
    job_path = Path(args[0])
    spec = io.read_json(job_path)
    if world_size() > 1:
        join_launch()
    try:
        run_job(spec)
    except NoUsablePairs as e:
        if rank() == 0:
            io.write_json(job_path.with_name(".train_job.result.json"), {"no_usable_pairs": str(e)})
        return NO_USABLE_PAIRS_RC
    return 0


if __name__ == "__main__":
    sys.exit(main())
