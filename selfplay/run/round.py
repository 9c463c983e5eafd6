"""One self-play round: problems (seeds + posed) -> solve + verify -> pair -> stats.

Files in OUT/round_K/: problems.jsonl, rollouts.jsonl, pairs.jsonl, pose.json, stats.json.
Crash safety: problems.jsonl, pairs.jsonl and stats.json are written atomically once their stage
finishes; rollouts.jsonl is an append-only log written a whole batch of problems at a time, so a
restart keeps every finished problem, drops a torn tail and only generates what is missing. A
stage whose output file exists is never redone.
"""
from __future__ import annotations

import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Sequence

from selfplay.backends.base import SamplingParams
from selfplay.config import Config
from selfplay.core import faults, io, provenance
from selfplay.core.log import bar, log
from selfplay.core.metrics import pass_counts, pass_rate
from selfplay.core.records import Pair, Problem, Rollout
from selfplay.core.rng import derive_seed, rng_for
from selfplay.pair.contamination import HeldoutGate, HeldoutMatcher
from selfplay.pair.curate import curate_pairs, dedup_posed, round_diversity
from selfplay.pair.pairs import make_pairs
from selfplay.pair.pseudo import pseudo_label
from selfplay.prompts import SOLVE_STOP, solve_modes
from selfplay.run import executor
from selfplay.run.context import RoundContext, solve_entry
from selfplay.run.curriculum import FILE as CURRICULUM_FILE
from selfplay.run.curriculum import curriculum_line, seed_levels
from selfplay_seeds import (easy_first_levels, is_word_problem, load_hf_dataset, load_jsonl_problems, parse_hf_spec,
                            procedural_problems, seed_file)


def seed_problems(cfg: Config, round_idx: int, gate: HeldoutGate,
                  levels: dict[str, list[int]] | None = None) -> list[Problem]:
    """This round's seed problems: fresh procedural items (per-round seed) plus file/HF items.
    `levels`: each generator's levels (the seed curriculum's), else seeds.levels for all; with
    seeds.file_order = easy_first each file's too (keyed by file name), and its problems are
    drawn from those levels only (selfplay_seeds.loaders.easy_first_levels).

    Every candidate passes `gate` (held-out exact + near-duplicate check) before it is taken, and
    a rejected one is replaced by the next candidate, so the counts asked for are still met."""

    rseed = derive_seed(cfg.run.seed, "round", round_idx)
    probs = procedural_problems(cfg.seeds.problems, cfg.seeds.generators, cfg.seeds.levels, seed=rseed,
                                split="train", reject=gate.rejects, per_generator=levels)
    if not cfg.seeds.file_problems:
        return probs
    pool: list[Problem] = []
    for f in cfg.seeds.files:
        pool.extend(load_jsonl_problems(seed_file(f), unlabelled=True))
    for spec in cfg.seeds.hf_datasets:
        name, conf, split = parse_hf_spec(spec)
        pool.extend(load_hf_dataset(name, config=conf, split=split))
    if cfg.seeds.file_order == "easy_first":
        pool = [p for p in easy_first_levels(pool) if p.level in (levels or {}).get(p.source, cfg.seeds.levels)]
    rng_for(rseed, "files").shuffle(pool)
    drawn: list[Problem] = []
    for p in pool:  # only candidates are checked (and counted): a large pool costs no more
        if len(drawn) >= cfg.seeds.file_problems:
            break
        if not gate.rejects(p):
            drawn.append(p)
    return probs + drawn


def contamination_dropped(rdir: Path) -> int:
    """Problems of round `rdir` dropped before solving as held-out copies (contamination_pre.json)."""
    path = rdir / "contamination_pre.json"
    return int(io.read_json(path)["dropped_total"]) if path.exists() else 0


