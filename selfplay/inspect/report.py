"""Run report: OUT/report.md with one row per round, plus PNG plots (matplotlib, Agg, no pyplot).

Reads, for K = 0, 1, ...: OUT/round_K/{stats.json, train_stats.json, eval.json, rollouts.jsonl,
contamination.json}, and the starting model's evaluation from OUT/eval_base.json (or
eval_start.json). Any file may be missing or unreadable: its cells show "-" and the report says
which files it could not read. round_K/eval.json evaluates the model trained in round K.
"""
from __future__ import annotations

import io as _io
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson

from selfplay.core.fmt import pct as fmt_pct
from selfplay.core.io import atomic_write_bytes
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
    """Fraction correct per problem_id among labelled rollouts (any label, unknown included),
    and the largest number of labelled rollouts of one problem (the k the rates are multiples of).
    Unreadable lines (a torn tail) are skipped."""
    n: dict[str, int] = defaultdict(int)
    c: dict[str, int] = defaultdict(int)
    with open(rollouts, "rb") as f:
        for line in f:
            try:
                r = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(r, dict) or r.get("label") is None:
                continue
            pid = str(r.get("problem_id"))
            n[pid] += 1
            c[pid] += r["label"] == "correct"
    return [c[p] / n[p] for p in n], max(n.values(), default=0)


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


def _eval_sets(run: dict[str, Any]) -> list[str]:
    names: list[str] = []
    for ev in [run["start_eval"]] + [r["eval"] for r in run["rounds"]]:
        for name in ((ev or {}).get("sets") or {}):
            if name not in names:
                names.append(name)
    return names


def _num(x: Any, fmt: str = "{:.3f}") -> str:
    if isinstance(x, bool) or x is None:
        return "-"
    return fmt.format(x) if isinstance(x, float) else str(x)


def _set_cell(ev: dict[str, Any] | None, name: str, metric: str = "pass@1") -> str:
    s = ((ev or {}).get("sets") or {}).get(name) or {}
    return fmt_pct(s.get(metric), s.get(f"{metric}_ci"))


def _share(part: int, whole: Any) -> str:
    return f"{100 * part / whole:.0f}% ({part}/{whole})" if whole else "-"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _contam_cell(c: dict[str, Any] | None) -> str:
    if not c:
        return "-"
    return "clean" if c.get("clean") else f"LEAK {c.get('text_leaks', 0)}+{c.get('id_leaks', 0)}"


def _save(fig: Any, path: Path) -> None:
    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


