"""A round's training stage: the training set (OUT/round_K/train_pairs.jsonl, mixed under the
collapse guard), DPO + NLL on it from the round's starting model (train.launcher: in this process
or under `accelerate launch`, selfplay/train/launch.py), and train_stats.json written last with
its provenance. `selfplay train --round K` is stage_train."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from selfplay.backends.models import resolve_model
from selfplay.config import Config
from selfplay.core import faults, io, provenance
from selfplay.core.log import log
from selfplay.core.records import Pair
from selfplay.pair.mixing import build_training_set
from selfplay.run.context import round_model
from selfplay.run.layout import pair_files, prepare_out
from selfplay.train import launch as train_launch
from selfplay.train.data import NoUsablePairs
from selfplay.train.dist import broadcast, join_launch, rank, world_size
from selfplay.train.launch import run_job


def guarded_set(cfg: Config, rounds_pairs: list[list[Pair]], round_idx: int) -> tuple[list[Pair], dict[str, Any]]:
    """Round K's training set from the pairs of rounds 0..K under cfg.guard (mixing.build_training_set)."""
    g = cfg.guard
    return build_training_set(rounds_pairs, round_idx, seed_fraction=g.seed_fraction if g.enabled else 0.0,
                              accumulate=g.accumulate if g.enabled else "current", train_on=g.train_on,
                              seed=cfg.run.seed)


def training_set(cfg: Config, out: Path, round_idx: int) -> tuple[Path, dict[str, Any]]:
    """Write OUT/round_K/train_pairs.jsonl: the exact pairs round K trains on.

    Guard on: earlier rounds accumulate (guard.accumulate) and seed-derived pairs keep at least
    guard.seed_fraction of the set. Guard off: this round's pairs only."""
    files = pair_files(out, round_idx)
    pairs, info = guarded_set(cfg, [io.read_records(f, Pair.from_dict) for f in files], round_idx)
    path = out / f"round_{round_idx}" / "train_pairs.jsonl"
    provenance.record(path, provenance.key(cfg, pairs=[provenance.file_hash(f) for f in files]))
    io.write_jsonl(path, pairs)
    faults.point("train:set")
    return path, info


def train_round(cfg: Config, out: Path, round_idx: int, base_model: str) -> dict[str, Any]:
    """DPO + NLL on the round's training set; the reference model is the round's starting model.

    train_stats.json is written last and carries the provenance (the starting model and every
    round's pairs). A round whose pairs are all unusable is marked `trained: false` and hands its
    starting model on by reference (works for a hub id too); any other failure stops the run."""
    rdir = out / f"round_{round_idx}"
    model_dir, stats_path = rdir / "model", rdir / "train_stats.json"
    entry = provenance.key(cfg, model=base_model, pairs=[provenance.file_hash(f) for f in pair_files(out, round_idx)])
    if provenance.check(stats_path, entry):
        return io.read_json(stats_path)
    provenance.record(stats_path, entry)
    pairs_path, mix = training_set(cfg, out, round_idx)
    log(f"round {round_idx}: training on {mix.get('total', '?')} pairs ({pairs_path}) from {base_model}")
    t0 = time.perf_counter()
    partial = rdir / ".train_stats.partial.json"  # train_dpo's own copy; train_stats.json comes last
    try:
        stats = train_launch.train(cfg, [pairs_path], base_model, model_dir, seed=cfg.run.seed + round_idx,
                                   logging_dir=str(rdir / "tensorboard"), stats_path=partial)
        stats["trained"] = True
    except NoUsablePairs as e:  # the next round starts from this round's starting model
        log(f"round {round_idx}: NOT TRAINED ({e}); round {round_idx + 1} starts from {base_model}")
        # a model inside OUT by its place in OUT (round_model finds it there, wherever OUT moves)
        stats = {"trained": False, "reason": str(e), "start_model": provenance.relative_to_out(base_model, out),
                 "n_train": 0}
    faults.point("train:saved")  # the model is in place, train_stats.json not yet
    stats["seconds"] = round(time.perf_counter() - t0, 1)
    stats["mix"] = mix
    io.write_json(stats_path, stats)
    partial.unlink(missing_ok=True)
    return stats


def stage_train(cfg: Any, round_idx: int, model: str | None) -> dict[str, Any] | None:
    """`selfplay train --round K`: the round's training stage (train_round), alone or as every
    rank of a distributed launch. Returns the stats on rank 0, None on the other ranks."""
    def on_rank_0() -> dict[str, Any]:
        out = prepare_out(cfg)
        return train_round(cfg, out, round_idx, resolve_model(model) if model else round_model(cfg, out, round_idx))

    if world_size() == 1:
        return on_rank_0()
    join_launch()
    if rank() != 0:
        while True:  # rank 0 says what to train; the same job on every rank
            what, job = broadcast(None)
            if what == "done":
                return None
            try:
                run_job(job)
            except NoUsablePairs:  # every rank filters the same pairs; rank 0 records the round
                pass
    try:
        return on_rank_0()
    finally:
        broadcast(("done", None))
