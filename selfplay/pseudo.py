"""Majority-vote pseudo-labels (self-consistency, as in R-Zero/TTRL) for problems without a
trusted gold: a `seeds.files` line with no answer, or a posed problem without a program under
`pose.require_program = false`. Such a problem's k sampled answers vote; when the top answer's
share reaches `pair.pseudo_agreement` it becomes the gold, every path is verified against it, and
the problem goes through the solve-rate band like a posed one. Otherwise it is dropped (no
answers, tie, low agreement), counted in filters.json.

The same vote runs on the problems that do have a gold, to measure what the pseudo-labels are
worth: `pseudo_label_precision` = the share of those problems (passing the agreement threshold)
whose majority answer the verifier finds equivalent to the gold.
"""
from __future__ import annotations

from typing import Any, Sequence

from selfplay.config import Config
from selfplay.filters import majority_pseudo_labels, needs_label, solve_rate_band
from selfplay.records import Problem, Rollout
from selfplay.solve import relabel

ALL_ORIGINS = ("procedural", "file", "hf", "posed")


def pseudo_label(problems: Sequence[Problem], rollouts: dict[str, list[Rollout]], verifier: Any,
                 cfg: Config) -> tuple[list[Problem], dict[str, list[Rollout]], dict[str, Any]]:
    """(problems with a gold, rollouts labelled against it, counts). Problems that already have
    a trusted gold come back untouched, in the same order."""
    need = [p for p in problems if needs_label(p)]
    counts: dict[str, Any] = {}
    gold = [p for p in problems if not needs_label(p)]
    counts["pseudo_label_precision"] = _precision(gold, flat_of(gold, rollouts), verifier, cfg.pair.pseudo_agreement)
    if not need:
        return list(problems), rollouts, counts
    res = majority_pseudo_labels(need, flat_of(need, rollouts), cfg.pair.pseudo_agreement)
    labelled, counts["pseudo_label"] = res
    counts["pseudo_label_info"] = dict(res.info)
    new = dict(rollouts)
    for p in labelled:
        new[p.id] = relabel(verifier, [(p.answer, r) for r in rollouts.get(p.id, [])])
    # all agree = nothing to learn, as for posed problems; the agreement is each pair's record
    banded, counts["pseudo_label_band"] = solve_rate_band(labelled, flat_of(labelled, new),
                                                          cfg.filters.band_low, cfg.filters.band_high, ALL_ORIGINS)
    keep = {p.id: p for p in banded}
    out = [keep[p.id] if p.id in keep else p for p in problems if not needs_label(p) or p.id in keep]
    return out, new, counts


def flat_of(problems: Sequence[Problem], rollouts: dict[str, list[Rollout]]) -> list[Rollout]:
    return [r for p in problems for r in rollouts.get(p.id, [])]


def _precision(problems: Sequence[Problem], flat: Sequence[Rollout], verifier: Any,
               min_agreement: float) -> dict[str, Any]:
    voted = majority_pseudo_labels(problems, flat, min_agreement, only_without_gold=False).kept
    pairs = [(p.answer, p.meta["majority_answer"]) for p in voted]
    agree = sum(v.label == "correct" for v in verifier.verify_many(pairs, extract=False))
    return {"problems": len(pairs), "agree": agree, "precision": round(agree / len(pairs), 4) if pairs else None}
