"""Run report: OUT/report.md with one row per round, PNG plots (matplotlib, Agg, no pyplot), and
OUT/report.html, the same sections as one self-contained page with the pair, posed-problem and
dropped-path browsers (selfplay.inspect.report_html).

Reads, for K = 0, 1, ...: OUT/round_K/{stats.json, train_stats.json, eval.json, rollouts.jsonl,
contamination.json}, and the starting model's evaluation from OUT/eval_base.json (or
eval_start.json). Any file may be missing or unreadable: its cells show "-" and the report says
which files it could not read. round_K/eval.json evaluates the model trained in round K. Both
pages render one list of Sections (report_tables.Section), so they show the same numbers.
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
from selfplay.inspect.report_html import collect, write_html
from selfplay.inspect.report_tables import (
    Section,
    contam_cell,
    eval_header,
    eval_sets,
    gain_section,
    glossary_section,
    headline,
    heldout_detail,
    num,
    quality_sections,
    set_cell,
    share,
)
from selfplay.run.summary import mode_cells, training_set_text

START_EVAL_NAMES = ("eval_base.json", "eval_start.json")
PLOTS = (("heldout.png", "Held-out accuracy per round", plot_heldout),
         ("pass_rates.png", "Per-problem pass rates", plot_pass_rates),
         ("verdict_reasons.png", "Verdicts and their reasons", plot_verdicts))


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


def rollout_summary(rollouts: Path) -> tuple[list[float], int, dict[str, dict[str, int]]]:
    """Pass rate per problem_id (selfplay.core.metrics.pass_rate: correct / (correct + incorrect);
    a problem with no such verdict has none), the largest number of labelled rollouts of one
    problem (the k the rates are multiples of), and the verdicts: label -> reason -> count.
    Unreadable lines (a torn tail) are skipped."""
    labels: dict[str, list[str]] = defaultdict(list)
    verdicts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    with open(rollouts, "rb") as f:
        for line in f:
            try:
                r = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(r, dict) and r.get("label") is not None:
                labels[str(r.get("problem_id"))].append(r["label"])
                verdicts[str(r["label"])][str(r.get("reason"))] += 1
    rates = [pass_rate(ls) for ls in labels.values()]
    return ([x for x in rates if x is not None], max((pass_counts(ls)[1] for ls in labels.values()), default=0),
            {lab: dict(v) for lab, v in verdicts.items()})


def pass_rates(rollouts: Path) -> tuple[list[float], int]:
    """rollout_summary's pass rates and k."""
    rates, k, _ = rollout_summary(rollouts)
    return rates, k


def _start_eval(out_dir: Path, problems: list[str]) -> dict[str, Any] | None:
    for name in START_EVAL_NAMES:
        for base in (out_dir, out_dir / "round_0"):
            start = _read_json(base / name, problems)
            if start is not None:
                return start
    return None


def _round_dirs(out_dir: Path) -> list[tuple[int, Path]]:
    return sorted((int(m.group(1)), d) for d in out_dir.iterdir()
                  if d.is_dir() and (m := re.fullmatch(r"round_(\d+)", d.name)))


def load_evals(out_dir: Path, rounds: list[int] | None = None) -> dict[str, Any]:
    """Only the evaluations of a run (of `rounds`, default all), shaped as load_run's dict for
    the report's held-out sections (the dataset card shows them)."""
    problems: list[str] = []
    out_dir = Path(out_dir)
    return {"out": out_dir, "start_eval": _start_eval(out_dir, problems), "problems": problems,
            "rounds": [{"k": k, "eval": _read_json(d / "eval.json", problems)} for k, d in _round_dirs(out_dir)
                       if rounds is None or k in rounds]}


