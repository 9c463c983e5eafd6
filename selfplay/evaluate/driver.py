"""Held-out evaluation: greedy pass@1, and with samples > 1 also maj@k and pass@k (with 95% CIs).

Every sampled path is seeded from (eval seed, problem id, sample index) with a stable hash
(`selfplay.core.rng.derive_seed`, namespaced "eval" so eval draws never coincide with training
rollouts), so any problem's result can be regenerated alone and a rerun gives the same numbers.

eval.json schema (one file per evaluated model; see docs/training.md):
    {"model": str, "sets": {name: {"n", "pass@1", "pass@1_ci", "k", "maj@k", "maj@k_ci", "pass@k",
     "pass@k_ci", "pass@1_sampled", "pass@k_curve", ..., "params": {...}, "problems": [...]}}}
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from selfplay.backends import problems_per_call
from selfplay.backends.base import Backend, SamplingParams
from selfplay.backends.resources import Resources
from selfplay.config import Config
from selfplay.core import evalsets, io
from selfplay.core.console import Progress, counting_paths
from selfplay.core.io import write_json
from selfplay.core.log import log
from selfplay.core.metrics import gain_points, greedy_gain, majority_vote, summarize
from selfplay.core.records import Problem
from selfplay.core.rng import derive_seed
from selfplay.prompts import SOLVE_STOP, solve_messages
from selfplay.solve.paths import Labelled, PathKind, generate_labelled
from selfplay_seeds.loaders import load_jsonl_problems
from selfplay_seeds.text import normalize_question

GREEDY_INDEX = -1  # the sample index the greedy path's (unused) seed derives from


def eval_seed(seed: int, problem_id: str, index: int) -> int:
    """Stable per-sample seed (blake2b, not Python's salted hash())."""
    return derive_seed("eval", seed, problem_id, index)


def _record(comp: Any, verdict: Any, keep_text: bool) -> dict[str, Any]:
    r = {"label": verdict.label, "reason": verdict.reason, "extracted": verdict.extracted,
         "finish_reason": comp.finish_reason, "n_tokens": comp.n_tokens}
    if keep_text:
        r["completion"] = comp.text
    return r


def _problem_record(d: Labelled, seed: int, keep_text: bool) -> dict[str, Any]:
    """A problem's eval record: its greedy path (text always kept) and its sampled paths."""
    p = d.problem
    samp = []
    for j, (c, v) in enumerate(zip(d.completions[1:], d.verdicts[1:])):
        r = _record(c, v, keep_text)
        r["seed"] = eval_seed(seed, p.id, j)
        samp.append(r)
    rec: dict[str, Any] = {"id": p.id, "answer": p.answer, "greedy": _record(d.completions[0], d.verdicts[0], True),
                           "samples": samp}
    if samp:
        c_ok = sum(s["label"] == "correct" for s in samp)
        rec.update(n=len(samp), c=c_ok, pass_rate=c_ok / len(samp),
                   maj=majority_vote([s["extracted"] for s in samp], [s["label"] for s in samp]))
    return rec


def unique_ids(problems: Sequence[Problem], where: str) -> None:
    """ValueError("<where>: problem ids must be unique") when two problems share an id."""
    ids = [p.id for p in problems]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{where}: problem ids must be unique")


def evaluate(backend: Backend, problems: Sequence[Problem], verifier: Any, *, samples: int = 8,
             temperature: float = 0.8, top_p: float = 0.95, max_new_tokens: int = 256, seed: int = 0,
             batch_size: int = 16, keep_completions: bool = False, progress: bool = True,
             desc: str = "eval") -> dict[str, Any]:
    """Evaluate `backend` on `problems`: metrics (see selfplay.core.metrics) + per-problem records.
    (labelled_records, then set_result.)"""
    unique_ids(problems, "evaluate")
    t0 = time.perf_counter()
    records = labelled_records(backend, problems, verifier, samples=samples, temperature=temperature, top_p=top_p,
                               max_new_tokens=max_new_tokens, seed=seed, batch_size=batch_size,
                               keep_completions=keep_completions, progress=progress, desc=desc)
    return set_result(backend, records, samples=samples, temperature=temperature, top_p=top_p,
                      max_new_tokens=max_new_tokens, seed=seed, seconds=time.perf_counter() - t0)


def set_result(backend: Backend, records: list[dict[str, Any]], *, samples: int, temperature: float, top_p: float,
               max_new_tokens: int, seed: int, seconds: float) -> dict[str, Any]:
    """One set's eval record: its metrics over `records`, the settings and the seconds it took."""
    return {"model": getattr(backend, "model", None), "backend": getattr(backend, "name", None),
            **summarize(records, seed=seed),
            "params": {"samples": samples, "temperature": temperature, "top_p": top_p,
                       "max_new_tokens": max_new_tokens, "seed": seed},
            "seconds": round(seconds, 3), "problems": records}


def labelled_records(backend: Backend, problems: Sequence[Problem], verifier: Any, *, samples: int = 8,
                     temperature: float = 0.8, top_p: float = 0.95, max_new_tokens: int = 256, seed: int = 0,
                     batch_size: int = 16, keep_completions: bool = False, progress: bool = True,
                     desc: str = "eval") -> list[dict[str, Any]]:
    """The per-problem eval records of `backend` on `problems`, in order.

    Paths are generated and labelled by the same loop as solving (selfplay/solve/paths.py): a
    greedy path and `samples` sampled paths per problem, in one submission.
    verifier: a selfplay_verifiers.MathVerifier (from selfplay.backends.resources), or anything with
    submit(gold, completion) -> a Future of a verdict.
    batch_size: problems per generate call (a backend with continuous generation takes them all).
    The greedy completion text is always kept; sampled texts only with keep_completions.
    progress: show the evaluation's progress (`desc`), counted in paths (a greedy and `samples`
    sampled ones per problem) as the backend finishes them.
    """
    if samples < 1:
        raise ValueError(f"evaluate: samples must be >= 1, got {samples}")
    if batch_size < 1:
        raise ValueError(f"evaluate: batch_size must be >= 1, got {batch_size}")
    # the same prompt and stop strings as solving, so eval measures what training produced
    greedy_params = SamplingParams(n=1, temperature=0.0, top_p=1.0, max_new_tokens=max_new_tokens, stop=SOLVE_STOP)
    sample_params = SamplingParams(n=samples, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                                   stop=SOLVE_STOP)
    kinds = [PathKind("cot", greedy_params, seeds=lambda p: [eval_seed(seed, p.id, GREEDY_INDEX)],
                      messages=lambda p: solve_messages(p.question))]
    if samples > 1:  # greedy and sampled paths in one submission
        kinds.append(PathKind("cot", sample_params, seeds=lambda p: [eval_seed(seed, p.id, j) for j in range(samples)],
                              messages=lambda p: solve_messages(p.question)))
    by_index: dict[int, dict[str, Any]] = {}
    per_problem = 1 + (samples if samples > 1 else 0)
    pbar = Progress(len(problems) * per_problem, desc, "path") if progress else None
    correct = 0
    try:
        with counting_paths(pbar):
            for done in generate_labelled(backend, problems, kinds, verifier, batch_problems=batch_size):
                for d in done:
                    by_index[d.index] = _problem_record(d, seed, keep_completions)
                    correct += d.verdicts[0].label == "correct"
                if pbar is not None:
                    pbar.set_postfix(greedy_correct=f"{correct}/{len(by_index)}", refresh=False)
                    pbar.update(sum(len(d.completions) for d in done))
    finally:
        if pbar is not None:
            pbar.close()
    return [by_index[i] for i in range(len(problems))]


# ---------------------------------------------------------------- held-out files

def load_eval_file(path: str | Path) -> list[Problem]:
    """Held-out problems from GSM8K, SVAMP, MAWPS or generic {"question", "answer"} JSONL: the one
    loader in selfplay_seeds.loaders (a bad line raises ValueError naming file:line:field)."""
    return load_jsonl_problems(path)


def write_eval(result: dict[str, Any], path: str | Path) -> None:
    """Write an eval result atomically (temp file + rename)."""

    write_json(path, result)


def _fmt(x: float | None, ci: Sequence[float] | None = None) -> str:
    if x is None:
        return "-"
    s = f"{100 * x:5.1f}%"
    return s + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")


def format_table(result: dict[str, Any]) -> str:
    rows = [("set", "n", "pass@1 (greedy) [95% CI]", "maj@k", "pass@k")]
    for name, s in result["sets"].items():
        k = s.get("k") or 0
        rows.append((name, str(s["n"]), _fmt(s.get("pass@1"), s.get("pass@1_ci")),
                     f"{_fmt(s.get('maj@k'), s.get('maj@k_ci'))} (k={k})" if k else "-",
                     _fmt(s.get("pass@k"), s.get("pass@k_ci")) if k else "-"))
    return _aligned(rows)


def _aligned(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def format_gains(before: dict[str, Any], after: dict[str, Any]) -> str:
    """Paired greedy pass@1 change per set shared by two eval results (metrics.paired_gain)."""

    rows = [["set", "n", "before", "after", "gain (pts)", "95% CI", "newly right/wrong", "McNemar p"]]
    for name, a in (after.get("sets") or {}).items():
        b = (before.get("sets") or {}).get(name)
        g = greedy_gain(b, a) if b else {"n": 0}
        if g["n"]:
            rows.append([name, str(g["n"]), f"{100 * g['before']:.1f}%", f"{100 * g['after']:.1f}%", *gain_points(g),
                         f"{g['gained']}/{g['lost']}", f"{g['mcnemar_p']:.3g}"])
    if len(rows) == 1:
        return "no set with per-problem greedy records in both results: nothing to compare"
    return _aligned(rows)


def evaluate_model(cfg: Config, model: str, sets: dict[str, Sequence[Problem]],
                   backends: Callable[[str], Backend] | None = None) -> dict[str, Any]:
    """The one evaluation driver (the loop's per-round evaluation and `selfplay eval`): `model` on
    every set with the config's settings (eval.samples, eval.max_new_tokens, solve.temperature /
    top_p, run.seed, [model], [verify]); the eval.json structure. `backends`: where the backend
    comes from (the loop's engine cache), else it is built and closed here."""
    log(f"evaluating {model} on {', '.join(f'{k} ({len(v)})' for k, v in sets.items())}")
    e = cfg.eval
    with Resources(cfg, model, backends) as res:
        backend, verifier = res.backend(), res.verifier()
        # the built-in out-of-distribution sets get eval.ood_samples, every other set eval.samples;
        # the sets of one setting go to the engine in one submission (a continuous-batching engine
        # then never idles at a set's tail) and are split back afterwards: per-problem seeds make
        # every record the same as when the set runs alone
        groups: dict[int, list[str]] = {}
        for name in sets:
            groups.setdefault(e.ood_samples if name in evalsets.OOD_SETS else e.samples, []).append(name)
        done: dict[str, dict[str, Any]] = {}
        for samples, names in groups.items():
            problems = [p for name in names for p in sets[name]]
            for name in names:
                unique_ids(sets[name], f"evaluate: set {name!r}")
            t0 = time.perf_counter()
            records = labelled_records(backend, problems, verifier, samples=samples,
                                       batch_size=problems_per_call(backend, samples),
                                       temperature=cfg.solve.temperature, top_p=cfg.solve.top_p,
                                       max_new_tokens=e.max_new_tokens, seed=cfg.run.seed,
                                       desc=f"eval {', '.join(names)}")
            seconds = time.perf_counter() - t0
            start = 0
            for name in names:
                part = records[start:start + len(sets[name])]
                start += len(part)
                done[name] = {"kind": evalsets.set_kind(name), "description": evalsets.describe(name),
                              **set_result(backend, part, samples=samples, temperature=cfg.solve.temperature,
                                           top_p=cfg.solve.top_p, max_new_tokens=e.max_new_tokens,
                                           seed=cfg.run.seed, seconds=seconds * len(part) / max(1, len(records)))}
    return {"model": model, "sets": {name: done[name] for name in sets}}


def run_eval_cli(cfg: Config, model: str, data: list[str], out: Path | None, limit: int | None,
                 extra_sets: dict[str, list[Problem]] | None = None,
                 exclude: Sequence[str | Path] = ()) -> dict[str, Any]:
    """`selfplay eval`: evaluate `model` on each data file (and `extra_sets`) with evaluate_model
    and `cfg`'s settings (so with a run's config.json it computes what the run's evaluation
    computed), print a table, write JSON to `out`. `exclude`: problems files whose questions are
    removed from every set first."""
    if not data and not extra_sets:
        raise ValueError("eval: give at least one --data FILE.jsonl")
    sets: dict[str, list[Problem]] = dict(extra_sets or {})
    for f in data:
        name = Path(f).stem
        if name in sets:
            raise ValueError(f"eval: two data files share the set name {name!r}")
        probs = load_eval_file(f)
        sets[name] = probs[:limit] if limit else probs
    if exclude:
        # Same normaliser as pose dedup and the contamination checks: operators count, so
        # excluding "What is 7 + 4?" does not also remove "What is 7 - 4?".
        seen = {normalize_question(p.question) for f in exclude for p in io.read_records(f, Problem.from_dict)}
        for name, probs in list(sets.items()):
            kept = [p for p in probs if normalize_question(p.question) not in seen]
            print(f"{name}: excluded {len(probs) - len(kept)} of {len(probs)} problems seen in --exclude files",
                  file=sys.stderr)
            sets[name] = kept
    empty = [name for name, probs in sets.items() if not probs]
    if empty:  # before the model loads: scoring 0 problems would report a meaningless 0%
        raise ValueError(f"eval: set {empty[0]!r} has no problems to evaluate")
    result = evaluate_model(cfg, model, sets)
    print(format_table(result))
    if out is not None:
        write_eval(result, out)
        print(f"wrote {out}")
    return result
