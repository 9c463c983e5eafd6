"""Filters over records: each takes records and returns a FilterResult, which unpacks as
`(kept, dropped_counts)`; counts that are not drops (e.g. rollouts without a log-probability)
are in `.info`. Every reason a filter can drop for is present in `dropped_counts`, zero or not,
so stats.json always has the same keys. Pure functions: no I/O, input order is kept.
Definitions, defaults and the quality-score formula: docs/filters.md.
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import replace
from typing import Any, Generic, Mapping, Sequence, TypeVar

from selfplay.core.metrics import pass_rates
from selfplay.core.records import Pair, Problem, Rollout
from selfplay.pair.contamination import HeldoutMatcher  # the same held-out test the round's gate uses
from selfplay.pair.diversity import MinHashIndex, has_repetition, normalize_text
from selfplay.prompts import copies_example
from selfplay_verifiers import answer_key

__all__ = ["FilterResult", "MinHashIndex", "normalize_text", "dedup_problems",
           "solve_rate_band", "has_repetition", "completion_hygiene", "perplexity_filter",
           "majority_pseudo_labels", "QUALITY_WEIGHTS", "quality_components", "quality_score",
           "keep_best"]

T = TypeVar("T")


class FilterResult(tuple, Generic[T]):  # type: ignore[type-arg]
    """`kept, dropped = result` works like a 2-tuple; `result.info` holds non-drop counts."""

    info: dict[str, Any]

    def __new__(cls, kept: list[T], dropped: dict[str, int],
                info: Mapping[str, Any] | None = None) -> "FilterResult[T]":
        self = super().__new__(cls, (kept, dropped))
        self.info = dict(info or {})
        return self

    @property
    def kept(self) -> list[T]:
        return self[0]

    @property
    def dropped(self) -> dict[str, int]:
        return self[1]


def _counts(*reasons: str) -> dict[str, int]:
    return {r: 0 for r in reasons}


# ---------------------------------------------------------------- dedup

def dedup_problems(problems: Sequence[Problem], against: Sequence[str] = (), *,
                   heldout: Sequence[str] = (), near_threshold: float = 0.8, num_perm: int = 64,
                   shingle: int = 3, seed: int = 0) -> FilterResult[Problem]:
    """Drop problems whose question is empty after normalisation ("empty"), overlaps a held-out
    text exactly or near ("heldout_near_duplicate"), or repeats a reference text (`against`:
    seeds, earlier rounds) or an earlier kept problem exactly ("duplicate") or with word-shingle
    Jaccard >= near_threshold ("near_duplicate"). Held-out overlap is checked first."""
    dropped = _counts("empty", "heldout_near_duplicate", "duplicate", "near_duplicate")
    held = HeldoutMatcher(heldout, near_threshold, num_perm=num_perm, shingle=shingle, seed=seed)
    seen = {normalize_text(t) for t in against}
    index = MinHashIndex(num_perm, shingle, seed, near_threshold)
    index.add(against)
    kept: list[Problem] = []
    for p in problems:
        norm = normalize_text(p.question)
        if not norm:
            dropped["empty"] += 1
        elif held.match(p.question) is not None:
            dropped["heldout_near_duplicate"] += 1
        elif norm in seen:
            dropped["duplicate"] += 1
        elif index.query(p.question) >= near_threshold:
            dropped["near_duplicate"] += 1
        else:
            kept.append(p)
            seen.add(norm)
            index.add([p.question])
    return FilterResult(kept, dropped, {"checked": len(problems)})


# ---------------------------------------------------------------- solve-rate band

def solve_rate_band(problems: Sequence[Problem], rollouts: Sequence[Rollout], low: float = 0.125,
                    high: float = 0.875,
                    origins: Sequence[str] = ("posed",)) -> FilterResult[Problem]:
    """Keep problems of `origins` whose pass rate (selfplay.core.metrics.pass_rate: correct among
    correct + incorrect rollouts) is within [low, high]: always solved teaches nothing
    ("too_easy"), never solved gives no chosen path and may have a wrong gold ("too_hard"), no
    verdict at all is "no_verdicts". Problems of other origins pass untouched."""
    if not 0.0 <= low <= high <= 1.0:
        raise ValueError(f"solve_rate_band: need 0 <= low <= high <= 1, got low={low}, high={high}")
    rates = pass_rates(rollouts)
    dropped = _counts("too_easy", "too_hard", "no_verdicts")
    kept: list[Problem] = []
    for p in problems:
        if p.origin not in origins:
            kept.append(p)
            continue
        rate = rates.get(p.id)
        if rate is None:
            dropped["no_verdicts"] += 1
        elif rate > high:
            dropped["too_easy"] += 1
        elif rate < low:
            dropped["too_hard"] += 1
        else:
            kept.append(p)
    return FilterResult(kept, dropped)


# ---------------------------------------------------------------- completion hygiene

def completion_hygiene(rollouts: Sequence[Rollout], *, max_tokens: int | None = None,
                       max_chars: int | None = 4000, repeat_substring_len: int = 30,
                       repeat_substring_count: int = 6, repeat_line_count: int = 5,
                       min_distinct_4gram: float = 0.3,
                       distinct_min_words: int = 50) -> FilterResult[Rollout]:
    """Drop, first reason wins: "unfinished" (finish_reason == "length"), "too_long" (n_tokens >
    max_tokens or len(completion) > max_chars; None disables), "copies_example" (reproduces the
    solve prompt's worked example, see prompts.copies_example), "no_answer" (verified and no
    extracted answer, or reason "no_answer"; unverified rollouts are not judged here; a pot
    program that gave no answer stays, labelled incorrect with its failure, a fair `rejected`),
    "repetition" (see has_repetition)."""
    dropped = _counts("unfinished", "too_long", "copies_example", "no_answer", "repetition")
    kept: list[Rollout] = []
    for r in rollouts:
        if r.finish_reason == "length":
            dropped["unfinished"] += 1
        elif ((max_tokens is not None and r.n_tokens > max_tokens)
              or (max_chars is not None and len(r.completion) > max_chars)):
            dropped["too_long"] += 1
        elif copies_example(r.completion, r.extracted):
            dropped["copies_example"] += 1
        elif r.label is not None and r.mode == "cot" and (r.reason == "no_answer" or not (r.extracted or "").strip()):
            dropped["no_answer"] += 1
        elif has_repetition(r.completion, substring_len=repeat_substring_len,
                            substring_count=repeat_substring_count, line_count=repeat_line_count,
                            min_distinct_ngram=min_distinct_4gram, min_words=distinct_min_words):
            dropped["repetition"] += 1
        else:
            kept.append(r)
    return FilterResult(kept, dropped)


# ---------------------------------------------------------------- perplexity

def perplexity_filter(rollouts: Sequence[Rollout], min_logprob: float = -3.0,
                      max_logprob: float = -0.05) -> FilterResult[Rollout]:
    """Drop rollouts whose mean token log-probability is < min_logprob ("low_logprob": incoherent)
    or > max_logprob ("high_logprob": generic, memorised). Rollouts without one (None or NaN) pass
    and are counted in info["no_logprob"]."""
    if min_logprob > max_logprob:
        raise ValueError(f"perplexity_filter: min_logprob {min_logprob} > "
                         f"max_logprob {max_logprob}")
    dropped = _counts("low_logprob", "high_logprob")
    info = {"no_logprob": 0}
    kept: list[Rollout] = []
    for r in rollouts:
        lp = r.logprob_mean
        if lp is None or math.isnan(lp):
            info["no_logprob"] += 1
            kept.append(r)
        elif lp < min_logprob:
            dropped["low_logprob"] += 1
        elif lp > max_logprob:
            dropped["high_logprob"] += 1
        else:
            kept.append(r)
    return FilterResult(kept, dropped, info)


# ---------------------------------------------------------------- self-consistency

def needs_label(p: Problem) -> bool:
    return p.answer.strip() == "" or p.meta.get("gold_trusted") is False


def majority_pseudo_labels(problems: Sequence[Problem], rollouts: Sequence[Rollout],
                           min_agreement: float = 0.5, only_without_gold: bool = True, *,
                           min_votes: int = 2) -> FilterResult[Problem]:
    """Majority vote over the extracted answers (compared by selfplay_verifiers.answer_key, the key maj@k
    votes with too; answers without a key do not vote) of each problem without
    a trusted gold (answer "" or meta["gold_trusted"] is False). Kept problems get the majority
    answer as gold and meta agreement / votes / gold_source="majority" (gold_trusted stays False;
    the old answer goes to meta["previous_answer"]). Drops: "no_answers" (< min_votes answers),
    "tie" (two answers share the top count), "low_agreement" (top share < min_agreement).
    Problems with a trusted gold pass untouched, unless only_without_gold=False: then they are
    voted and filtered too but keep their gold (meta gets agreement and majority_answer).
    Rollout labels are stale after relabelling: verify again against the new gold."""
    votes: dict[str, Counter[str]] = defaultdict(Counter)
    for r in rollouts:
        key = answer_key(r.extracted)
        if key is not None:
            votes[r.problem_id][key] += 1
    dropped = _counts("no_answers", "tie", "low_agreement")
    info = {"relabelled": 0, "changed_answer": 0, "has_gold": 0}
    kept: list[Problem] = []
    for p in problems:
        needs = needs_label(p)
        if not needs:
            info["has_gold"] += 1
            if only_without_gold:
                kept.append(p)
                continue
        counts = votes.get(p.id, Counter())
        n = sum(counts.values())
        if n < max(1, min_votes):
            dropped["no_answers"] += 1
            continue
        # Sorting by (-count, answer) makes the winner independent of rollout order.
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
            dropped["tie"] += 1
            continue
        winner, top = ranked[0]
        agreement = top / n
        if agreement < min_agreement:
            dropped["low_agreement"] += 1
            continue
        meta = {**p.meta, "agreement": agreement, "votes": n}
        if needs:
            meta.update(gold_source="majority", gold_trusted=False, previous_answer=p.answer)
            info["relabelled"] += 1
            if p.answer.strip() and answer_key(p.answer) != winner:
                info["changed_answer"] += 1
            kept.append(replace(p, answer=winner, meta=meta))
        else:
            meta["majority_answer"] = winner
            kept.append(replace(p, meta=meta))
    return FilterResult(kept, dropped, info)


# ---------------------------------------------------------------- overgenerate, keep the best

QUALITY_WEIGHTS: dict[str, float] = {"informativeness": 0.4, "brevity": 0.2, "logprob": 0.2,
                                     "format": 0.2}
_BOXED = "\\boxed{"


def _content(messages: Sequence[Mapping[str, Any]]) -> str:
    return str(messages[-1].get("content", "")) if messages else ""


def _chars_after_last_boxed(text: str) -> int | None:
    """Characters after the closing brace of the last \\boxed{...}; None if none or unbalanced."""
    start = text.rfind(_BOXED)
    if start < 0:
        return None
    depth = 0
    for i in range(start + len(_BOXED) - 1, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return len(text[i + 1:].strip())
    return None


def quality_components(pair: Pair, *, min_logprob: float = -3.0,
                       max_logprob: float = -0.05) -> dict[str, float]:
    """The four quality terms, each in [0, 1]; a missing input gives the neutral 0.5."""
    md = pair.metadata
    rate = md.get("pass_rate")
    informativeness = 0.5 if rate is None else max(0.0, 1.0 - 2.0 * abs(float(rate) - 0.5))
    chosen, rejected = _content(pair.chosen), _content(pair.rejected)
    c, r = md.get("chosen_tokens"), md.get("rejected_tokens")
    if c is None or r is None:  # fall back to characters, always available
        c, r = len(chosen), len(rejected)
    brevity = 0.5 if max(c, r) <= 0 else 0.5 + 0.5 * (r - c) / max(c, r)
    lp = md.get("chosen_logprob")
    logprob = 0.5 if lp is None else float(min_logprob <= lp <= max_logprob)
    fmt = 0.0
    if str(md.get("chosen_extracted") or "").strip():
        tail = _chars_after_last_boxed(chosen)
        fmt = 0.5 + 0.25 * (chosen.count(_BOXED) == 1) + 0.25 * (tail is not None and tail <= 80)
    return {"informativeness": informativeness, "brevity": brevity, "logprob": logprob,
            "format": fmt}


def quality_score(pair: Pair, weights: Mapping[str, float] | None = None, *,
                  min_logprob: float = -3.0, max_logprob: float = -0.05) -> float:
    """Weighted sum of quality_components (default QUALITY_WEIGHTS, summing to 1), in [0, 1]."""
    w = QUALITY_WEIGHTS if weights is None else weights
    comps = quality_components(pair, min_logprob=min_logprob, max_logprob=max_logprob)
    return float(sum(w.get(k, 0.0) * v for k, v in comps.items()))


def keep_best(pairs: Sequence[Pair], keep_fraction: float = 1.0, *,
              max_per_problem: int | None = None,
              weights: Mapping[str, float] | None = None) -> FilterResult[Pair]:
    """Rank pairs by quality_score (ties: problem_id, then metadata pair_index or input position),
    drop beyond `max_per_problem` per problem ("per_problem_cap"), then keep the best
    ceil(keep_fraction x len(pairs)) ("low_quality"). Kept pairs come back in input order with
    metadata["quality_score"] set."""
    if not 0.0 <= keep_fraction <= 1.0:
        raise ValueError(f"keep_best: keep_fraction must be in [0, 1], got {keep_fraction}")
    if max_per_problem is not None and max_per_problem < 1:
        raise ValueError(f"keep_best: max_per_problem must be >= 1, got {max_per_problem}")
    scores = [quality_score(p, weights) for p in pairs]

    def rank_key(i: int) -> tuple[float, str, int, int]:
        md = pairs[i].metadata
        return (-scores[i], str(md.get("problem_id", "")), int(md.get("pair_index", i)), i)

    order = sorted(range(len(pairs)), key=rank_key)
    dropped = _counts("per_problem_cap", "low_quality")
    budget = math.ceil(keep_fraction * len(pairs) - 1e-9)
    per_problem: Counter[str] = Counter()
    chosen: set[int] = set()
    for i in order:
        pid = str(pairs[i].metadata.get("problem_id", ""))
        if max_per_problem is not None and per_problem[pid] >= max_per_problem:
            dropped["per_problem_cap"] += 1
        elif len(chosen) >= budget:
            dropped["low_quality"] += 1
        else:
            per_problem[pid] += 1
            chosen.add(i)
    kept = [replace(pairs[i], metadata={**pairs[i].metadata, "quality_score": round(scores[i], 6)})
            for i in sorted(chosen)]
    kept_scores = [scores[i] for i in chosen]
    info = {"mean_score_kept": sum(kept_scores) / len(kept_scores) if kept_scores else None,
            "min_score_kept": min(kept_scores) if kept_scores else None}
    return FilterResult(kept, dropped, info)
