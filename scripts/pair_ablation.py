"""Pairing and training policies compared on the same paths: re-pair one round of a finished run
under each variant's [pair] settings, train each from that round's starting model with the run's
[train] and [guard] settings as the variant overrides them (e.g. train.max_steps=12,
train.nll_weight=0, guard.train_on=seed), evaluate each on the run's eval sets (in- and
out-of-distribution, plus --eval-file sets), and print every
variant's greedy pass@1 with its paired gain over the round's starting model and over the first
variant (paired bootstrap interval and McNemar p, as the report computes them).

The paths (rollouts.jsonl) are the run's own, so the variants differ only in which pairs they
make: the comparison is paired on data as well as on problems.

    .venv-vllm/bin/python scripts/pair_ablation.py runs/default --round 0 --to runs/ablation \\
        --variant old:pair.clean_chosen=false --variant clean \\
        --variant as_rejected:pair.flawed_chosen=rejected --variant steps:pair.step_pairs=true \\
        --eval-file ../shared/data/svamp_test.jsonl --eval-limit 100
    .venv-vllm/bin/python scripts/pair_ablation.py runs/default --round 0 --to runs/budget \
        --variant every_pair --variant steps12:train.max_steps=12 --variant dpo_only:train.nll_weight=0
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from selfplay.backends.resources import build_verifier
from selfplay.config import parse_setting
from selfplay.core import io
from selfplay.core.metrics import gain_points, greedy_gain
from selfplay.core.records import Problem
from selfplay.evaluate.driver import evaluate_model
from selfplay.run.context import eval_sets, round_model
from selfplay.run.layout import run_config
from selfplay.run.round import load_rollouts, pair_round, paths_per_problem
from selfplay.run.train_round import guarded_set
from selfplay.train import launch as train_launch
from selfplay_seeds import load_jsonl_problems

VARIANT_SECTIONS = ("pair.", "train.", "guard.")  # what happens after the paths: pairing and training


def parse_variant(text: str) -> tuple[str, dict[str, object]]:
    name, _, rest = text.partition(":")
    overrides = {}
    for item in filter(None, rest.split(",")):
        try:
            key, value = parse_setting(item)
        except ValueError as e:
            raise SystemExit(f"--variant {text}: {e}") from None
        if not key.startswith(VARIANT_SECTIONS):
            raise SystemExit(f"--variant {text}: each setting is SECTION.FIELD=VALUE, SECTION one of "
                             f"{', '.join(s.rstrip('.') for s in VARIANT_SECTIONS)}")
        overrides[key] = value
    return name, overrides


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a finished run directory (OUT)")
    ap.add_argument("--round", type=int, default=0)
    ap.add_argument("--to", type=Path, required=True, help="where each variant's pairs, model and eval go")
    ap.add_argument("--variant", action="append", required=True, metavar="NAME[:SECTION.F=V,...]")
    ap.add_argument("--eval-file", action="append", default=[], help="another held-out JSONL set (repeatable)")
    ap.add_argument("--eval-limit", type=int, default=100, help="problems taken from each --eval-file")
    args = ap.parse_args(argv)
    variants = [parse_variant(v) for v in args.variant]
    base_cfg = run_config(args.run)
    rdir = args.run / f"round_{args.round}"
    problems = io.read_records(rdir / "problems.jsonl", Problem.from_dict)
    rollouts = load_rollouts(rdir / "rollouts.jsonl", paths_per_problem(base_cfg))
    start = round_model(base_cfg, args.run, args.round)
    sets = eval_sets(base_cfg)
    sets.update({Path(f).stem: load_jsonl_problems(f, limit=args.eval_limit) for f in args.eval_file})
    start_eval_path = args.to / "start_eval.json"
    if start_eval_path.exists():
        start_eval = io.read_json(start_eval_path)
    else:
        start_eval = evaluate_model(base_cfg, start, sets)
        io.write_json(start_eval_path, start_eval)
    results: dict[str, dict] = {}
    for name, overrides in variants:
        cfg = run_config(args.run, overrides)
        vdir = args.to / name
        eval_path = vdir / "eval.json"
        if not eval_path.exists():
            with build_verifier(cfg) as verifier:
                pairs, counts = pair_round(cfg, problems, rollouts, verifier, round_idx=args.round, model=start)
            io.write_json(vdir / "filters.json", counts)
            train, _ = guarded_set(cfg, [pairs], 0)  # this variant's pairs only, as if the run's first round
            io.write_jsonl(vdir / "train_pairs.jsonl", train)
            train_launch.train(cfg, [vdir / "train_pairs.jsonl"], start, vdir / "model", seed=cfg.run.seed + args.round,
                               logging_dir=None, stats_path=vdir / "train_stats.json")  # writes train_stats.json
            io.write_json(eval_path, evaluate_model(cfg, str(vdir / "model"), sets))
        results[name] = io.read_json(eval_path)
    first = variants[0][0]
    print(f"{'variant':14s} {'set':22s} {'pairs':>6s} {'pass@1':>7s}  gain vs start [95% CI]      "
          f"gain vs {first} [95% CI]")
    for name, _ in variants:
        n_pairs = sum(1 for _ in io.iter_jsonl(args.to / name / "train_pairs.jsonl"))
        for set_name in sets:
            vs_start = greedy_gain(start_eval["sets"][set_name], results[name]["sets"][set_name])
            vs_first = greedy_gain(results[first]["sets"][set_name], results[name]["sets"][set_name])
            pts, ci = gain_points(vs_start)
            pts1, ci1 = gain_points(vs_first)
            print(f"{name:14s} {set_name:22s} {n_pairs:6d} {vs_start['after']:7.2f}  {pts:>6s} {ci:16s} "
                  f"p={vs_start['mcnemar_p']:.3g}   {pts1:>6s} {ci1:16s} p={vs_first['mcnemar_p']:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