def stage_problems(ctx: RoundContext) -> list[Problem]:
    path = ctx.dir / "problems.jsonl"
    cfg = ctx.cfg
    posing = cfg.pose.enabled and cfg.pose.attempts > 0
    entry = provenance.key(cfg, model=ctx.model if posing else None)
    if posing:  # posed golds are what their programs print in the sandbox
        entry["sandbox"] = provenance.sandbox_version()
    if provenance.check(path, entry):
        return io.read_records(path, Problem.from_dict)
    provenance.record(path, entry)
    faults.point("problems:recorded")  # provenance written, output not yet
    # Every problem, seed or posed, is checked against the held-out sets before it is solved:
    # exact or near copies are dropped and counted in contamination_pre.json.
    gate = HeldoutGate(HeldoutMatcher(ctx.heldout_questions, cfg.filters.near_threshold))
    cur = seed_levels(cfg, ctx.out, ctx.round_idx)
    io.write_json(ctx.dir / CURRICULUM_FILE, cur)
    if cfg.seeds.curriculum and ctx.round_idx:
        log(curriculum_line(cur))
    seeds = seed_problems(cfg, ctx.round_idx, gate, {g: v["levels"] for g, v in cur["generators"].items()})
    posed: list[Problem] = []
    pose_stats: dict[str, Any] = {"attempted": 0, "kept": 0, "rejected": {}}
    if posing:
        t0 = time.perf_counter()
        params = SamplingParams(n=1, temperature=cfg.pose.temperature, top_p=cfg.pose.top_p,
                                max_new_tokens=cfg.pose.max_new_tokens)
        pbar = bar(cfg.pose.attempts, f"round {ctx.round_idx} pose", "attempt")
        earlier = [p.question for k in range(ctx.round_idx)
                   for p in _read_problems(ctx.out / f"round_{k}" / "problems.jsonl")]
        against = [p.question for p in seeds] + earlier
        heldout = sorted(ctx.heldout_questions)

        def accept(batch: list[Problem]) -> tuple[list[Problem], dict[str, int]]:
            """Held-out copies (the gate counts them too) and near duplicates of seeds, earlier
            rounds and this round's posed problems so far are dropped."""
            clean = gate.keep(batch)
            kept, dedup = dedup_posed(clean, against, heldout, cfg.filters)
            against.extend(p.question for p in kept)
            return kept, {"heldout": len(batch) - len(clean), **{f"dedup_{k}": v for k, v in dedup.items()}}

        level, level_why = pose_level(ctx)
        posed, pose_stats = executor.pose(
            ctx, seeds, attempts=cfg.pose.attempts, shots=cfg.pose.shots, params=params,
            seed=cfg.run.seed, round_idx=ctx.round_idx,
            existing=[p.question for p in seeds], model=ctx.model, progress=pbar,
            require_program=cfg.pose.require_program, target=cfg.pose.target, batch=cfg.pose.batch,
            shot_sets=cfg.pose.shot_sets,
            kinds=tuple(cfg.pose.prompts), level=level, witness=cfg.pose.witness,
            witness_temperature=cfg.pose.witness_temperature, max_seconds=cfg.pose.max_seconds,
            accept=accept)
        pbar.total = pose_stats["attempted"]  # the target can be met before the budget is spent
        pbar.refresh()
        pbar.close()
        pose_stats.update(level_reason=level_why, seconds=round(time.perf_counter() - t0, 2))
        log(f"posed {pose_stats['kept']}/{pose_stats['attempted']} kept; rejected: {pose_stats['rejected']}")
    io.write_json(ctx.dir / "pose.json", pose_stats)
    problems = seeds + posed
    pre = gate.summary()
    if pre["dropped_total"]:
        log(f"dropped {pre['dropped_total']} problems matching held-out questions before solving: {pre['dropped']}")
    io.write_json(ctx.dir / "contamination_pre.json", pre)
    io.write_jsonl(path, problems)
    return problems


def pose_level(ctx: RoundContext) -> tuple[int, str]:
    """The curriculum level of this round's posing and why: one up when the last round's posed
    problems were solved above filters.band_high on average, one down (not below 0) when below
    band_low, else the same (pose.curriculum)."""
    if not ctx.cfg.pose.curriculum or ctx.round_idx == 0:
        return 0, "start" if ctx.cfg.pose.curriculum else "off"
    prev = ctx.out / f"round_{ctx.round_idx - 1}"
    last = io.read_json(prev / "pose.json").get("level", 0) if (prev / "pose.json").exists() else 0
    rate = (io.read_json(prev / "stats.json").get("posed_difficulty") or {}).get("mean_solve_rate") \
        if (prev / "stats.json").exists() else None
    if rate is None:
        return last, "no posed problems solved last round"
    f = ctx.cfg.filters
    if rate > f.band_high:
        return last + 1, f"last round's posed solve rate {rate:.2f} > band_high {f.band_high}"
    if rate < f.band_low and last > 0:
        return last - 1, f"last round's posed solve rate {rate:.2f} < band_low {f.band_low}"
    return last, f"last round's posed solve rate {rate:.2f} within the band"


