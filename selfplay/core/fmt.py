"""Number formatting shared by the terminal summary, `selfplay status` and report.md: 3 significant
digits, percentages with their 95% interval, counts by name without Python's dict syntax."""
from __future__ import annotations

from typing import Any, Mapping

from selfplay.core.metrics import wilson_interval


def num(x: Any) -> str:
    """3 significant digits (1.27, 0.217, 3.11e-08); integers as they are; large floats without
    an exponent (12868.4 -> 12868); "-" for anything that is not a number."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return "-"
    if isinstance(x, int):
        return str(x)
    if x != x:  # nan
        return "-"
    if abs(x) >= 1000:
        return f"{x:.0f}"
    return f"{x:.3g}"


def pct(p: Any, ci: Any = None) -> str:
    """A fraction in [0, 1] as a percentage with one decimal, plus its interval when given:
    `49.0% [39.4, 58.7]` (the format of report.md)."""
    if isinstance(p, bool) or not isinstance(p, (int, float)):
        return "-"
    s = f"{100 * p:.1f}%"
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in ci):
        s += f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"
    return s


def pct_of(successes: int, n: int) -> str:
    """successes/n as a percentage with its 95% Wilson interval; "-" when n is 0."""
    if not n:
        return "-"
    return pct(successes / n, wilson_interval(successes, n))


def counts(d: Any, sep: str = ", ") -> str:
    """{"procedural": 32, "posed": 2} -> "32 procedural, 2 posed" (zero counts left out)."""
    if not isinstance(d, Mapping) or not d:
        return "none"
    parts = [f"{num(v)} {k}" for k, v in d.items() if not isinstance(v, Mapping) and v]
    return sep.join(parts) or "none"


def seconds(s: Any) -> str:
    """A duration: 42 s, 3 min 05 s, 1 h 02 min."""
    if isinstance(s, bool) or not isinstance(s, (int, float)) or s != s:
        return "-"
    s = max(0.0, float(s))
    if s < 60:
        return f"{s:.0f} s" if s >= 10 else f"{s:.1f} s"
    m, sec = divmod(int(round(s)), 60)
    if m < 60:
        return f"{m} min {sec:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"
