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

from typing import Any, Callable, Sequence

from selfplay.config import Config
from selfplay.core.records import Problem, Rollout
from selfplay.pair.filters import majority_pseudo_labels, needs_label, solve_rate_band
from selfplay.verify.label import relabel

ALL_ORIGINS = ("procedural", "file", "hf", "posed")


def pseudo_label(problems: Sequence[Problem], rollouts: dict[str, list[Rollout]], verifier: Any,
                 cfg: Config) -> tuple[list[Problem], dict[str, list[Rollout]], dict[str, Any]]:
    """(problems with a gold, rollouts labelled against it, counts). Problems that already have
    a trusted gold come back untouched, in the same order."""
    counts: dict[str, Any] = {}
    if uses_majority_witness(cfg.pose.witness):
        problems, counts["majority_witness"] = majority_witness(problems, rollouts, verifier,
                                                                cfg.pair.pseudo_agreement,
                                                                majority_witnessed(cfg.pose.witness))
    need = [p for p in problems if needs_label(p)]
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


def uses_majority_witness(witness: str) -> bool:
    """Whether pose.witness asks the solver majority to witness posed golds."""
    return witness in ("majority", "both", "auto")


def majority_witnessed(witness: str) -> Callable[[Problem], bool] | None:
    """majority_witness's `only` for pose.witness: under auto, the posed problems that state no
    expression to evaluate (the others have their exact witness); otherwise all (None)."""
    return (lambda p: "expression_witness" not in p.meta) if witness == "auto" else None


def majority_witness(problems: Sequence[Problem], rollouts: dict[str, list[Rollout]], verifier: Any,
                     min_agreement: float, only: Callable[[Problem], bool] | None = None,
                     ) -> tuple[list[Problem], dict[str, Any]]:
    """The solver-majority witness of posed golds (pose.witness majority|both): a posed problem
    whose program gave its gold stays only if the majority of its k answers (the same vote as the
    pseudo-labels, with share >= min_agreement) is equivalent to that gold; meta
    "majority_witness" records the vote. Others are dropped and counted as golds_disagree.
    `only`: the posed problems that need this witness (default: all)."""
    posed = [p for p in problems if p.origin == "posed" and not needs_label(p) and (only is None or only(p))]
    voted = majority_pseudo_labels(posed, flat_of(posed, rollouts), min_agreement, only_without_gold=False).kept
    verdicts = verifier.verify_many([(p.answer, p.meta["majority_answer"]) for p in voted], extract=False)
    keep = {}
    for p, v in zip(voted, verdicts):
        if v.label == "correct":
            p.meta["majority_witness"] = {"answer": p.meta["majority_answer"], "agreement": p.meta["agreement"],
                                          "votes": p.meta["votes"], "agree": True}
            keep[p.id] = p
    dropped = {p.id for p in posed} - set(keep)
    out = [keep.get(p.id, p) for p in problems if p.id not in dropped]
    return out, {"posed": len(posed), "agree": len(keep), "golds_disagree": len(dropped)}


def flat_of(problems: Sequence[Problem], rollouts: dict[str, list[Rollout]]) -> list[Rollout]:
    return [r for p in problems for r in rollouts.get(p.id, [])]


def _precision(problems: Sequence[Problem], flat: Sequence[Rollout], verifier: Any,
               min_agreement: float) -> dict[str, Any]:
    voted = majority_pseudo_labels(problems, flat, min_agreement, only_without_gold=False).kept
    pairs = [(p.answer, p.meta["majority_answer"]) for p in voted]
    agree = sum(v.label == "correct" for v in verifier.verify_many(pairs, extract=False))
    return {"problems": len(pairs), "agree": agree, "precision": round(agree / len(pairs), 4) if pairs else None}
