"""Pose stage (self-play): the model writes new problems, each with a Python program whose
printed output is the gold answer (docs/posing.md).

pose_problems overgenerates in batches until pose.target problems are kept or the budget is
spent. One attempt is a question from a prefilled prompt (selfplay/prompts.py: fewshot, mutation,
composition; program_first writes the program first, then its question), then its program. A
posed problem is kept only if check_posed (selfplay.pose.checks) accepts it: a well-posed question
whose program uses its numbers, computes something and prints one exact number, deterministically;
not a duplicate of a seed, a held-out problem or another posed problem. Then its gold needs a
second witness (selfplay.pose.witness: a stated expression's exact value, a second program; the
solver majority after solving). Every rejection is counted by reason.
"""
from __future__ import annotations

import time
from collections import Counter
from typing import Any, Callable, Iterable, Sequence

from selfplay.backends.base import Backend, SamplingParams
from selfplay.core.records import Problem
from selfplay.core.rng import derive_seed, rng_for
from selfplay.pose.checks import check_posed, clean_question, program_steps
from selfplay.pose.witness import WITNESSES, expression_witness, program_witness
from selfplay.prompts import POSE_KINDS, PROGRAM_STOP, QUESTION_STOP, pose_messages, program_messages, question_messages
from selfplay_seeds.text import normalize_question  # the one normaliser (operators kept): also pose dedup's


def _texts(backend: Backend, prompts: Sequence[Any], temperature: float, top_p: float, max_new_tokens: int,
           stop: tuple[str, ...], seeds: Sequence[int]) -> list[str]:
    if not prompts:
        return []
    params = SamplingParams(n=1, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, stop=stop)
    return [comps[0].text for comps in backend.generate(list(prompts), params, [[s] for s in seeds])]


def _clean_program(text: str) -> str | None:
    return text.strip("\n").rstrip() or None


