"""Re-verify an existing rollouts.jsonl with the current verifier (labels, reasons, extracted)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from selfplay import io
from selfplay.records import Problem, Rollout


def reverify_file(rollouts_path: Path, problems_path: Path, *, timeout: float = 3.0) -> tuple[int, int]:
    """Relabel every rollout in place (atomic rewrite); returns (labels changed, total)."""
    from verifiers import MathVerifier

    if not rollouts_path.exists():
        raise ValueError(f"{rollouts_path}: file not found")
    if not problems_path.exists():
        raise ValueError(f"{problems_path}: file not found (pass --problems)")
    gold = {p.id: p.answer for p in io.read_records(problems_path, Problem.from_dict)}
    rollouts = io.read_records(rollouts_path, Rollout.from_dict)
    missing = [r.problem_id for r in rollouts if r.problem_id not in gold]
    if missing:
        raise ValueError(f"{rollouts_path}: problem_id {missing[0]!r} not in {problems_path}")
    with MathVerifier(timeout=timeout) as v:
        verdicts = list(v.verify_many((gold[r.problem_id], r.completion) for r in rollouts))
    new = [replace(r, label=vd.label, reason=vd.reason, extracted=vd.extracted, verify_seconds=round(vd.seconds, 6))
           for r, vd in zip(rollouts, verdicts)]
    io.write_jsonl(rollouts_path, new)
    return sum(a.label != b.label for a, b in zip(rollouts, new)), len(new)
