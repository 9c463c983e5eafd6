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

import math
import time
from collections import Counter
from typing import Any, Callable, Iterable, Sequence

from selfplay.backends import generate_many
from selfplay.backends.base import Backend, SamplingParams
from selfplay.core.records import Problem
from selfplay.core.rng import derive_seed, rng_for
from selfplay.pose.checks import check_posed, clean_question, program_steps
from selfplay.pose.witness import WITNESSES, expression_witness, program_witness
from selfplay.prompts import POSE_KINDS, PROGRAM_STOP, QUESTION_STOP, pose_messages, program_messages, question_messages
# normalize_question: the one normaliser (operators kept), also pose dedup's
from selfplay_seeds.text import is_word_problem, normalize_question


# One generation call: (prompts, temperature, stop, seeds); n=1 per prompt.
Call = tuple[Sequence[Any], float, tuple[str, ...], Sequence[int]]


def _texts(backend: Backend, calls: Sequence[Call], top_p: float, max_new_tokens: int) -> list[list[str]]:
    """The texts of independent calls, submitted together (one engine submission where the backend
    takes several: no wait for one call's longest path before the next starts)."""
    jobs = [(list(prompts), SamplingParams(n=1, temperature=temperature, top_p=top_p,
                                           max_new_tokens=max_new_tokens, stop=stop), [[s] for s in seeds])
            for prompts, temperature, stop, seeds in calls if prompts]
    done = iter(generate_many(backend, jobs) if jobs else [])
    return [[comps[0].text for comps in next(done)] if prompts else [] for prompts, _, _, _ in calls]


def _clean_program(text: str) -> str | None:
    return text.strip("\n").rstrip() or None