def _read_problems(path: Path) -> list[Problem]:
    return io.read_records(path, Problem.from_dict) if path.exists() else []


def load_rollouts(path: Path, samples: int) -> dict[str, list[Rollout]]:
    """Complete groups (all `samples` paths) per problem from the append-only log; a torn tail
    or an incomplete group is dropped (and the file rewritten without it)."""
    if not path.exists():
        return {}
    groups: dict[str, dict[int, Rollout]] = defaultdict(dict)
    n_lines = 0
    for r in io.read_records(path, Rollout.from_dict, repair=True):
        groups[r.problem_id][r.sample_index] = r  # a duplicate line can never double a sample
        n_lines += 1
    done = {pid: [g[j] for j in sorted(g)] for pid, g in groups.items() if len(g) == samples}
    if sum(len(v) for v in done.values()) != n_lines:
        io.write_jsonl(path, [r for group in done.values() for r in group])
    return done


_VERIFY_HINT = ("relabel with `selfplay verify {path}` (what was made from labels that change is moved to "
                "OUT/stale/), or use another --out")


def paths_per_problem(cfg: Config) -> int:
    """Sampled paths per problem: solve.samples of each kind solve.mode asks for."""
    return cfg.solve.samples * len(solve_modes(cfg.solve.mode))


def missing_rollouts(problems: Sequence[Problem], rollouts: dict[str, list[Rollout]]) -> list[str]:
    return [p.id for p in problems if p.id not in rollouts]


def stage_solve(ctx: RoundContext, problems: Sequence[Problem]) -> tuple[dict[str, list[Rollout]], dict[str, Any]]:
    cfg = ctx.cfg
    path = ctx.dir / "rollouts.jsonl"
    entry = solve_entry(ctx)
    if not provenance.check(path, entry, hint=_VERIFY_HINT.format(path=path)):
        provenance.record(path, entry)
        faults.point("solve:recorded")
    done = load_rollouts(path, paths_per_problem(cfg))
    todo = [p for p in problems if p.id not in done]
    timing: dict[str, Any] = {"resumed_problems": len(done)}
    if not todo:
        return done, timing
    if done:
        log(f"resuming: {len(done)} problems already solved, {len(todo)} to go")
    params = SamplingParams(n=cfg.solve.samples, temperature=cfg.solve.temperature, top_p=cfg.solve.top_p,
                            max_new_tokens=cfg.solve.max_new_tokens, stop=SOLVE_STOP, with_logprobs=True)
    per_problem = paths_per_problem(cfg)
    modes = solve_modes(cfg.solve.mode)
    pbar = bar(len(todo) * per_problem, f"round {ctx.round_idx} solve+verify", "sample")
    t0, tokens = time.perf_counter(), 0
    labelling: dict[str, Any] = {}
    for rollouts in executor.solve(ctx, todo, params, seed=cfg.run.seed, round_idx=ctx.round_idx,
                                   batch_problems=cfg.solve.batch_problems, progress=pbar, modes=modes,
                                   timing=labelling):
        io.append_jsonl(path, rollouts)
        faults.point("solve:batch")  # a whole batch of problems appended
        for r in rollouts:
            done.setdefault(r.problem_id, []).append(r)
        tokens += sum(r.n_tokens for r in rollouts)
    pbar.close()
    secs = time.perf_counter() - t0
    samples = len(todo) * per_problem
    timing.update(solve_seconds=round(secs, 2), solved_samples=samples, tokens=tokens,
                  samples_per_s=round(samples / secs, 3), tokens_per_s=round(tokens / secs, 1),
                  label_seconds=round(labelling.get("verify_seconds", 0.0), 2))
    if labelling.get("programs"):  # programs run in the sandbox while the next batch generates
        timing["programs_run"] = labelling["programs"]
    return done, timing


