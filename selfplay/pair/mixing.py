"""Collapse guard, part 1: what each round trains on.

Training only on the model's own posed problems lets errors and narrow habits compound round
after round (model collapse). Two standard remedies, both here: keep a fixed share of pairs from
seed problems (procedural, file, hf), whose gold answers do not come from the model, and
accumulate earlier rounds' data instead of replacing it. See docs/filters.md.
"""
from __future__ import annotations

import math
import random
from collections import Counter
from typing import Any, Sequence

from selfplay.config.enums import TrainOn, names
from selfplay.core.records import Pair

SEED_ORIGINS: tuple[str, ...] = ("procedural", "file", "hf")
SYNTHETIC_ORIGINS: tuple[str, ...] = ("posed",)
TRAIN_ON = names(TrainOn)  # guard.train_on: which side's pairs train (selfplay/config/enums.py)


def rounds_to_use(current_round: int, n_rounds: int, accumulate: str) -> list[int]:
    """Round indices an `accumulate` policy selects: "all" (0..current), "current", "last:N"
    (the N most recent rounds up to current)."""
    if not 0 <= current_round < n_rounds:
        raise ValueError(f"current_round must be in [0, {n_rounds}), got {current_round}")
    if accumulate == "all":
        return list(range(current_round + 1))
    if accumulate == "current":
        return [current_round]
    if accumulate.startswith("last:"):
        try:
            n = int(accumulate[len("last:"):])
        except ValueError:
            n = 0
        if n >= 1:
            return list(range(max(0, current_round - n + 1), current_round + 1))
    raise ValueError(f"accumulate must be 'all', 'current' or 'last:N' with N >= 1, "
                     f"got {accumulate!r}")


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def mix_counts(n_seed: int, n_synthetic: int, seed_fraction: float,
               max_pairs: int | None = None) -> tuple[int, int]:
    """How many seed-derived and synthetic pairs to take.

    seed_fraction is a floor on the share of seed-derived pairs, not an exact target: seed pairs
    (whose gold does not come from the model) are never cut, synthetic pairs are capped at
    floor(n_seed x (1 - f) / f) so they can never dominate. f = 0 disables the cap; f = 1 drops
    synthetic pairs. No seed pairs: the floor cannot be met, all synthetic pairs are used (and
    the caller reports ratio_met = False). Then, above max_pairs, both are scaled down keeping the
    ratio.
    """
    f = seed_fraction
    if f <= 0.0 or n_seed == 0:
        s, p = n_seed, n_synthetic
    elif f >= 1.0:
        s, p = n_seed, 0
    else:
        s = n_seed
        p = min(n_synthetic, int(math.floor(n_seed * (1.0 - f) / f + 1e-9)))
    if max_pairs is not None and s + p > max_pairs:
        if s and p:
            s = _round_half_up(max_pairs * s / (s + p))
            p = max_pairs - s
        elif s:
            s = max_pairs
        else:
            p = max_pairs
    return s, p


def _origin_side(pair: Pair, where: str) -> str:
    origin = pair.metadata.get("origin")
    if origin in SEED_ORIGINS:
        return "seed"
    if origin in SYNTHETIC_ORIGINS:
        return "synthetic"
    raise ValueError(f"{where}: metadata origin must be one of "
                     f"{SEED_ORIGINS + SYNTHETIC_ORIGINS}, got {origin!r}")


def build_training_set(rounds_pairs: Sequence[Sequence[Pair]], current_round: int, *,
                       seed_fraction: float = 0.5, accumulate: str = "all",
                       max_pairs: int | None = None, train_on: str = "all",
                       seed: int = 0) -> tuple[list[Pair], dict[str, Any]]:
    """The DPO training set for `current_round`.

    rounds_pairs[r] holds the (filtered) pairs made in round r. The rounds chosen by `accumulate`
    are pooled; pairs split by metadata["origin"] into seed-derived (procedural/file/hf) and
    synthetic (posed); `mix_counts` says how many of each to keep; each side is subsampled by a
    shuffle seeded with (seed, side). train_on "seed" or "posed" keeps only that side (the
    ablation of docs/posing.md: seeds only / posed only). The result is ordered by (round,
    position in round).
    Deterministic given the inputs and `seed`. Raises ValueError for a bad argument or a pair
    without a known origin.

    info: rounds_used, available / selected ({"seed": n, "synthetic": n}), per_origin, per_round
    (string keys, selected pairs), target_seed_fraction, achieved_seed_fraction (None if empty),
    ratio_met (False when one side was empty), accumulate, max_pairs, total.
    """
    if not 0.0 <= seed_fraction <= 1.0:
        raise ValueError(f"seed_fraction must be in [0, 1], got {seed_fraction}")
    if max_pairs is not None and max_pairs < 0:
        raise ValueError(f"max_pairs must be >= 0, got {max_pairs}")
    if train_on not in TRAIN_ON:
        raise ValueError(f"train_on must be one of {list(TRAIN_ON)}, got {train_on!r}")
    used = rounds_to_use(current_round, len(rounds_pairs), accumulate)
    sides: dict[str, list[tuple[int, int, Pair]]] = {"seed": [], "synthetic": []}
    for r in used:
        for i, pair in enumerate(rounds_pairs[r]):
            sides[_origin_side(pair, f"round {r} pair {i}")].append((r, i, pair))
    if train_on == "seed":
        sides["synthetic"] = []
    elif train_on == "posed":
        sides["seed"] = []
    n_seed, n_syn = len(sides["seed"]), len(sides["synthetic"])
    take = dict(zip(("seed", "synthetic"), mix_counts(n_seed, n_syn, seed_fraction, max_pairs)))
    selected: list[tuple[int, int, Pair]] = []
    for side, items in sides.items():
        if take[side] < len(items):
            items = list(items)
            random.Random(f"{seed}:{side}").shuffle(items)  # str seeds are stable across runs
        selected.extend(items[:take[side]])
    selected.sort(key=lambda t: (t[0], t[1]))
    pairs = [p for _, _, p in selected]
    total = len(pairs)
    both_present = n_seed > 0 and n_syn > 0
    info: dict[str, Any] = {
        "rounds_used": used,
        "accumulate": accumulate,
        "train_on": train_on,
        "max_pairs": max_pairs,
        "available": {"seed": n_seed, "synthetic": n_syn},
        "selected": {"seed": take["seed"], "synthetic": take["synthetic"]},
        "per_origin": dict(sorted(Counter(str(p.metadata.get("origin")) for p in pairs).items())),
        "per_round": {str(r): sum(1 for rr, _, _ in selected if rr == r) for r in used},
        "target_seed_fraction": seed_fraction,
        "achieved_seed_fraction": take["seed"] / total if total else None,
        "ratio_met": (take["seed"] / total >= seed_fraction - 1e-9) if total else False,
        "total": total,
    }
    return pairs, info
