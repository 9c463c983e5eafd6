"""Pair stage: correct x incorrect reasoning paths -> TRL conversational preference pairs.

Only labelled paths are used (unknown verdicts never become pairs). Identical texts are merged
first, so a pair never has chosen == rejected. Which pairs are kept is a seeded, deterministic
choice that spreads over distinct chosen and distinct rejected paths. A pair compares like with
like: both paths are reasoning in words (cot) or both are programs (pot, solve.mode), under that
kind's prompt; with solve.mode "mixed" each kind gives up to max_pairs pairs of its own.

Rejected that teach: among a problem's incorrect cot paths, those whose first false statement is
known (selfplay.pair.process.first_error) are paired first, and the pair records it as
`first_error`. With step_pairs, each such pair may also give a step-level pair (Step-DPO style,
metadata granularity "step"): docs/filters.md.
"""
from __future__ import annotations

from typing import Any, Sequence

from selfplay.core.metrics import pass_rate
from selfplay.core.records import Pair, Problem, Rollout
from selfplay.core.rng import rng_for
from selfplay.pair.process import first_error, step_pair_parts
from selfplay.prompts import solve_messages
from selfplay_verifiers.steps import check_steps


def _distinct(rollouts: Sequence[Rollout], label: str) -> list[Rollout]:
    seen: set[str] = set()
    out = []
    for r in sorted(rollouts, key=lambda r: r.sample_index):
        text = r.completion.strip()
        if r.label == label and text and text not in seen:
            seen.add(text)
            out.append(r)
    return out


def make_pairs(problem: Problem, rollouts: Sequence[Rollout], *, max_pairs: int, round_idx: int,
               seed: int, model: str, sampling: dict[str, Any], rate: float | None = None,
               step_pairs: bool = False) -> list[Pair]:
    """Up to max_pairs distinct (correct, incorrect) pairs for one problem, per kind of path,
    and with step_pairs up to as many step-level pairs besides (cot).

    rate: the problem's pass rate to record (default: selfplay.core.metrics.pass_rate of
    `rollouts`); pass the rate over all paths when `rollouts` has been filtered."""
    rate = pass_rate(r.label for r in rollouts) if rate is None else rate
    out: list[Pair] = []
    for mode in sorted({r.mode for r in rollouts}):
        same = [r for r in rollouts if r.mode == mode]
        out += _pairs_of_mode(problem, same, mode, max_pairs=max_pairs, round_idx=round_idx, seed=seed,
                              model=model, sampling=sampling, rate=rate, step_pairs=step_pairs)
    return out


def _pairs_of_mode(problem: Problem, rollouts: Sequence[Rollout], mode: str, *, max_pairs: int,
                   round_idx: int, seed: int, model: str, sampling: dict[str, Any],
                   rate: float | None, step_pairs: bool) -> list[Pair]:
    good, bad = _distinct(rollouts, "correct"), _distinct(rollouts, "incorrect")
    if not good or not bad:
        return []
    rng = rng_for(seed, round_idx, problem.id, "pair") if mode == "cot" else \
        rng_for(seed, round_idx, problem.id, "pair", mode)
    rng.shuffle(good)
    rng.shuffle(bad)
    # cot: each path's statements checked once (its counts and, for a rejected, its first error)
    reports = {r.sample_index: check_steps(r.completion) for r in good + bad} if mode == "cot" else {}
    errors = {r.sample_index: first_error(reports[r.sample_index]) for r in bad} if mode == "cot" else {}
    bad.sort(key=lambda r: errors.get(r.sample_index) is None)  # stable: known first errors first
    # Walk the grid along diagonals: pair k uses good[k % G] and bad[(k % G + k // G) % B]. This
    # is a bijection onto good x bad (no repeats), and the first pairs reuse each path as little
    # as possible, so the kept pairs spread over distinct chosen and rejected texts.
    n_good, n_bad = len(good), len(bad)
    chosen_pairs = [(good[k % n_good], bad[(k % n_good + k // n_good) % n_bad])
                    for k in range(min(max_pairs, n_good * n_bad))]
    prompt = solve_messages(problem.question, mode)
    out, steps = [], []
    for i, (c, r) in enumerate(chosen_pairs):
        md = _metadata(problem, c, r, i, mode=mode, rate=rate, round_idx=round_idx, model=model, sampling=sampling)
        if mode == "cot":
            md.update(first_error=errors[r.sample_index],
                      step_check={"chosen": dict(reports[c.sample_index].counts),
                                  "rejected": dict(reports[r.sample_index].counts)})
        out.append(Pair(prompt=prompt, chosen=[{"role": "assistant", "content": c.completion}],
                        rejected=[{"role": "assistant", "content": r.completion}], metadata=md))
        err = md.get("first_error")
        parts = step_pair_parts(c.completion, r.completion, err["start"]) if step_pairs and err else None
        if parts is not None:
            prefix, good_step, bad_step = parts
            steps.append(Pair(prompt=prompt, chosen=[{"role": "assistant", "content": prefix + good_step}],
                              rejected=[{"role": "assistant", "content": prefix + bad_step}],
                              metadata={**md, "granularity": "step", "pair_index": len(chosen_pairs) + len(steps),
                                        "step": {"prefix_chars": len(prefix), "chosen_step": good_step,
                                                 "rejected_step": bad_step}}))
    return out + steps


def _metadata(problem: Problem, c: Rollout, r: Rollout, i: int, *, mode: str, rate: float | None, round_idx: int,
              model: str, sampling: dict[str, Any]) -> dict[str, Any]:
    return {
        "problem_id": problem.id, "origin": problem.origin, "source": problem.source,
        "level": problem.level, "gold": problem.answer, "question": problem.question,
        "chosen_extracted": c.extracted, "rejected_extracted": r.extracted,
        "chosen_index": c.sample_index, "rejected_index": r.sample_index, "pair_index": i,
        "chosen_tokens": c.n_tokens, "rejected_tokens": r.n_tokens,
        "chosen_logprob": c.logprob_mean, "rejected_logprob": r.logprob_mean,
        # the sampling model's log-prob of each side and its token digest: DPO's reference log-probs
        # when training's reference is `model` (selfplay/train/reflogps.py)
        "chosen_ref_logprob": c.ref_logprob, "rejected_ref_logprob": r.ref_logprob,
        "chosen_ref_key": c.ref_key, "rejected_ref_key": r.ref_key,
        "pass_rate": rate, "round": round_idx, "model": model, "sampling": sampling, "mode": mode,
        # "majority": the gold is the vote of the k paths (selfplay.pair.pseudo), with its share
        "gold_source": problem.meta.get("gold_source", "trusted"),
        "agreement": problem.meta.get("agreement"),
        # posed: the gold's second witness (program and/or solver majority) and the prompt
        **{k: problem.meta[k] for k in ("witness", "majority_witness", "kind", "level", "steps")
           if problem.origin == "posed" and k in problem.meta},
    }