def stage_pair(ctx: RoundContext, problems: Sequence[Problem], rollouts: dict[str, list[Rollout]]) -> list[Pair]:
    """Filter, pair and keep the best; filters.json (drop counts) is written before pairs.jsonl."""
    path = ctx.dir / "pairs.jsonl"
    todo = missing_rollouts(problems, rollouts)
    if todo:  # pairs from a partial round would be kept as final by every later run
        raise ValueError(f"{ctx.dir / 'rollouts.jsonl'}: {len(todo)} of {len(problems)} problems are not solved "
                         f"yet (first: {todo[0]}); run `selfplay solve --round {ctx.round_idx}` first")
    entry = provenance.key(ctx.cfg, labels=True, problems=provenance.file_hash(ctx.dir / "problems.jsonl"),
                           rollouts=provenance.file_hash(ctx.dir / "rollouts.jsonl"))
    if provenance.check(path, entry):
        return io.read_records(path, Pair.from_dict)
    provenance.record(path, entry)
    faults.point("pair:recorded")
    pairs, counts = pair_round(ctx.cfg, problems, rollouts, ctx.verifier(), round_idx=ctx.round_idx, model=ctx.model)
    io.write_json(ctx.dir / "filters.json", counts)
    faults.point("pair:filters")  # filters.json written, pairs.jsonl not yet
    io.write_jsonl(path, pairs)
    return pairs


def pair_round(cfg: Config, problems: Sequence[Problem], rollouts: dict[str, list[Rollout]], verifier: Any, *,
               round_idx: int, model: str) -> tuple[list[Pair], dict[str, Any]]:
    """The pair stage's work, without its files: pseudo-labels and witnesses, filters, the step
    check, pairing and keep-the-best; the pairs and filters.json's counts."""
    s = cfg.solve
    sampling = {"temperature": s.temperature, "top_p": s.top_p, "max_new_tokens": s.max_new_tokens, "n": s.samples}

    def make(p: Problem, rs: list[Rollout], rate: float | None) -> list[Pair]:
        return make_pairs(p, rs, max_pairs=cfg.pair.max_pairs_per_problem, round_idx=round_idx, seed=cfg.run.seed,
                          model=model, sampling=sampling, rate=rate, step_pairs=cfg.pair.step_pairs)

    problems, rollouts, pseudo = pseudo_label(problems, rollouts, verifier, cfg)
    pairs, counts = curate_pairs(problems, rollouts, cfg.filters, make, crosscheck=cfg.verify.crosscheck, pair=cfg.pair)
    counts.update(pseudo)
    return pairs, counts


def round_stats(ctx: RoundContext, problems: Sequence[Problem], rollouts: dict[str, list[Rollout]],
                pairs: Sequence[Pair], timing: dict[str, Any]) -> dict[str, Any]:
    flat = [r for p in problems for r in rollouts.get(p.id, [])]
    labels = Counter(r.label for r in flat)
    reasons = Counter(r.reason for r in flat)
    pose_path = ctx.dir / "pose.json"
    posed = io.read_json(pose_path) if pose_path.exists() else {}
    prev = ctx.dir / "stats.json"
    if prev.exists() and not timing.get("solve_seconds"):  # a rerun keeps the original timings
        timing = io.read_json(prev).get("timing", timing)
    correct, labelled = pass_counts(r.label for r in flat)
    fpath = ctx.dir / "filters.json"
    return {
        "round": ctx.round_idx, "model": ctx.model, "problems": len(problems),
        "by_origin": dict(Counter(p.origin for p in problems)), "samples": len(flat),
        "correct": labels["correct"], "incorrect": labels["incorrect"], "unknown": labels["unknown"],
        "pct_correct": round(100 * correct / labelled, 2) if labelled else 0.0,
        "problems_with_pairs": len({pr.metadata["problem_id"] for pr in pairs}), "pairs": len(pairs),
        "pairs_by_origin": dict(Counter(str(pr.metadata.get("origin")) for pr in pairs)),
        "verdict_reasons": dict(reasons.most_common()), "posed": posed,
        "finish_reasons": dict(Counter(r.finish_reason for r in flat)), "timing": timing,
        "filters": io.read_json(fpath) if fpath.exists() else {},
        "contamination_dropped": contamination_dropped(ctx.dir),
        "diversity": round_diversity(problems, rollouts),
        "by_mode": by_mode(flat),
        "posed_difficulty": posed_difficulty(problems, rollouts, posed.get("level")),
        "curriculum": io.read_json(ctx.dir / CURRICULUM_FILE) if (ctx.dir / CURRICULUM_FILE).exists() else None,
        "by_source": by_source(problems, rollouts, pairs),
    }


