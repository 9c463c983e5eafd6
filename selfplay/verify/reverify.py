"""Re-verify an existing rollouts.jsonl with the current verifier (labels, reasons, extracted).

Inside a run (OUT/round_K/rollouts.jsonl) everything made from the old labels is invalidated:
round K's pairs, filters, training set, model, train stats, eval and stats, and every later
round (its problems were posed and solved by a model trained on those pairs). They are moved to
OUT/stale/<time>/, not deleted, and the rollouts' provenance now names the current verifier.
"""
from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from selfplay.core import io, provenance
from selfplay.core.records import Problem, Rollout
from selfplay.verify.label import relabel


def reverify_file(rollouts_path: Path, problems_path: Path, verifier: Any) -> tuple[int, int]:
    """Relabel every rollout in place (atomic rewrite) with `verifier` (a MathVerifier pool: pot
    paths' printed answers are judged again); returns (labels changed, total)."""
    if not rollouts_path.exists():
        raise ValueError(f"{rollouts_path}: file not found")
    if not problems_path.exists():
        raise ValueError(f"{problems_path}: file not found (pass --problems)")
    gold = {p.id: p.answer for p in io.read_records(problems_path, Problem.from_dict)}
    rollouts = io.read_records(rollouts_path, Rollout.from_dict)
    missing = [r.problem_id for r in rollouts if r.problem_id not in gold]
    if missing:
        raise ValueError(f"{rollouts_path}: problem_id {missing[0]!r} not in {problems_path}")
    new = relabel(verifier, [(gold[r.problem_id], r) for r in rollouts])
    io.write_jsonl(rollouts_path, new)
    entry = provenance.read(rollouts_path.parent).get(rollouts_path.name)
    if entry is not None:
        provenance.record(rollouts_path, {**entry, "verifier": provenance.verifier_version()})
    return sum(a.label != b.label for a, b in zip(rollouts, new)), len(new)


# made from round K's labels, in the order they are made
_DOWNSTREAM = ("filters.json", "pairs.jsonl", "train_pairs.jsonl", "model", ".train_stats.partial.json",
               "train_stats.json", "eval.json", "contamination.json", "stats.json")


def invalidate_downstream(rollouts_path: Path) -> list[Path]:
    """Move what was made from `rollouts_path`'s labels to OUT/stale/<time>/; returns the moved
    paths (at their old place). Nothing happens outside a run directory."""
    rdir = rollouts_path.resolve().parent
    m = re.fullmatch(r"round_(\d+)", rdir.name)
    out = rdir.parent
    if m is None or not (out / "config.json").exists():
        return []
    k = int(m.group(1))
    later = sorted((int(d.name[6:]), d) for d in out.glob("round_*") if re.fullmatch(r"round_\d+", d.name))
    victims = [rdir / n for n in _DOWNSTREAM if (rdir / n).exists()]
    victims += [d for j, d in later if j > k]
    victims += [p for p in (out / "report.md",) if p.exists()]
    if not victims:
        return []
    stale = out / "stale" / time.strftime("%Y%m%d-%H%M%S")
    for path in victims:
        dest = stale / path.relative_to(out)
        dest.parent.mkdir(parents=True, exist_ok=True)
        path.rename(dest)
        if path.parent == rdir:
            provenance.forget(path)
    return victims
