"""Whole runs side by side: the ablation table of docs/results.md from finished run directories.

For each run, after round --round (default: each run's last evaluated round), every eval set's
greedy pass@1 and its paired gain over the run's own starting model (OUT/eval_base.json), with the
out-of-distribution sets also pooled. With --against, each run is also compared with the base run
of the same seed (run.seed in OUT/config.json), problem by problem: the same seed draws the same
evaluation sets. A variant given for several seeds gets a line pooled over its seeds too (problem
ids told apart by seed), against its bases and against its starts.

    .venv/bin/python scripts/compare_runs.py --against runs/pr11 runs/pr12 \\
        --variant default=runs/pr11,runs/pr12 --variant no_posing=runs/a_nopose_s0,runs/a_nopose_s1

Prints a markdown table: variant, seed(s), set, after, gain vs start [95% CI], gain vs base
[95% CI] (paired bootstrap; McNemar p), and with bases for two or more seeds the gain vs base
across seeds: each seed's paired gain taken as one replicate, their mean with a t interval, an
exact sign-flip p, and the seeds below / above. The paired bootstrap counts only which problems
were drawn; a run's trajectory (what it posed, sampled and trained on) varies from seed to seed
too, and one change of tie-breaking in the sampler moved a set by 8 points (docs/results.md), so
the across-seeds column is the one to read for whether a setting is better.

Problems are matched by id: a run with other generators shares only part of its base's
in-distribution split (a procedural id names its generator, level and index), and the cell says
over how many problems it compares; a set with none shared shows no comparison, never a number
over different problems.

With --forms, a second table splits the generated out-of-distribution sets (ood_arith, ood_word)
by template (selfplay_seeds/ood.py names each problem's form; the sets are drawn again from each
run's seed and must match its eval.json): per variant and form, pooled over seeds, the base's and
the variant's pass@1 and the paired gain, worst first. A gap that sits in a few forms says where
to look; each form holds about a tenth of a set, so read it as a pointer, not a result.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from selfplay.core import io  # noqa: E402
from selfplay.core.evalsets import OOD_SETS  # noqa: E402
from selfplay.core.metrics import across_seeds, gain_points, pooled_greedy_gain  # noqa: E402
from selfplay_seeds.ood import OOD_GENERATORS, ood_problems  # noqa: E402

POOLED = "OOD pooled"


def _sets(run: Path, round_idx: int | None) -> tuple[int, dict[str, Any], dict[str, Any]]:
    """(seed, start sets, after-round sets) of a finished run; refuses a run without them."""
    cfg = io.read_json(run / "config.json")
    base = run / "eval_base.json"
    rounds = sorted((int(d.name.split("_")[1]) for d in run.glob("round_*") if (d / "eval.json").is_file()))
    if not base.is_file() or not rounds:
        raise SystemExit(f"{run}: no eval_base.json or no evaluated round: not a finished run with evaluation")
    k = rounds[-1] if round_idx is None else round_idx
    if k not in rounds:
        raise SystemExit(f"{run}: round {k} has no eval.json (evaluated: {rounds})")
    return int(cfg["run"]["seed"]), io.read_json(base)["sets"], io.read_json(run / f"round_{k}" / "eval.json")["sets"]


def _cell(g: dict[str, Any], of: int | None = None) -> str:
    """A paired gain; with `of`, the count of problems it covers when that is fewer (a run whose
    generators differ shares only part of the in-distribution split: the same ids are the same
    problems, since a procedural id names its generator, level and index)."""
    if g["n"] == 0:
        return "(no shared problems)"
    gain, ci = gain_points(g)
    part = f" (the {g['n']} shared problems)" if of is not None and g["n"] < of else ""
    return f"{gain} {ci}, p = {g['mcnemar_p']:.2g}{part}"


def _seeds_cell(gains: list[float]) -> str:
    """The per-seed gains against the base as replicates (metrics.across_seeds): their mean, t
    interval, exact sign-flip p and how many seeds fell below / above. Blank under two seeds."""
    if len(gains) < 2:
        return ""
    a = across_seeds(gains)
    lo, hi = a["ci"]
    each = ", ".join(f"{100 * x:+.1f}" for x in gains)
    return (f"{100 * a['mean']:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}], sign-flip p = {a['signflip_p']:.2g}; "
            f"{a['below']} below, {a['above']} above ({each})")


def _forms(set_name: str, seed: int, record: dict[str, Any], run: str) -> dict[str, str]:
    """Problem id -> form of a generated OOD set as `seed` draws it now; refuses a set whose ids or
    golds differ (drawn by other code), so no problem is filed under the wrong template."""
    drawn = {p.id: p for p in ood_problems(set_name, len(record["problems"]), seed=seed)}
    out = {}
    for q in record["problems"]:
        p = drawn.get(q["id"])
        if p is None or p.answer != str(q.get("answer")):
            raise SystemExit(f"--forms: {run}: {set_name} problem {q['id']} (seed {seed}) is not the one "
                             f"selfplay_seeds/ood.py draws now")
        out[q["id"]] = str(p.meta["form"])
    return out


def _split(record: dict[str, Any], forms: dict[str, str]) -> dict[str, dict[str, Any]]:
    """An eval.json set record split by form: form -> a record of that form's problems."""
    out: dict[str, dict[str, Any]] = {}
    for p in record["problems"]:
        out.setdefault(forms[p["id"]], {"problems": []})["problems"].append(p)
    return out