def pose_problems(backend: Backend, sandbox: Any, examples: Sequence[Problem], *, attempts: int, shots: int,
                  params: SamplingParams, seed: int, round_idx: int, existing: Iterable[str] = (),
                  model: str = "", progress: Any = None, require_program: bool = True, target: int = 0,
                  batch: int = 32, kinds: Sequence[str] = ("fewshot", "program_first"), level: int = 0,
                  witness: str = "auto", witness_temperature: float = 0.7, max_seconds: float = 0.0,
                  accept: Callable[[list[Problem]], tuple[list[Problem], dict[str, int]]] | None = None,
                  ) -> tuple[list[Problem], dict[str, Any]]:
    """Overgenerate, then keep: pose in batches of `batch` attempts until `target` problems are
    kept (0: make every attempt), `attempts` (the budget) are spent or `max_seconds` have passed.
    Attempt a uses prompt kind kinds[a % len(kinds)] (selfplay/prompts.py) at curriculum `level`.

    Per attempt: a question (program_first: a program, then its question), then its program
    (greedy, from seed shots), then check_posed. Then the witnesses (docs/posing.md): unless
    witness is "none", a question that states one arithmetic expression must have it evaluate to
    the gold; with "auto", "program" or "both" a second program is written from the question
    alone (other shots, sampled at witness_temperature) and must print the same value. A
    disagreement is counted as golds_disagree; the solver-majority witness ("majority", "both",
    "auto" for questions without an expression) runs after solving (selfplay.pair.pseudo). Last,
    `accept` (the round's held-out gate and near-duplicate filter) returns the kept ones and its
    rejection counts.
    Stats: attempted, kept, rejected (reason -> count), by_kind, golds_disagree, target, level,
    witness, stopped; unlabelled problems (no program, require_program=False) have answer "" and
    gold_trusted false."""
    if witness not in WITNESSES:
        raise ValueError(f"pose.witness must be one of {WITNESSES}, got {witness!r}")
    for k in kinds:
        if k not in POSE_KINDS:
            raise ValueError(f"pose.prompts: unknown kind {k!r}; choose from {sorted(POSE_KINDS)}")
    shot_pool = [e for e in examples if e.program]
    stats: dict[str, Any] = {"attempted": 0, "kept": 0, "rejected": {}, "target": target, "level": level,
                             "witness": witness, "golds_disagree": 0,
                             "by_kind": {k: {"attempted": 0, "kept": 0} for k in dict.fromkeys(kinds)}}
    if not shot_pool or attempts <= 0 or not kinds:
        return [], stats
    seen = {normalize_question(q) for q in existing}
    kept: list[Problem] = []
    reasons: Counter[str] = Counter()
    t0 = time.monotonic()
    a0 = 0

    def shots_for(a: int, role: str, n: int | None) -> list[tuple[str, str]]:
        picks = rng_for(seed, round_idx, role, a).sample(shot_pool, min(n or shots, len(shot_pool)))
        return [(p.question, p.program or "") for p in picks]

    def gen(prompts: list[Any], idx: list[int], role: str, temperature: float, stop: tuple[str, ...]) -> list[str]:
        return _texts(backend, prompts, temperature, params.top_p, params.max_new_tokens, stop,
                      [derive_seed(seed, round_idx, role, a) for a in idx])

    while a0 < attempts and (target <= 0 or len(kept) < target):
        if max_seconds and time.monotonic() - t0 >= max_seconds:
            stats["stopped"] = "max_seconds"
            break
        idx = list(range(a0, min(attempts, a0 + max(1, batch))))
        a0 = idx[-1] + 1
        kind_of = {a: kinds[a % len(kinds)] for a in idx}
        for a in idx:
            stats["by_kind"][kind_of[a]]["attempted"] += 1
        question: dict[int, str | None] = {}
        program: dict[int, str | None] = {}
        pf = [a for a in idx if kind_of[a] == "program_first"]
        qf = [a for a in idx if kind_of[a] != "program_first"]
        for a, text in zip(pf, gen([pose_messages("program_first", shots_for(a, "pose-shots", None), level)
                                    for a in pf], pf, "pose", params.temperature, PROGRAM_STOP)):
            program[a] = _clean_program(text)
        asked = [a for a in pf if program[a]]
        for a, text in zip(asked, gen([question_messages(shots_for(a, "pose-question-shots", None), program[a] or "")
                                       for a in asked], asked, "pose-question", 0.0, QUESTION_STOP)):
            question[a] = clean_question(text)
        for a, text in zip(qf, gen([pose_messages(kind_of[a], shots_for(a, "pose-shots", POSE_KINDS[kind_of[a]]),
                                                  level) for a in qf], qf, "pose", params.temperature,
                                   QUESTION_STOP)):
            question[a] = clean_question(text)
        # a program only for a question that passes the question checks
        need = [a for a in qf if check_posed(question[a], None, sandbox, seen, False)[1] == "unlabelled"]
        for a, text in zip(need, gen([program_messages(shots_for(a, "pose-program-shots", None), question[a] or "")
                                      for a in need], need, "pose-program", 0.0, PROGRAM_STOP)):
            program[a] = _clean_program(text)
        fresh: list[Problem] = []
        for a in idx:
            q, prog = question.get(a), program.get(a)
            answer, reason = check_posed(q, prog, sandbox, seen, require_program)
            if answer is None:
                reasons[reason] += 1
                continue
            seen.add(normalize_question(q or ""))
            meta: dict[str, Any] = {"round": round_idx, "attempt": a, "kind": kind_of[a], "level": level,
                                    "steps": program_steps(prog or "")}
            if reason == "unlabelled":
                meta["gold_trusted"] = False
            fresh.append(Problem(id=f"posed-r{round_idx}-{a:05d}", question=q or "", answer=answer,
                                 origin="posed", source=model, program=prog, meta=meta))
        if witness != "none":  # a stated expression's exact value, whatever the route
            fresh = [p for p in fresh if not p.answer or expression_witness(p, reasons) is not False]
        if witness in ("auto", "program", "both"):
            labelled = [p for p in fresh if p.answer]
            ids = [p.meta["attempt"] for p in labelled]
            texts = gen([program_messages(shots_for(a, "pose-witness-shots", None), p.question)
                         for a, p in zip(ids, labelled)], ids, "pose-witness", witness_temperature, PROGRAM_STOP)
            agreed = {p.id: program_witness(p, _clean_program(t), sandbox, reasons) for p, t in zip(labelled, texts)}
            fresh = [p for p in fresh if agreed.get(p.id, True)]
        if accept is not None and fresh:
            fresh, dropped = accept(fresh)
            reasons.update({k: v for k, v in dropped.items() if v})
        kept.extend(fresh)
        if progress is not None:
            progress.update(len(idx))
    if target > 0 and len(kept) > target:  # the last batch overshot: keep the first `target`
        reasons["over_target"] += len(kept) - target
        kept = kept[:target]
    for p in kept:
        stats["by_kind"][p.meta["kind"]]["kept"] += 1
    stats.update(attempted=a0, kept=len(kept), rejected=dict(sorted(reasons.items())),
                 unlabelled=sum(p.answer == "" for p in kept), golds_disagree=reasons.get("golds_disagree", 0))
    if target > 0 and len(kept) < target and "stopped" not in stats:
        stats["stopped"] = "attempts"
    return kept, stats