def by_source(problems: Sequence[Problem], rollouts: dict[str, list[Rollout]],
              pairs: Sequence[Pair]) -> dict[str, dict[str, Any]]:
    """Per source of problems: each procedural generator and level ("word_add L1"), posed word
    problems and posed bare arithmetic ("posed word", "posed bare"), and files: problems,
    labelled paths, solve rate (correct / labelled) and problems that gave pairs."""
    paired = Counter(str(pr.metadata.get("problem_id")) for pr in pairs)
    out: dict[str, dict[str, Any]] = {}
    for p in problems:
        if p.origin == "procedural":
            key = f"{p.source} L{p.level}"
        elif p.origin == "posed":
            key = "posed word" if is_word_problem(p.question) else "posed bare"
        else:
            key = f"{p.origin} {p.source}" + (f" L{p.level}" if p.level is not None else "")
        row = out.setdefault(key, {"problems": 0, "paths": 0, "correct": 0, "with_pairs": 0, "pairs": 0})
        correct, labelled = pass_counts(r.label for r in rollouts.get(p.id, []))
        row["problems"] += 1
        row["paths"] += labelled
        row["correct"] += correct
        row["with_pairs"] += p.id in paired
        row["pairs"] += paired.get(p.id, 0)
    for row in out.values():
        row["solve_rate"] = round(row["correct"] / row["paths"], 4) if row["paths"] else None
    return dict(sorted(out.items()))


def posed_difficulty(problems: Sequence[Problem], rollouts: dict[str, list[Rollout]],
                     level: int | None) -> dict[str, Any] | None:
    """The posed problems' difficulty: solve rate (correct / labelled paths, before any filter)
    and arithmetic steps of their programs, as counts per value and means; None if none posed."""
    rates, steps = [], []
    for p in problems:
        if p.origin != "posed":
            continue
        rate = pass_rate(r.label for r in rollouts.get(p.id, []))
        if rate is not None:
            rates.append(rate)
        steps.append(int(p.meta.get("steps", 0)))
    if not steps:
        return None
    return {"problems": len(steps), "level": level,
            "mean_solve_rate": round(sum(rates) / len(rates), 4) if rates else None,
            "solve_rate": {f"{k:.3f}": v for k, v in sorted(Counter(rates).items())},
            "mean_steps": round(sum(steps) / len(steps), 3),
            "steps": {str(k): v for k, v in sorted(Counter(steps).items())}}


def by_mode(rollouts: Sequence[Rollout]) -> dict[str, dict[str, Any]]:
    """Per kind of path (cot, pot): samples, correct, % correct among the labelled ones."""
    out: dict[str, dict[str, Any]] = {}
    for mode in sorted({r.mode for r in rollouts}):
        rs = [r for r in rollouts if r.mode == mode]
        correct, labelled = pass_counts(r.label for r in rs)
        out[mode] = {"samples": len(rs), "correct": correct,
                     "pct_correct": round(100 * correct / labelled, 2) if labelled else 0.0,
                     "reasons": dict(Counter(r.reason for r in rs).most_common())}
    return out


def run_round(ctx: RoundContext) -> dict[str, Any]:
    """Run (or resume) one round and return its stats (also written to stats.json)."""
    ctx.dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    problems = stage_problems(ctx)
    rollouts, timing = stage_solve(ctx, problems)
    pairs = stage_pair(ctx, problems, rollouts)
    if timing.get("solve_seconds"):
        timing["round_seconds"] = round(time.perf_counter() - t0, 2)
    return write_stats(ctx.dir, round_stats(ctx, problems, rollouts, pairs, timing))


def write_stats(rdir: Path, stats: dict[str, Any]) -> dict[str, Any]:
    """Merge `stats` into OUT/round_K/stats.json: keys written by later steps (train, eval,
    warnings) stay when a stage recomputes its own."""
    path = rdir / "stats.json"
    merged = {**(io.read_json(path) if path.exists() else {}), **stats}
    io.write_json(path, merged)
    return merged