def _form_rows(name: str, runs: list[str], loaded: list[tuple[int, Any, dict[str, Any]]],
               bases: dict[int, dict[str, Any]], base_runs: dict[int, str]) -> list[str]:
    """The --forms table's rows for one variant: its seeds with a base, each generated OOD set split
    by form, pooled over seeds, worst paired gain first."""
    rows = []
    for set_name in sorted(OOD_GENERATORS):
        by_form: dict[str, list[tuple[str, dict[str, Any], dict[str, Any]]]] = {}
        for run, (s, _, after) in zip(runs, loaded):
            if s not in bases or set_name not in after or set_name not in bases[s]:
                continue
            forms = _forms(set_name, s, after[set_name], run)
            if _forms(set_name, s, bases[s][set_name], base_runs[s]) != forms:
                raise SystemExit(f"--forms: {run} and {base_runs[s]} evaluated different {set_name} problems")
            base_by, after_by = _split(bases[s][set_name], forms), _split(after[set_name], forms)
            for form in after_by:
                by_form.setdefault(form, []).append((f"{s}/{set_name}", base_by[form], after_by[form]))
        gains = {form: pooled_greedy_gain(t) for form, t in by_form.items()}
        for form in sorted(gains, key=lambda f: (gains[f]["gain"], f)):
            g, per_seed = gains[form], [pooled_greedy_gain([t])["gain"] for t in by_form[form]]
            rows.append(f"| {name} | {set_name} | {form} | {g['n']} | {100 * g['before']:.1f}% | "
                        f"{100 * g['after']:.1f}% | {_cell(g)} | {sum(x < 0 for x in per_seed)} below, "
                        f"{sum(x > 0 for x in per_seed)} above |")
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", action="append", required=True, metavar="NAME=RUN[,RUN...]",
                    help="a variant and its runs (one per seed)")
    ap.add_argument("--against", nargs="*", default=[], type=Path, metavar="RUN",
                    help="base runs, one per seed: each variant run is compared with the one of its seed")
    ap.add_argument("--round", type=int, default=None, help="the round whose eval.json to read (default: last)")
    ap.add_argument("--forms", action="store_true",
                    help="also a table of ood_arith and ood_word split by template, against the bases")
    args = ap.parse_args(argv)
    if args.forms and not args.against:
        raise SystemExit("--forms compares with base runs: give --against")
    bases, base_runs = {}, {}
    for run in args.against:
        seed, _, after = _sets(run, args.round)
        if seed in bases:
            raise SystemExit(f"--against: two base runs with seed {seed}")
        bases[seed], base_runs[seed] = after, str(run)
    form_rows: list[str] = []
    print("| variant | seeds | set | after | vs start | vs base (same seed) | vs base, across seeds |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for spec in args.variant:
        name, eq, runs = spec.partition("=")
        if not eq or not runs:
            raise SystemExit(f"--variant {spec!r}: expected NAME=RUN[,RUN...]")
        run_list = runs.split(",")
        loaded = [_sets(Path(r), args.round) for r in run_list]
        if args.forms:
            form_rows += _form_rows(name, run_list, loaded, bases, base_runs)
        seeds = [s for s, _, _ in loaded]
        names = [n for n in loaded[0][2] if all(n in a for _, _, a in loaded)]
        for set_name in names + [POOLED]:
            members = list(OOD_SETS) if set_name == POOLED else [set_name]
            vs_start = [(f"{s}/{m}", st[m], a[m]) for s, st, a in loaded for m in members if m in a and m in st]
            base_by_seed = {s: [(f"{s}/{m}", bases[s][m], a[m]) for m in members if m in a and m in bases[s]]
                            for s, _, a in loaded if s in bases}
            vs_base = [t for triples in base_by_seed.values() for t in triples]
            if not vs_start:
                continue
            g = pooled_greedy_gain(vs_start)
            after = f"{100 * g['after']:.1f}%"
            cell_base = _cell(pooled_greedy_gain(vs_base), of=g["n"]) if vs_base else ""
            per_seed = [pooled_greedy_gain(triples) for triples in base_by_seed.values()]
            cell_seeds = _seeds_cell([x["gain"] for x in per_seed if x["n"]])
            print(f"| {name} | {','.join(map(str, seeds))} | {set_name} | {after} | {_cell(g)} | {cell_base} "
                  f"| {cell_seeds} |")
    if form_rows:
        print("\n| variant | set | form | n | base | after | vs base (same seed) | seeds |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        print("\n".join(form_rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