def plot_heldout(run: dict[str, Any], path: Path) -> bool:
    """Held-out pass@1 per round (95% CI error bars), one line per eval set; maj@k dashed."""
    from matplotlib.figure import Figure

    names = _eval_sets(run)
    points = [("start", run["start_eval"])] + [(f"r{r['k']}", r["eval"]) for r in run["rounds"]]
    if not names:
        return False
    fig = Figure(figsize=(7, 4.2))
    ax = fig.subplots()
    dodge = 0.06  # shift each set a little so error bars don't hide each other
    for i, name in enumerate(names):
        color = f"C{i % 10}"
        off = (i - (len(names) - 1) / 2) * dodge
        for metric, style in (("pass@1", "-o"), ("maj@k", "--s")):
            xs, ys, lo, hi = [], [], [], []
            for x, (_, ev) in enumerate(points):
                s = ((ev or {}).get("sets") or {}).get(name) or {}
                y, ci = s.get(metric), s.get(f"{metric}_ci")
                if isinstance(y, (int, float)):
                    xs.append(x + off)
                    ys.append(100 * y)
                    ok = isinstance(ci, (list, tuple)) and len(ci) == 2
                    lo.append(100 * (y - ci[0]) if ok else 0.0)
                    hi.append(100 * (ci[1] - y) if ok else 0.0)
            if xs:
                label = f"{name} {metric}" + (f" (k={s.get('k')})" if metric == "maj@k" and s.get("k") else "")
                ax.errorbar(xs, ys, yerr=[lo, hi] if metric == "pass@1" else None, fmt=style, color=color,
                            capsize=3, label=label, alpha=1.0 if metric == "pass@1" else 0.6)
    ax.set_xticks(range(len(points)), [p[0] for p in points])
    ax.set_xlabel("model (start = base; rK = after training round K)")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(bottom=0)
    ax.set_title("Held-out accuracy (greedy pass@1 with 95% Wilson CI)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    _save(fig, path)
    return True


def plot_pass_rates(run: dict[str, Any], path: Path) -> bool:
    """Histogram of per-problem pass rates (fraction of a problem's samples verified correct)."""
    import numpy as np
    from matplotlib.figure import Figure

    rounds = [r for r in run["rounds"] if r["pass_rates"]]
    if not rounds:
        return False
    k = max(r["k_samples"] for r in rounds) or 1
    # pass rates are multiples of 1/k: one bar group per possible value, one bar per round
    centers = np.arange(k + 1) / k
    width = 0.8 / k / len(rounds)
    fig = Figure(figsize=(7, 4.2))
    ax = fig.subplots()
    for i, r in enumerate(rounds):
        idx = np.clip(np.rint(np.asarray(r["pass_rates"]) * k).astype(int), 0, k)
        counts = np.bincount(idx, minlength=k + 1)
        ax.bar(centers - 0.4 / k + (i + 0.5) * width, counts, width=width, color=f"C{i % 10}",
               label=f"round {r['k']} ({len(r['pass_rates'])} problems)")
    ax.set_xticks(centers, [f"{j}/{k}" for j in range(k + 1)] if k <= 16 else [f"{c:.2f}" for c in centers])
    ax.set_xlabel("per-problem pass rate (correct / labelled samples)")
    ax.set_ylabel("problems")
    ax.set_title("Solve-rate distribution (0 and 1 give no pairs)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)
    return True


def plot_verdicts(run: dict[str, Any], path: Path) -> bool:
    """Verdict reasons per round (grouped horizontal bars)."""
    import numpy as np
    from matplotlib.figure import Figure

    rounds = [r for r in run["rounds"] if isinstance((r["stats"] or {}).get("verdict_reasons"), dict)]
    if not rounds:
        return False
    totals: dict[str, int] = defaultdict(int)
    for r in rounds:
        for reason, n in r["stats"]["verdict_reasons"].items():
            totals[str(reason)] += int(n)
    reasons = sorted(totals, key=lambda x: (-totals[x], x))
    fig = Figure(figsize=(7, 1.2 + 0.45 * len(reasons) * max(1, len(rounds)) ** 0.5))
    ax = fig.subplots()
    h = 0.8 / len(rounds)
    y = np.arange(len(reasons))
    for i, r in enumerate(rounds):
        vals = [int(r["stats"]["verdict_reasons"].get(reason, 0)) for reason in reasons]
        ax.barh(y + i * h - 0.4 + h / 2, vals, height=h, color=f"C{i % 10}", label=f"round {r['k']}")
    ax.set_yticks(y, reasons)
    ax.invert_yaxis()
    ax.set_xlabel("rollouts")
    ax.set_title("Verdict reasons")
    ax.grid(alpha=0.3, axis="x")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    _save(fig, path)
    return True


_DIVERSITY_KEYS = ("distinct_problems", "posed_similarity", "distinct_1", "distinct_2", "distinct_3",
                   "answer_entropy", "answer_entropy_global")


def _quality_sections(run: dict[str, Any]) -> list[str]:
    """Filter drop counts, diversity metrics and collapse-guard warnings, one row per round."""
    stats = [(r["k"], r["stats"] or {}) for r in run["rounds"]]
    md: list[str] = []
    frows = []
    for k, st in stats:
        for name, counts in (st.get("filters") or {}).items():
            if isinstance(counts, dict) and not name.endswith(("_info", "_precision")):
                dropped = ", ".join(f"{a}: {b}" for a, b in counts.items() if b) or "none"
                frows.append([str(k), name, dropped])
    if frows:
        md += ["## Filters (drops by reason)", "", _table(["round", "filter", "dropped"], frows), ""]
    prows = []
    for k, st in stats:
        f = st.get("filters") or {}
        prec, info = f.get("pseudo_label_precision") or {}, f.get("pseudo_label_info") or {}
        if prec.get("problems") or info.get("relabelled"):
            prows.append([str(k), _num(info.get("relabelled", 0)), _num(prec.get("problems")), _num(prec.get("agree")),
                          _num(prec.get("precision"))])
    if prows:
        md += ["## Pseudo-labels (majority vote)", "", "Problems without a gold labelled by the vote of their "
               "paths; the same vote on problems with a gold measures its precision (majority = gold).", "",
               _table(["round", "pseudo-labelled", "gold problems voted", "majority = gold", "precision"], prows), ""]
    drows = [[str(k)] + [_num((st.get("diversity") or {}).get(key)) for key in _DIVERSITY_KEYS]
             for k, st in stats if st.get("diversity")]
    if drows:
        md += ["## Diversity (collapse guard)", "", _table(["round", *_DIVERSITY_KEYS], drows), ""]
    warns = list(dict.fromkeys(f"- {w}" if w.startswith("round ") else f"- round {k}: {w}"
                               for k, st in stats for w in st.get("warnings") or []))  # older runs repeated them
    if warns:
        md += ["## Collapse warnings", ""] + warns + [""]
    return md


def gains(run: dict[str, Any], sets: list[str]) -> list[dict[str, Any]]:
    """Per round and held-out set: greedy pass@1 change against the starting model on the same
    problems (metrics.paired_gain: paired bootstrap interval, exact McNemar p)."""
    from selfplay.core.metrics import greedy_gain

    out = []
    start_sets = (run["start_eval"] or {}).get("sets") or {}
    for r in run["rounds"]:
        for name in sets:
            before, after = start_sets.get(name), ((r["eval"] or {}).get("sets") or {}).get(name)
            if before and after:
                g = greedy_gain(before, after)
                if g["n"]:
                    out.append({"round": r["k"], "set": name, **g})
    return out


def _gain_section(run: dict[str, Any], sets: list[str]) -> list[str]:
    from selfplay.core.metrics import gain_points

    rows = [[str(g["round"]), g["set"], str(g["n"]), *gain_points(g), f"{g['gained']}/{g['lost']}",
             f"{g['mcnemar_p']:.3g}"] for g in gains(run, sets)]
    if not rows:
        return []
    return ["## Held-out gain against the starting model (paired)", "",
            "Both models answer the same held-out problems, so the change is measured per problem: "
            "points of greedy pass@1 gained, a 95% bootstrap interval over problems, problems newly "
            "right / newly wrong, and the exact McNemar p-value (small = unlikely to be noise).", "",
            _table(["round", "set", "n", "gain (pts)", "95% CI", "newly right/wrong", "McNemar p"], rows), ""]


def write_report(out_dir: Path) -> Path:
    """Write OUT/report.md (+ heldout.png, pass_rates.png, verdict_reasons.png); returns its path."""
    out_dir = Path(out_dir)
    run = load_run(out_dir)
    if not run["rounds"] and not run["start_eval"]:
        raise ValueError(f"report: {out_dir} holds no run (no round_K/ and no eval_base.json)")
    sets = _eval_sets(run)
    header = ["round", "problems", "samples", "% correct [95% CI]", "pairs", "trained", "dropped long/ident.",
              "steps", "train loss", "reward acc last / mean", "reward margin"] + [f"{s} pass@1 [95% CI]" for s in sets]
    any_contam = any(r["contamination"] for r in run["rounds"])
    if any_contam:
        header.append("held-out leaks")
    rows = []
    if run["start_eval"]:
        rows.append(["start"] + ["-"] * 10 + [_set_cell(run["start_eval"], s) for s in sets]
                    + (["-"] if any_contam else []))
    for r in run["rounds"]:
        st, tr = r["stats"] or {}, r["train"] or {}
        pct = st.get("pct_correct")
        c, i = st.get("correct"), st.get("incorrect")
        if isinstance(c, int) and isinstance(i, int) and c + i:  # with its 95% Wilson interval
            from selfplay.core.fmt import pct_of

            pct_cell = pct_of(c, c + i)
        else:
            pct_cell = f"{pct:.1f}%" if isinstance(pct, (int, float)) else "-"
        row = [str(r["k"]), _num(st.get("problems")), _num(st.get("samples")), pct_cell, _num(st.get("pairs")),
               "NOT TRAINED" if tr.get("trained") is False else _num(tr.get("n_train")),
               f"{tr['n_dropped_too_long']}/{tr.get('n_dropped_identical', 0)}" if "n_dropped_too_long" in tr else "-",
               _num(tr.get("steps")), _num(tr.get("train_loss")),
               f"{_num(tr.get('rewards/accuracies'), '{:.2f}')} / {_num(tr.get('rewards/accuracies_mean'), '{:.2f}')}",
               _num(tr.get("rewards/margins"))]
        row += [_set_cell(r["eval"], s) for s in sets]
        if any_contam:
            row.append(_contam_cell(r["contamination"]))
        rows.append(row)
    md = [f"# Self-play run report: `{out_dir}`", "",
          "Per round: problems solved, sampled paths, % correct of labelled paths, DPO pairs made in "
          "the round, pairs trained on (the round's training set, which accumulates earlier rounds' pairs "
          "under the collapse guard, after dropping over-long / identical ones; see \"Training sets\"), "
          "DPO steps, final train loss, reward accuracy at the last logged step and averaged over the "
          "logged steps, final reward margin; held-out greedy pass@1 of the model trained in that round "
          "(`start` = the base model) with 95% Wilson intervals.", "", _table(header, rows), ""]
    acc = [f"- round {r['k']}: {training_set_text(r['k'], r['train'])}" for r in run["rounds"]
           if (r["train"] or {}).get("trained") is not False and (r["train"] or {}).get("n_train") is not None]
    if acc:
        md += ["## Training sets", "", "What each round trained on: its own pairs plus, under the collapse guard "
               "(`guard.accumulate`), earlier rounds' pairs, so \"trained\" can exceed \"pairs\".", ""] + acc + [""]
    mode_rows = [[str(r["k"]), m, cell] for r in run["rounds"] for m, cell in mode_cells((r["stats"] or {}).get("by_mode"))]
    if mode_rows:
        md += ["## % correct by mode", "", "Chain-of-thought (cot) and program-of-thought (pot) samples, labelled "
               "by the verifier.", "", _table(["round", "mode", "% correct"], mode_rows), ""]
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
                    detail_rows.append([label, s, _num(d.get("n")), _set_cell(ev, s), _num(d.get("k")),
                                        _set_cell(ev, s, "maj@k"), _set_cell(ev, s, "pass@k")])
        md += ["## Held-out detail", "", _table(["model", "set", "n", "pass@1 (greedy)", "k", "maj@k", "pass@k"],
                                                 detail_rows), ""]
    md += _gain_section(run, sets)
    posed = [(r["k"], (r["stats"] or {}).get("posed"), r["stats"] or {}) for r in run["rounds"]]
    posed = [(k, p, st) for k, p, st in posed if isinstance(p, dict) and p]
    if posed:
        md += ["## Posed problems", "", _table(
            ["round", "attempted", "kept", "level", "posed share of pairs", "mean solve rate", "mean steps",
             "rejected"],
            [[str(k), _num(p.get("attempted")), _num(p.get("kept")), _num(p.get("level")),
              _share((st.get("pairs_by_origin") or {}).get("posed", 0), st.get("pairs")),
              _num((st.get("posed_difficulty") or {}).get("mean_solve_rate")),
              _num((st.get("posed_difficulty") or {}).get("mean_steps")),
              ", ".join(f"{a}: {b}" for a, b in (p.get("rejected") or {}).items()) or "-"] for k, p, st in posed]), ""]
    md += _quality_sections(run)
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