def load_run(out_dir: Path) -> dict[str, Any]:
    out_dir = Path(out_dir)
    problems: list[str] = []
    start = _start_eval(out_dir, problems)
    rounds = []
    for k, d in _round_dirs(out_dir):
        r: dict[str, Any] = {"k": k, "dir": d}
        for key, fname in (("stats", "stats.json"), ("train", "train_stats.json"), ("eval", "eval.json"),
                           ("contamination", "contamination.json"), ("pose", "pose.json")):
            r[key] = _read_json(d / fname, problems)
        r["pass_rates"], r["k_samples"], r["verdicts"] = None, 0, None
        if (d / "rollouts.jsonl").exists():
            try:
                r["pass_rates"], r["k_samples"], r["verdicts"] = rollout_summary(d / "rollouts.jsonl")
            except OSError as e:
                problems.append(f"{d / 'rollouts.jsonl'}: {e}")
        rounds.append(r)
    return {"out": out_dir, "start_eval": start, "rounds": rounds, "problems": problems,
            "config": _read_json(out_dir / "config.json", problems)}


def round_rows(run: dict[str, Any], sets: list[str]) -> tuple[list[str], list[list[str]]]:
    header = ["round", "problems", "samples", "% correct [95% CI]", "pairs", "trained", "dropped long/ident.",
              "steps", "train loss", "reward acc last / mean", "reward margin"] + eval_header(run, sets)
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
    return header, rows


def verdict_section(run: dict[str, Any]) -> list[Section]:
    rows = []
    for r in run["rounds"]:
        st, v = r["stats"] or {}, r["verdicts"]
        if v:
            counts = {lab: sum(v.get(lab, {}).values()) for lab in ("correct", "incorrect", "unknown")}
            why = "; ".join(f"{lab}: " + ", ".join(f"{a} {b}" for a, b in sorted(v[lab].items(), key=lambda x: -x[1]))
                            for lab in ("correct", "incorrect", "unknown") if v.get(lab))
        elif isinstance(st.get("verdict_reasons"), dict):
            counts = {lab: st.get(lab) for lab in ("correct", "incorrect", "unknown")}
            why = "reasons (labels not recorded): " + ", ".join(f"{a} {b}" for a, b in st["verdict_reasons"].items())
        else:
            continue
        rows.append([str(r["k"]), num(counts["correct"]), num(counts["incorrect"]), num(counts["unknown"]), why])
    if not rows:
        return []
    return [Section("verdicts", "Verdicts", [
        "The verifier labels each sampled path's final answer **correct**, **incorrect** or **unknown** (no answer "
        "could be compared safely: never paired), with a reason (explained under \"Reasons\")."],
        ["round", "correct", "incorrect", "unknown", "reasons by verdict"], rows)]


LEVELS = ("`level` is the posing curriculum's level (`pose.curriculum`; the prompt's ask, "
          "`selfplay.prompts.level_hint`): **0 = as the examples**, 1 = use larger numbers, 2 and up = larger "
          "numbers and one more step per level. Round 0 poses at level 0; a round goes up one when the previous "
          "round's posed problems were solved above `filters.band_high` on average, down one below "
          "`filters.band_low` (`level reason`). Seed problems have their own levels, **1 and up** "
          "(`seeds.levels`: the procedural generators' difficulty: 1 = numbers up to 9, 2 up to 20, 3 up to 50, "
          "4 up to 100): the two scales are not the same.")


def posed_section(run: dict[str, Any]) -> list[Section]:
    posed = [(r["k"], (r["stats"] or {}).get("posed") or r["pose"], r["stats"] or {}) for r in run["rounds"]]
    posed = [(k, p, st) for k, p, st in posed if isinstance(p, dict) and p.get("attempted")]
    if not posed:
        if not run["rounds"]:
            return []
        return [Section("posed", "Posed problems", ["No problem was posed in this run (`pose.enabled` false or "
                                                    "`pose.attempts` 0): every problem is a seed."])]
    return [Section("posed", "Posed problems", [LEVELS], [
        "round", "attempted", "kept", "level", "level reason", "posed share of pairs", "mean solve rate", "mean steps",
        "rejected"],
        [[str(k), num(p.get("attempted")), num(p.get("kept")), num(p.get("level")), str(p.get("level_reason") or "-"),
          share((st.get("pairs_by_origin") or {}).get("posed", 0), st.get("pairs")),
          num((st.get("posed_difficulty") or {}).get("mean_solve_rate")),
          num((st.get("posed_difficulty") or {}).get("mean_steps")),
          ", ".join(f"{a}: {b}" for a, b in (p.get("rejected") or {}).items()) or "-"] for k, p, st in posed])]


