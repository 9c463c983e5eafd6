"""Curation between verification and training: filters on posed problems and rollouts, pairing,
keep-the-best, and per-round diversity metrics. Every filter's drops are counted by reason."""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable, Sequence

from selfplay.config import FiltersConfig, PairConfig
from selfplay.core.metrics import pass_rate
from selfplay.core.records import Pair, Problem, Rollout
from selfplay.pair.diversity import diversity_metrics
from selfplay.pair.filters import completion_hygiene, dedup_problems, keep_best, perplexity_filter, solve_rate_band
from selfplay.pair.process import boxed_share, chosen_eligibility
from selfplay.verify.crosscheck import crosscheck_filter


def dedup_posed(posed: Sequence[Problem], against: Sequence[str], heldout: Sequence[str],
                cfg: FiltersConfig) -> tuple[list[Problem], dict[str, int]]:
    """Posed problems minus exact/near duplicates of seeds, earlier rounds and held-out sets."""
    if not (cfg.enabled and cfg.dedup_posed) or not posed:
        return list(posed), {}
    kept, dropped = dedup_problems(posed, against, heldout=heldout, near_threshold=cfg.near_threshold)
    return list(kept), dict(dropped)


def curate_pairs(problems: Sequence[Problem], rollouts: dict[str, list[Rollout]], cfg: FiltersConfig,
                 make: Callable[[Problem, list[Rollout], float | None], list[Pair]],
                 *, crosscheck: bool = False, pair: PairConfig | None = None) -> tuple[list[Pair], dict[str, Any]]:
    """Filter rollouts and problems, pair what is left, keep the best pairs.

    make(problem, rollouts, pass_rate) pairs one problem; the pass rate is the one measured on
    all of its labelled paths, before any filter. pair (pair.clean_chosen, flawed_chosen,
    require_boxed): the step check of every correct cot path (selfplay.pair.process), counted
    under "steps" whatever filters.enabled says. crosscheck (verify.crosscheck): drop the pairs
    math-verify disputes (selfplay.verify.crosscheck.crosscheck_filter), before keep-the-best."""
    counts: dict[str, Any] = {}
    flat = [r for p in problems for r in rollouts.get(p.id, [])]
    cand = flat
    eligible = list(problems)
    if cfg.enabled:
        if cfg.hygiene:
            cand, counts["hygiene"] = completion_hygiene(cand, max_chars=cfg.max_chars)
        if cfg.perplexity:
            res = perplexity_filter(cand, cfg.min_logprob, cfg.max_logprob)
            cand, counts["perplexity"] = res
            counts["perplexity_info"] = dict(res.info)
        if cfg.solve_band:
            eligible, counts["solve_band"] = solve_rate_band(problems, flat, cfg.band_low, cfg.band_high)
    if pair is not None and pair.clean_chosen:
        res = chosen_eligibility(problems, cand, flawed=pair.flawed_chosen, require_boxed=pair.require_boxed)
        cand, counts["steps"] = res
        counts["steps_info"] = dict(res.info)
    by_pid: dict[str, list[Rollout]] = defaultdict(list)
    for r in cand:
        by_pid[r.problem_id].append(r)
    pairs = [pr for p in eligible
             for pr in make(p, by_pid.get(p.id, []), pass_rate(r.label for r in rollouts.get(p.id, [])))]
    if crosscheck:
        pairs, counts["crosscheck"], counts["crosscheck_info"] = crosscheck_filter(pairs)
    counts["pairs_before_keep_best"] = len(pairs)
    if cfg.enabled and cfg.keep_fraction < 1.0:
        pairs, counts["keep_best"] = keep_best(pairs, cfg.keep_fraction)
    counts["format_info"] = {  # \boxed{} adherence: every cot path with a verdict, and the kept chosen
        "paths_boxed": boxed_share([r.completion for r in flat if r.mode == "cot" and r.label in ("correct", "incorrect")]),
        "chosen_boxed": boxed_share([str(p.chosen[-1]["content"]) for p in pairs if p.metadata.get("mode") == "cot"]),
        "step_pairs": sum(p.metadata.get("granularity") == "step" for p in pairs)}
    counts = {k: dict(v) if isinstance(v, dict) else v for k, v in counts.items()}
    return list(pairs), counts


def round_diversity(problems: Sequence[Problem], rollouts: dict[str, list[Rollout]]) -> dict[str, Any]:
    return diversity_metrics(problems, [r for p in problems for r in rollouts.get(p.id, [])])
