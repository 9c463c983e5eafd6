"""Re-verify an existing rollouts.jsonl with the current verifier (labels, reasons, extracted).

`relabel_file` judges every rollout again in memory and writes nothing (`selfplay verify
--dry-run` stops there). `apply_relabel` then writes only what changed:
- no verdict changed (label, reason and extracted all the same; only the verification times
  differ): the file is left as it is (its hash, which the pairs' provenance names, stays) and
  nothing moves; the rollouts' provenance entry now names the current verifier.
- a verdict changed: inside a run (OUT/round_K/rollouts.jsonl) everything made from the old
  verdicts is invalidated first: round K's pairs, filters, training set, model, train stats, eval
  and stats, and every later round (its problems were posed and solved by a model trained on
  those pairs). They are moved to OUT/stale/<time>/, not deleted. Then the file is rewritten
  (atomically) and its provenance names the current verifier. Moving first means a crash in
  between leaves the old verdicts and their old provenance, and `selfplay verify` simply runs again.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from selfplay.core import io, provenance
from selfplay.core.records import Problem, Rollout
from selfplay.verify.label import relabel


def _verdict(r: Rollout) -> tuple[Any, Any, Any]:
    return r.label, r.reason, r.extracted


@dataclass(frozen=True)
class Relabelled:
    """A rollouts file judged again in memory: its records before (`old`) and after (`new`)."""

    path: Path
    old: list[Rollout]
    new: list[Rollout]

    @property
    def labels_changed(self) -> int:
        return sum(a.label != b.label for a, b in zip(self.old, self.new))

    @property
    def verdicts_changed(self) -> int:
        """Rollouts whose label, reason or extracted answer changed (what pairs are made from)."""
        return sum(_verdict(a) != _verdict(b) for a, b in zip(self.old, self.new))


def relabel_file(rollouts_path: Path, problems_path: Path, verifier: Any) -> Relabelled:
    """Judge every rollout of `rollouts_path` again with `verifier` (a MathVerifier pool: pot
    paths' printed answers are judged again) against the golds of `problems_path`. Writes nothing."""
    if not rollouts_path.exists():
        raise ValueError(f"{rollouts_path}: file not found")
    if not problems_path.exists():
        raise ValueError(f"{problems_path}: file not found (pass --problems)")
    gold = {p.id: p.answer for p in io.read_records(problems_path, Problem.from_dict)}
    rollouts = io.read_records(rollouts_path, Rollout.from_dict)
    missing = [r.problem_id for r in rollouts if r.problem_id not in gold]
    if missing:
        raise ValueError(f"{rollouts_path}: problem_id {missing[0]!r} not in {problems_path}")
    return Relabelled(rollouts_path, rollouts, relabel(verifier, [(gold[r.problem_id], r) for r in rollouts]))


def apply_relabel(r: Relabelled) -> list[Path]:
    """Write what `r` changed (module docstring); returns the paths moved to OUT/stale/ (at their
    old place), [] when no verdict changed or the file is not in a run."""
    moved = invalidate_downstream(r.path) if r.verdicts_changed else []
    if r.verdicts_changed:
        io.write_jsonl(r.path, r.new)
    entry = provenance.read(r.path.parent).get(r.path.name)
    if entry is not None and entry.get("verifier") != provenance.verifier_version():
        provenance.record(r.path, {**entry, "verifier": provenance.verifier_version()})
    return moved


# made from round K's labels, in the order they are made
_DOWNSTREAM = ("filters.json", "pairs.jsonl", "train_pairs.jsonl", "model", ".train_stats.partial.json",
               "train_stats.json", "eval.json", "contamination.json", "stats.json")


def downstream(rollouts_path: Path) -> list[Path]:
    """What was made from `rollouts_path`'s verdicts and exists: round K's products, every later
    round and OUT/report.md / report.html; [] outside a run directory (OUT/round_K/ beside OUT/config.json)."""
    rdir = rollouts_path.resolve().parent
    m = re.fullmatch(r"round_(\d+)", rdir.name)
    out = rdir.parent
    if m is None or not (out / "config.json").exists():
        return []
    k = int(m.group(1))
    later = sorted((int(d.name[6:]), d) for d in out.glob("round_*") if re.fullmatch(r"round_\d+", d.name))
    victims = [rdir / n for n in _DOWNSTREAM if (rdir / n).exists()]
    victims += [d for j, d in later if j > k]
    victims += [p for p in (out / "report.md", out / "report.html") if p.exists()]
    return victims


def invalidate_downstream(rollouts_path: Path) -> list[Path]:
    """Move `downstream(rollouts_path)` to OUT/stale/<time>/ (a new folder each time); returns the
    moved paths (at their old place). Nothing happens outside a run directory."""
    victims = downstream(rollouts_path)
    if not victims:
        return []
    rdir = rollouts_path.resolve().parent
    out = rdir.parent
    base = out / "stale" / time.strftime("%Y%m%d-%H%M%S")
    stale, n = base, 1
    while stale.exists():  # a second verify in the same second must not merge into the first's folder
        stale, n = base.with_name(f"{base.name}-{n}"), n + 1
    for path in victims:
        dest = stale / path.relative_to(out)
        dest.parent.mkdir(parents=True, exist_ok=True)
        path.rename(dest)
        if path.parent == rdir:
            provenance.forget(path)
    return victims
