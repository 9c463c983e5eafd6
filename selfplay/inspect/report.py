"""Run report: OUT/report.md with one row per round, plus PNG plots (matplotlib, Agg, no pyplot).

Reads, for K = 0, 1, ...: OUT/round_K/{stats.json, train_stats.json, eval.json, rollouts.jsonl,
contamination.json}, and the starting model's evaluation from OUT/eval_base.json (or
eval_start.json). Any file may be missing or unreadable: its cells show "-" and the report says
which files it could not read. round_K/eval.json evaluates the model trained in round K.
"""
from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson

from selfplay.core.fmt import pct_of
from selfplay.core.io import atomic_write_bytes
from selfplay.core.metrics import pass_counts, pass_rate
from selfplay.inspect.plots import plot_heldout, plot_pass_rates, plot_verdicts
from selfplay.inspect.report_tables import (contam_cell, eval_sets, gain_section, num, quality_sections, set_cell,
                                            share, table)
from selfplay.run.summary import mode_cells, training_set_text

START_EVAL_NAMES = ("eval_base.json", "eval_start.json")


def _read_json(path: Path, problems: list[str]) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        d = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as e:
        problems.append(f"{path}: {e}")
        return None
    if not isinstance(d, dict):
        problems.append(f"{path}: not a JSON object")
        return None
    return d


def pass_rates(rollouts: Path) -> tuple[list[float], int]:
    """Pass rate per problem_id (selfplay.core.metrics.pass_rate: correct / (correct + incorrect);
    a problem with no such verdict has none) and the largest number of labelled rollouts of one
    problem (the k the rates are multiples of). Unreadable lines (a torn tail) are skipped."""
    labels: dict[str, list[str]] = defaultdict(list)
    with open(rollouts, "rb") as f:
        for line in f:
            try:
                r = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(r, dict) and r.get("label") is not None:
                labels[str(r.get("problem_id"))].append(r["label"])
    rates = [pass_rate(ls) for ls in labels.values()]
    return [x for x in rates if x is not None], max((pass_counts(ls)[1] for ls in labels.values()), default=0)


def load_run(out_dir: Path) -> dict[str, Any]:
    out_dir = Path(out_dir)
    problems: list[str] = []
    start = None
    for name in START_EVAL_NAMES:
        for base in (out_dir, out_dir / "round_0"):
            if start is None:
                start = _read_json(base / name, problems)
    rounds = []
    dirs = sorted((int(m.group(1)), d) for d in out_dir.iterdir()
                  if d.is_dir() and (m := re.fullmatch(r"round_(\d+)", d.name)))
    for k, d in dirs:
        r: dict[str, Any] = {"k": k}
        for key, fname in (("stats", "stats.json"), ("train", "train_stats.json"), ("eval", "eval.json"),
                           ("contamination", "contamination.json")):
            r[key] = _read_json(d / fname, problems)
        r["pass_rates"], r["k_samples"] = None, 0
        if (d / "rollouts.jsonl").exists():
            try:
                r["pass_rates"], r["k_samples"] = pass_rates(d / "rollouts.jsonl")
            except OSError as e:
                problems.append(f"{d / 'rollouts.jsonl'}: {e}")
        rounds.append(r)
    return {"start_eval": start, "rounds": rounds, "problems": problems}


