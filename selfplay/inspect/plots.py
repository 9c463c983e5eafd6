"""The PNG plots of report.md (matplotlib, Agg, no pyplot): held-out accuracy per round,
per-problem pass rates, verdict reasons. Each takes load_run's dict and returns False when the
run has nothing to plot."""
from __future__ import annotations

import io as _io
from collections import defaultdict
from pathlib import Path
from typing import Any

from selfplay.core.io import atomic_write_bytes
from selfplay.inspect.report_tables import eval_sets


def _save(fig: Any, path: Path) -> None:
    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


def plot_heldout(run: dict[str, Any], path: Path) -> bool:
    """Held-out pass@1 per round (95% CI error bars), one line per eval set; maj@k dashed."""
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
