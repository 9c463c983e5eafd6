"""The PNG plots of report.md and report.html (matplotlib, Agg, no pyplot): held-out accuracy per
round (each set labelled in-distribution or out-of-distribution), per-problem pass rates, verdicts
(correct / incorrect / unknown) by reason. Each takes load_run's dict and returns False when the
run has nothing to plot."""
from __future__ import annotations

import io as _io
from collections import defaultdict
from pathlib import Path
from typing import Any

from selfplay.core.evalsets import SHORT
from selfplay.core.io import atomic_write_bytes
from selfplay.inspect.report_tables import eval_sets, kind_of


def _save(fig: Any, path: Path) -> None:
    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


def plot_heldout(run: dict[str, Any], path: Path) -> bool:
    """Held-out pass@1 per round (95% CI error bars), one line per eval set, its kind in the legend
    (ID: in-distribution, circles; OOD: out-of-distribution, triangles); maj@k dashed."""
    from matplotlib.figure import Figure

    names = eval_sets(run)
    points = [("start", run["start_eval"])] + [(f"r{r['k']}", r["eval"]) for r in run["rounds"]]
    if not names:
        return False
    fig = Figure(figsize=(7, 4.2))
    ax = fig.subplots()
    dodge = 0.06  # shift each set a little so error bars don't hide each other
    for i, name in enumerate(names):
        color = f"C{i % 10}"
        off = (i - (len(names) - 1) / 2) * dodge
        ood = kind_of(run, name) != "in-distribution"
        for metric, style in (("pass@1", "-^" if ood else "-o"), ("maj@k", "--s")):
            xs, ys, lo, hi = [], [], [], []
            for x, (_, ev) in enumerate(points):
                s = ((ev or {}).get("sets") or {}).get(name) or {}
                y, ci = s.get(metric), s.get(f"{metric}_ci")
                if isinstance(y, (int, float)):
                    xs.append(x + off)
                    ys.append(100 * y)
                    ok = isinstance(ci, (list, tuple)) and len(ci) == 2
                    # an interval recorded with a rounding error (1e-17 outside its value) draws as 0
                    lo.append(max(0.0, 100 * (y - ci[0])) if ok else 0.0)
                    hi.append(max(0.0, 100 * (ci[1] - y)) if ok else 0.0)
            if xs:
                label = f"{name} ({SHORT[kind_of(run, name)]}) {metric}" + (
                    f" (k={s.get('k')})" if metric == "maj@k" and s.get("k") else "")
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


LABELS = ("correct", "incorrect", "unknown")
_COLORS = {"correct": "#1a7f37", "incorrect": "#c0392b", "unknown": "#8a8a8a"}


def verdict_counts(r: dict[str, Any]) -> dict[tuple[str, str], int] | None:
    """(verdict, reason) -> paths of one round: from rollouts.jsonl (load_run's "verdicts"), else
    stats.json's reasons with the verdict unknown to the report ("?")."""
    if r.get("verdicts"):
        return {(lab, reason): n for lab, d in r["verdicts"].items() for reason, n in d.items()}
    reasons = (r["stats"] or {}).get("verdict_reasons")
    return {("?", str(a)): int(b) for a, b in reasons.items()} if isinstance(reasons, dict) else None


def plot_verdicts(run: dict[str, Any], path: Path) -> bool:
    """Paths per verdict (correct / incorrect / unknown) and reason, per round (grouped horizontal
    bars, coloured by verdict; rounds told apart by hatching)."""
    import numpy as np
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    rounds = [(r["k"], c) for r in run["rounds"] if (c := verdict_counts(r))]
    if not rounds:
        return False
    totals: dict[tuple[str, str], int] = defaultdict(int)
    for _, c in rounds:
        for key, n in c.items():
            totals[key] += n
    order = {lab: i for i, lab in enumerate(LABELS)}
    keys = sorted(totals, key=lambda x: (order.get(x[0], 3), -totals[x], x[1]))
    fig = Figure(figsize=(7, 1.2 + 0.45 * len(keys) * max(1, len(rounds)) ** 0.5))
    ax = fig.subplots()
    h = 0.8 / len(rounds)
    y = np.arange(len(keys))
    hatches = ["", "//", "..", "xx", "\\\\", "++"]
    for i, (k, c) in enumerate(rounds):
        ax.barh(y + i * h - 0.4 + h / 2, [c.get(key, 0) for key in keys], height=h, edgecolor="white",
                color=[_COLORS.get(lab, "#4a6fa5") for lab, _ in keys], hatch=hatches[i % len(hatches)])
    ax.set_yticks(y, [f"{lab}: {reason}" for lab, reason in keys])
    ax.invert_yaxis()
    ax.set_xlabel("sampled paths")
    ax.set_title("Verdicts (correct / incorrect / unknown) by reason")
    ax.grid(alpha=0.3, axis="x")
    handles = [Patch(facecolor="#bbbbbb", hatch=hatches[i % len(hatches)], label=f"round {k}")
               for i, (k, _) in enumerate(rounds)]
    handles += [Patch(facecolor=_COLORS[lab], label=lab) for lab in LABELS if any(key[0] == lab for key in keys)]
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    _save(fig, path)
    return True
