"""Process checks on reasoning paths, between labelling and pairing: a `chosen` must be right all
the way, not only in its last answer (docs/filters.md, "Chosen paths: right all the way").

A cot path whose final answer is correct is *flawed* when
- `false_step`: one of its arithmetic statements is false (selfplay_verifiers.steps.check_steps);
- `unevaluated_answer`: the gold is a number and the path's answer is a computation left undone
  ("So the answer is 3 + 7.": the answer checker evaluates it to 10, a reader does not);
- `no_boxed` (only with pair.require_boxed): it does not write its answer in \\boxed{}.
A flawed path is never `chosen`; it is dropped (pair.flawed_chosen "drop"), or kept as a
`rejected` (label incorrect, reason = the flaw; "rejected"). Program (pot) paths are judged by
their program's output and pass unchanged.

Also here: the first false step of a rejected path (recorded in its pair as `first_error`), and the
step-level pair (Step-DPO): the shared prefix of a clean chosen and a rejected whose first error
lies in the first step where they differ, then that step from each.
"""
from __future__ import annotations

import re
from dataclasses import replace
from typing import Any, Sequence

from selfplay.core.records import Problem, Rollout
from selfplay.pair.filters import FilterResult
from selfplay_verifiers.steps import FALSE, TRUE, UNKNOWN_STEP, StepReport, check_steps, is_unevaluated, is_value

FLAWS = ("false_step", "unevaluated_answer", "no_boxed")
BOXED = "\\boxed"


def path_flaw(r: Rollout, gold: str, report: StepReport, *, require_boxed: bool = False) -> str | None:
    """Why a correct cot path may not be `chosen` (one of FLAWS), or None when it is clean."""
    if report.first_false is not None:
        return "false_step"
    if unevaluated(gold, r.extracted):
        return "unevaluated_answer"
    if require_boxed and BOXED not in r.completion:
        return "no_boxed"
    return None


def chosen_eligibility(problems: Sequence[Problem], rollouts: Sequence[Rollout], *, flawed: str = "drop",
                       require_boxed: bool = False) -> FilterResult[Rollout]:
    """Step-check every correct cot path. Flawed ones are dropped and counted by flaw
    (flawed "drop"), or relabelled incorrect with the flaw as reason and kept, so they can be a
    `rejected` (flawed "rejected": counted too). info: the paths checked, their statements by
    verdict, the checker's seconds, and the paths kept as rejected."""
    if flawed not in ("drop", "rejected"):
        raise ValueError(f"pair.flawed_chosen: must be drop or rejected, got {flawed!r}")
    gold = {p.id: p.answer for p in problems}
    dropped = {f: 0 for f in FLAWS}
    info: dict[str, Any] = {"checked": 0, "statements": {TRUE: 0, FALSE: 0, UNKNOWN_STEP: 0}, "seconds": 0.0,
                            "kept_as_rejected": 0}
    kept: list[Rollout] = []
    for r in rollouts:
        if r.mode != "cot" or r.label != "correct":
            kept.append(r)
            continue
        report = check_steps(r.completion)
        info["checked"] += 1
        info["seconds"] += report.seconds
        for verdict, n in report.counts.items():
            info["statements"][verdict] += n
        flaw = path_flaw(r, gold.get(r.problem_id, ""), report, require_boxed=require_boxed)
        if flaw is None:
            kept.append(r)
            continue
        dropped[flaw] += 1
        if flawed == "rejected":
            info["kept_as_rejected"] += 1
            kept.append(replace(r, label="incorrect", reason=flaw))
    info["seconds"] = round(info["seconds"], 4)
    return FilterResult(kept, dropped, info)


def unevaluated(gold: str, answer: str | None) -> bool:
    """The gold is a number and the answer a computation left undone ("3 + 7" for 10)."""
    return is_value(gold) and is_unevaluated(answer)


def first_error(report: StepReport) -> dict[str, Any] | None:
    """A path's first false statement (its check_steps report), as {start, end, statement, left,
    right}, or None."""
    step = report.first_false
    if step is None:
        return None
    return {"start": step.start, "end": step.end, "statement": step.text, "left": step.left, "right": step.right}


_STEP_END = re.compile(r"\n+|(?<=[.!?])[ \t]+(?=\S)")


def split_steps(text: str) -> list[str]:
    """A path cut into steps: lines, and sentences within a line (a '.' that ends a sentence, not
    a decimal point). Each step keeps the whitespace after it, so ''.join(steps) == text."""
    out, pos = [], 0
    for m in _STEP_END.finditer(text):
        if m.end() > pos:
            out.append(text[pos:m.end()])
            pos = m.end()
    if pos < len(text):
        out.append(text[pos:])
    return out


def step_pair_parts(chosen: str, rejected: str, error_start: int) -> tuple[str, str, str] | None:
    """(shared prefix, chosen step, rejected step) when the rejected path's first error lies in
    the first step where the two paths differ (the steps before are the same, so right); None
    otherwise (the error comes later, after steps not known to be wrong)."""
    c, r = split_steps(chosen), split_steps(rejected)
    k = 0
    while k < len(c) and k < len(r) and c[k] == r[k]:
        k += 1
    if k >= len(c) or k >= len(r):
        return None
    start = sum(len(s) for s in r[:k])
    if not start <= error_start < start + len(r[k]):
        return None
    return "".join(r[:k]), c[k].rstrip(), r[k].rstrip()


def boxed_share(texts: Sequence[str]) -> float | None:
    """The share of texts that write their answer in \\boxed{}; None for none."""
    return round(sum(BOXED in t for t in texts) / len(texts), 4) if texts else None