def build_sections(run: dict[str, Any]) -> list[Section]:
    """Every section of the report, in order, from load_run's dict (plots aside)."""
    sets = eval_sets(run)
    header, rows = round_rows(run, sets)
    out = [Section("headline", "", [headline(run, sets)]),
           Section("rounds", "Per round", [
               "Per round: problems solved, sampled paths, % correct of labelled paths, DPO pairs made in "
               "the round, pairs trained on (the round's training set, which accumulates earlier rounds' pairs "
               "under the collapse guard, after dropping over-long / identical ones; see \"Training sets\"), "
               "DPO steps, final train loss, reward accuracy at the last logged step and averaged over the "
               "logged steps, final reward margin; held-out greedy pass@1 of the model trained in that round "
               "(`start` = the base model) with 95% Wilson intervals, per eval set, labelled ID "
               "(in-distribution) or OOD (out-of-distribution)."] + (
               [] if sets else ["No held-out evaluation in this run: the model columns are absent."]), header, rows)]
    acc = [f"round {r['k']}: {training_set_text(r['k'], r['train'])}" for r in run["rounds"]
           if (r["train"] or {}).get("trained") is not False and (r["train"] or {}).get("n_train") is not None]
    if acc:
        out.append(Section("training", "Training sets", [
            "What each round trained on: its own pairs plus, under the collapse guard (`guard.accumulate`), earlier "
            "rounds' pairs, so \"trained\" can exceed \"pairs\"."], bullets=acc))
    mode_rows = [[str(r["k"]), m, cell] for r in run["rounds"]
                 for m, cell in mode_cells((r["stats"] or {}).get("by_mode"))]
    if mode_rows:
        out.append(Section("modes", "% correct by mode", ["Chain-of-thought (cot) and program-of-thought (pot) "
                                                          "samples, labelled by the verifier."],
                           ["round", "mode", "% correct"], mode_rows))
    out += verdict_section(run)
    untrained = [f"round {r['k']}: NOT TRAINED ({r['train'].get('reason')}); its eval and the next round "
                 f"use its starting model {r['train'].get('start_model')}"
                 for r in run["rounds"] if (r["train"] or {}).get("trained") is False]
    if untrained:
        out.append(Section("untrained", "Rounds without training", bullets=untrained))
    out += heldout_detail(run, sets)
    out += gain_section(run, sets)
    out += posed_section(run)
    out += quality_sections(run)
    out += glossary_section(run)
    return out


def write_report(out_dir: Path) -> Path:
    """Write OUT/report.md (+ heldout.png, pass_rates.png, verdict_reasons.png) and OUT/report.html;
    returns report.md's path."""
    out_dir = Path(out_dir)
    run = load_run(out_dir)
    if not run["rounds"] and not run["start_eval"]:
        raise ValueError(f"report: {out_dir} holds no run (no round_K/ and no eval_base.json)")
    sections = build_sections(run)
    data, drops = collect(run)  # the browsers' data; files it cannot read join run["problems"]
    md = [f"# Self-play run report: `{out_dir}`", ""]
    for s in sections:
        md += s.md()
    made = [(f, title) for f, title, fn in PLOTS if fn(run, out_dir / f)]
    if made:
        md += ["## Plots", ""] + [f"![{title}]({f})\n" for f, title in made]
    if run["problems"]:
        md += ["## Files that could not be read", ""] + [f"- {p}" for p in run["problems"]] + [""]
    path = out_dir / "report.md"
    atomic_write_bytes(path, "\n".join(md).encode())
    write_html(out_dir, run, sections, made, data, drops)
    return path