def pose_problems(backend: Backend, sandbox: Any, examples: Sequence[Problem], *, attempts: int, shots: int,
                  params: SamplingParams, seed: int, round_idx: int, existing: Iterable[str] = (),
                  model: str = "", progress: Any = None, require_program: bool = True, target: int = 0,
                  batch: int = 32, kinds: Sequence[str] = ("fewshot", "program_first"), level: int = 0,
                  shot_sets: int = 0,
                  witness: str = "auto", witness_temperature: float = 0.7, max_seconds: float = 0.0,
                  accept: Callable[[list[Problem]], tuple[list[Problem], dict[str, int]]] | None = None,
                  ) -> tuple[list[Problem], dict[str, Any]]:
    """Overgenerate, then keep: pose in batches of `batch` attempts until `target` problems are
    kept (0: make every attempt), `attempts` (the budget) are spent or `max_seconds` have passed.
    Once some are kept, a batch is no larger than 1.5x what the kept rate so far says the target
    still needs (at least 16).
    Attempt a uses prompt kind kinds[a % len(kinds)] (selfplay/prompts.py) at curriculum `level`.
    shot_sets > 0: within a batch, the attempts of a kind draw their seed shots from `shot_sets`
    sets (per call role), so prompts share their shot prefix and the engine's prefix cache skips
    most of the prefill; each attempt still samples with its own seed. 0: fresh shots per attempt.

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
    # mutation's shots are all of one kind (one generator or seed file), word problems where the
    # pool has any: the model writes one more of that kind, so its story and form follow them
    by_kind: dict[str, list[Problem]] = {}
    for e in shot_pool:
        by_kind.setdefault(e.source, []).append(e)
    word_pool = [e for e in shot_pool if is_word_problem(e.question)]
    same_kind = [g for g in by_kind.values() if is_word_problem(g[0].question)] or list(by_kind.values())
    stats: dict[str, Any] = {"attempted": 0, "kept": 0, "rejected": {}, "target": target, "level": level,
                             "witness": witness, "golds_disagree": 0,
                             "by_kind": {k: {"attempted": 0, "kept": 0} for k in dict.fromkeys(kinds)}}
    if not shot_pool or attempts <= 0 or not kinds:
        return [], stats
    seen = {normalize_question(q) for q in existing}
    kept: list[Problem] = []
    reasons: Counter[str] = Counter()
    t0 = time.monotonic()
    a0 = batch_no = 0

    def shots_for(a: int, role: str, n: int | None) -> list[tuple[str, str]]:
        """Seed shots for attempt a's call `role`. A mutation attempt's question is asked after
        seeds of one kind, and its programs (the gold's, the witness's) are written after word
        problems' programs, where the pool has them."""
        key: tuple[Any, ...] = (a,)
        if shot_sets > 0:  # the batch's b-th set of this role for this kind
            key = ("set", batch_no, (a // len(kinds)) % shot_sets, kinds[a % len(kinds)])
        rng = rng_for(seed, round_idx, role, *key)
        pool = shot_pool
        if kinds[a % len(kinds)] == "mutation":
            pool = rng.choice(same_kind) if role == "pose-shots" else (word_pool or shot_pool)
        picks = rng.sample(pool, min(n or shots, len(pool)))
        return [(p.question, p.program or "") for p in picks]

    def call(prompts: list[Any], idx: list[int], role: str, temperature: float, stop: tuple[str, ...]) -> Call:
        return prompts, temperature, stop, [derive_seed(seed, round_idx, role, a) for a in idx]

    def gen(*calls: Call) -> list[list[str]]:
        return _texts(backend, calls, params.top_p, params.max_new_tokens)

    while a0 < attempts and (target <= 0 or len(kept) < target):
        if max_seconds and time.monotonic() - t0 >= max_seconds:
            stats["stopped"] = "max_seconds"
            break
        size = max(1, batch)
        if target > 0 and kept and a0:  # size the next batch by the kept rate so far, not past need
            size = min(size, max(16, math.ceil(1.5 * (target - len(kept)) * a0 / len(kept))))
        idx = list(range(a0, min(attempts, a0 + size)))
        a0 = idx[-1] + 1
        batch_no += 1
        kind_of = {a: kinds[a % len(kinds)] for a in idx}
        for a in idx:
            stats["by_kind"][kind_of[a]]["attempted"] += 1
        question: dict[int, str | None] = {}
        program: dict[int, str | None] = {}
        pf = [a for a in idx if kind_of[a] == "program_first"]
        qf = [a for a in idx if kind_of[a] != "program_first"]
        # first calls of both routes together: program_first's programs, the others' questions
        programs, questions = gen(
            call([pose_messages("program_first", shots_for(a, "pose-shots", None), level) for a in pf], pf, "pose",
                 params.temperature, PROGRAM_STOP),
            call([pose_messages(kind_of[a], shots_for(a, "pose-shots", POSE_KINDS[kind_of[a]]), level) for a in qf],
                 qf, "pose", params.temperature, QUESTION_STOP))
        program.update((a, _clean_program(t)) for a, t in zip(pf, programs))
        question.update((a, clean_question(t)) for a, t in zip(qf, questions))
        # second calls together: a program's question; a program only for a question that passes
        # the question checks
        asked = [a for a in pf if program[a]]
        need = [a for a in qf if check_posed(question[a], None, sandbox, seen, False)[1] == "unlabelled"]
        questions, programs = gen(
            call([question_messages(shots_for(a, "pose-question-shots", None), program[a] or "") for a in asked],
                 asked, "pose-question", 0.0, QUESTION_STOP),
            call([program_messages(shots_for(a, "pose-program-shots", None), question[a] or "") for a in need],
                 need, "pose-program", 0.0, PROGRAM_STOP))
        question.update((a, clean_question(t)) for a, t in zip(asked, questions))
        program.update((a, _clean_program(t)) for a, t in zip(need, programs))
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
            texts, = gen(call([program_messages(shots_for(a, "pose-witness-shots", None), p.question)
                               for a, p in zip(ids, labelled)], ids, "pose-witness", witness_temperature, PROGRAM_STOP))
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
