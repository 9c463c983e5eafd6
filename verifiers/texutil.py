"""Small text helpers shared by extraction and normalization (pure Python, linear time)."""
from __future__ import annotations

import re

__all__ = ["MATH_WORDS", "match_braces", "strip_text_wrappers"]

# Words that are mathematics, not units or prose; kept by the unit stripper and the bare test.
MATH_WORDS = frozenset({"pi", "sqrt", "sin", "cos", "tan", "cot", "sec", "csc", "log", "ln",
                        "exp", "inf", "infty", "infinity", "oo", "frac", "dfrac", "tfrac",
                        "cdot", "times", "div", "pm", "mp", "le", "ge", "leq", "geq", "lt",
                        "gt", "ne", "neq", "in", "cup", "cap", "arcsin", "arccos", "arctan",
                        "circ", "emptyset", "varnothing", "left", "right", "theta", "alpha",
                        "beta", "gamma", "mathbb", "binom", "choose", "sum", "prod", "begin",
                        "end", "pmatrix", "bmatrix", "matrix", "array", "approx", "quad"})

_TEXT_CMD_RE = re.compile(r"\\(?:text|textbf|textit|textrm|textnormal|mathrm|mathbf|mbox|"
                          r"operatorname)\s*\{")


def match_braces(s: str, open_at: int) -> int:
    """Index of the ``}`` closing the ``{`` at ``open_at``, or -1. Skips ``\\{`` and ``\\}``."""
    depth = 0
    i, n = open_at, len(s)
    while i < n:
        c = s[i]
        if c == "\\":
            i += 2  # an escaped character never opens or closes a group
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def strip_text_wrappers(s: str) -> str:
    """Replace ``\\text{...}``-like groups by their content (brace matched)."""
    out = []
    pos = 0
    for _ in range(1000):  # bounded: each pass consumes one wrapper
        m = _TEXT_CMD_RE.search(s, pos)
        if not m:
            break
        end = match_braces(s, m.end() - 1)
        if end < 0:
            break
        out.append(s[pos:m.start()])
        out.append(" " + s[m.end():end] + " ")
        pos = end + 1
    out.append(s[pos:])
    return "".join(out)