def write_report(out_dir: Path) -> Path:
    """Write OUT/report.md (+ heldout.png, pass_rates.png, verdict_reasons.png); returns its path."""
    out_dir = Path(out_dir)
    run = load_run(out_dir)
    if not run["rounds"] and not run["start_eval"]:
        raise ValueError(f"report: {out_dir} holds no run (no round_K/ and no eval_base.json)")
    sets = eval_sets(run)
    header = ["round", "problems", "samples", "% correct [95% CI]", "pairs", "trained", "dropped long/ident.",
              "steps", "train loss", "reward acc last / mean", "reward margin"] + [f"{s} pass@1 [95% CI]" for s in sets]
    any_contam = any(r["contamination"] for r in run["rounds"])
    if any_contam:
        header.append("held-out leaks")
    rows = []
    if run["start_eval"]:
        rows.append(["start"] + ["-"] * 10 + [set_cell(run["start_eval"], s) for s in sets]
                    + (["-"] if any_contam else []))
    for r in run["rounds"]:
        st, tr = r["stats"] or {}, r["train"] or {}
        pct = st.get("pct_correct")
        c, i = st.get("correct"), st.get("incorrect")
        if isinstance(c, int) and isinstance(i, int) and c + i:  # with its 95% Wilson interval
            pct_cell = pct_of(c, c + i)
        else:
            pct_cell = f"{pct:.1f}%" if isinstance(pct, (int, float)) else "-"
        row = [str(r["k"]), num(st.get("problems")), num(st.get("samples")), pct_cell, num(st.get("pairs")),
               "NOT TRAINED" if tr.get("trained") is False else num(tr.get("n_train")),
               f"{tr['n_dropped_too_long']}/{tr.get('n_dropped_identical', 0)}" if "n_dropped_too_long" in tr else "-",
               num(tr.get("steps")), num(tr.get("train_loss")),
               f"{num(tr.get('rewards/accuracies'), '{:.2f}')} / {num(tr.get('rewards/accuracies_mean'), '{:.2f}')}",
               num(tr.get("rewards/margins"))]
        row += [set_cell(r["eval"], s) for s in sets]
        if any_contam:
            row.append(contam_cell(r["contamination"]))
        rows.append(row)
    md = [f"# Self-play run report: `{out_dir}`", "",
          "Per round: problems solved, sampled paths, % correct of labelled paths, DPO pairs made in "
          "the round, pairs trained on (the round's training set, which accumulates earlier rounds' pairs "
          "under the collapse guard, after dropping over-long / identical ones; see \"Training sets\"), "
          "DPO steps, final train loss, reward accuracy at the last logged step and averaged over the "
          "logged steps, final reward margin; held-out greedy pass@1 of the model trained in that round "
          "(`start` = the base model) with 95% Wilson intervals.", "", table(header, rows), ""]
    acc = [f"- round {r['k']}: {training_set_text(r['k'], r['train'])}" for r in run["rounds"]
           if (r["train"] or {}).get("trained") is not False and (r["train"] or {}).get("n_train") is not None]
    if acc:
        md += ["## Training sets", "", "What each round trained on: its own pairs plus, under the collapse guard "
               "(`guard.accumulate`), earlier rounds' pairs, so \"trained\" can exceed \"pairs\".", ""] + acc + [""]
    mode_rows = [[str(r["k"]), m, cell] for r in run["rounds"] for m, cell in mode_cells((r["stats"] or {}).get("by_mode"))]
    if mode_rows:
        md += ["## % correct by mode", "", "Chain-of-thought (cot) and program-of-thought (pot) samples, labelled "
               "by the verifier.", "", table(["round", "mode", "% correct"], mode_rows), ""]
    untrained = [f"- round {r['k']}: NOT TRAINED ({r['train'].get('reason')}); its eval and the next round "
                 f"use its starting model {r['train'].get('start_model')}"
                 for r in run["rounds"] if (r["train"] or {}).get("trained") is False]
    if untrained:
        md += ["## Rounds without training", ""] + untrained + [""]
    if sets:
        detail_rows = []
        for label, ev in [("start", run["start_eval"])] + [(f"r{r['k']}", r["eval"]) for r in run["rounds"]]:
            if not ev:
                continue
            for s in sets:
                d = (ev.get("sets") or {}).get(s)
                if d:
                    detail_rows.append([label, s, num(d.get("n")), set_cell(ev, s), num(d.get("k")),
                                        set_cell(ev, s, "maj@k"), set_cell(ev, s, "pass@k")])
        md += ["## Held-out detail", "", table(["model", "set", "n", "pass@1 (greedy)", "k", "maj@k", "pass@k"],
                                                 detail_rows), ""]
    md += gain_section(run, sets)
    posed = [(r["k"], (r["stats"] or {}).get("posed"), r["stats"] or {}) for r in run["rounds"]]
    posed = [(k, p, st) for k, p, st in posed if isinstance(p, dict) and p]
    if posed:
        md += ["## Posed problems", "", table(
            ["round", "attempted", "kept", "level", "posed share of pairs", "mean solve rate", "mean steps",
             "rejected"],
            [[str(k), num(p.get("attempted")), num(p.get("kept")), num(p.get("level")),
              share((st.get("pairs_by_origin") or {}).get("posed", 0), st.get("pairs")),
              num((st.get("posed_difficulty") or {}).get("mean_solve_rate")),
              num((st.get("posed_difficulty") or {}).get("mean_steps")),
              ", ".join(f"{a}: {b}" for a, b in (p.get("rejected") or {}).items()) or "-"] for k, p, st in posed]), ""]
    md += quality_sections(run)
    plots = [("heldout.png", "Held-out accuracy per round", plot_heldout),
             ("pass_rates.png", "Per-problem pass rates", plot_pass_rates),
             ("verdict_reasons.png", "Verdict reasons", plot_verdicts)]
    made = [(f, title) for f, title, fn in plots if fn(run, out_dir / f)]
    if made:
        md += ["## Plots", ""] + [f"![{title}]({f})\n" for f, title in made]
    if run["problems"]:
        md += ["## Files that could not be read", ""] + [f"- {p}" for p in run["problems"]] + [""]
    path = out_dir / "report.md"
    atomic_write_bytes(path, "\n".join(md).encode())
    return path
