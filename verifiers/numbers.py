"""Exact numbers without sympy: the fast path, plus the size screen that runs before sympy.

Numeric policy (also in docs/verifiers.md):

- Integers, fractions (``3/4``, ``\\frac{3}{4}``, ``-\\frac{1}{2}``, ``\\frac{-1}{2}``), mixed
  numbers (``2 1/2``, ``2\\frac{1}{2}``) and decimals are read exactly as ``fractions.Fraction``.
- The gold is taken at face value (exact). A prediction written as an integer or a fraction must
  equal it exactly.
- A prediction written as a decimal with ``d`` digits after the point is correct when it is
  exactly equal, or when it is the gold correctly rounded to those ``d`` digits
  (``|gold - pred| <= 0.5 * 10**-d``) *and* states at least ``MIN_SIG_DIGITS`` (4) significant
  digits. So for gold 1/3: ``0.333`` is incorrect (3 digits), ``0.3333`` and ``0.3333333`` are
  correct, ``0.3334`` is not (wrong rounding); for 2/3 ``0.6667`` is correct, the truncated
  ``0.6666`` is not. For gold 18, ``18.0`` is correct (exact), ``18.0001`` is not.
- No percent leniency: "50%" is normalized to 50 and matches 50 only, never 0.5.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

__all__ = ["Num", "parse_number", "numbers_match", "screen", "MIN_SIG_DIGITS", "MAX_CHARS",
           "MAX_DIGITS", "MAX_EXPONENT", "MAX_FACTORIAL", "MAX_DEPTH"]

MIN_SIG_DIGITS = 4
MAX_CHARS = 1000        # an answer longer than this is not an answer
MAX_DIGITS = 400        # longest integer literal handed to anything
MAX_EXPONENT = 10_000   # largest literal allowed inside an exponent
MAX_FACTORIAL = 1000    # n! only for literal n <= this
MAX_DEPTH = 24          # bracket nesting; deeper input can blow the parser's recursion

_INT_RE = re.compile(r"[+-]?\d+")
_DEC_RE = re.compile(r"[+-]?(?:\d+\.\d*|\.\d+)")
_SLASH_RE = re.compile(r"([+-]?)([+-]?\d+)/([+-]?\d+)")
_FRAC_RE = re.compile(r"([+-]?)\\frac\{([+-]?\d+)\}\{([+-]?\d+)\}")
_MIXED_RE = re.compile(r"([+-]?)(\d+)\s*(?:(?<=\s)(\d+)/(\d+)|\\frac\{(\d+)\}\{(\d+)\})")
_DIGIT_SPACE_RE = re.compile(r"\d\s+\d")
_INF_RE = re.compile(r"([+-]?)(?:\\infty|infty|inf|infinity|oo)")


@dataclass(frozen=True)
class Num:
    """An exact number. ``decimals`` is set when it was written as a decimal (digits after the
    point); ``sig`` is then its count of significant digits. ``inf`` is -1, 0 or +1."""

    value: Fraction
    decimals: int | None = None
    sig: int = 0
    inf: int = 0


def _sig_digits(text: str) -> int:
    digits = re.sub(r"\D", "", text).lstrip("0")
    return len(digits)


def parse_number(s: str) -> Num | None:
    """Read an integer, decimal, fraction or +-infinity written plainly; None for anything else.

    ``s`` should be normalized (``normalize_answer``) and screened (``screen``) first.
    """
    m = _MIXED_RE.fullmatch(s.strip())
    if m:  # "2 1/2" and "2\frac{1}{2}" are mixed numbers (as latex2sympy reads the latter)
        whole, num, den = int(m.group(2)), int(m.group(3) or m.group(5)), int(m.group(4) or m.group(6))
        if den == 0:
            return None
        v = whole + Fraction(num, den)
        return Num(-v if m.group(1) == "-" else v)
    if _DIGIT_SPACE_RE.search(s):
        return None  # "1 000" or "2 3": not one number; never glue the digits together
    t = s.replace(" ", "")
    if not t or len(t) > MAX_DIGITS + 8:
        return None
    if _INT_RE.fullmatch(t):
        return Num(Fraction(int(t)))
    if _DEC_RE.fullmatch(t):
        frac = t.split(".", 1)[1]
        return Num(Fraction(t), decimals=len(frac), sig=_sig_digits(t))
    m = _FRAC_RE.fullmatch(t) or _SLASH_RE.fullmatch(t)
    if m:
        num, den = int(m.group(2)), int(m.group(3))
        if den == 0:
            return None  # 1/0 is not a number; let the caller call it a parse error
        v = Fraction(num, den)
        return Num(-v if m.group(1) == "-" else v)
    m = _INF_RE.fullmatch(t)
    if m:
        return Num(Fraction(0), inf=-1 if m.group(1) == "-" else 1)
    return None


def numbers_match(gold: Num, pred: Num) -> bool:
    """The numeric policy of this module's docstring."""
    if gold.inf or pred.inf:
        return gold.inf == pred.inf
    if gold.value == pred.value:
        return True
    if pred.decimals is None or pred.sig < MIN_SIG_DIGITS:
        return False
    return abs(gold.value - pred.value) * 2 * 10 ** pred.decimals <= 1


# ---------------------------------------------------------------- size screen (before sympy)

_BIG_INT_RE = re.compile(r"\d{%d,}" % (MAX_DIGITS + 1))
_SCI_RE = re.compile(r"\d[eE]([+-]?\d+)")
_FACT_RE = re.compile(r"!")
_HEAVY_CMD_RE = re.compile(r"\\(?:binom|dbinom|tbinom|choose|Gamma)|factorial|gamma\(")


def _operand_before(s: str, i: int) -> str:
    """The operand ending just before index ``i`` (for ``n!``): digits, a group or a letter."""
    j = i - 1
    while j >= 0 and s[j] == " ":
        j -= 1
    if j < 0:
        return ""
    if s[j] in ")}]":
        depth, k = 0, j
        while k >= 0:
            if s[k] in ")}]":
                depth += 1
            elif s[k] in "({[":
                depth -= 1
                if depth == 0:
                    return s[k + 1:j]
            k -= 1
        return s[:j]
    k = j
    while k >= 0 and (s[k].isalnum() or s[k] == "."):
        k -= 1
    return s[k + 1:j + 1]


def _exponent_after(s: str, i: int) -> tuple[str, int]:
    """The exponent operand starting at index ``i`` (just after ``^`` or ``**``)."""
    n = len(s)
    while i < n and s[i] == " ":
        i += 1
    if i >= n:
        return "", i
    if s[i] in "{(":
        depth, k = 0, i
        while k < n:
            if s[k] in "{(":
                depth += 1
            elif s[k] in "})":
                depth -= 1
                if depth == 0:
                    return s[i + 1:k], k + 1
            k += 1
        return s[i + 1:], n  # unclosed: everything after counts as exponent
    m = re.match(r"[+-]?\d+|\\[a-zA-Z]+|.", s[i:])
    return m.group(0), i + len(m.group(0))


def _int_literals(s: str) -> list[int]:
    return [int(x) for x in re.findall(r"\d+", s) if len(x) <= MAX_DIGITS]


def screen(s: str) -> str | None:
    """``"too_large"`` if ``s`` could make sympy or gmpy2 run away (checked before parsing).

    Rejected: answers over ``MAX_CHARS`` characters, integer literals over ``MAX_DIGITS``
    digits, bracket nesting over ``MAX_DEPTH``, power towers (an exponent that itself contains
    ``^``/``**``/``!``, or ``a^b^c``), exponent literals over ``MAX_EXPONENT`` (also ``1e99999``),
    factorials of anything but a literal <= ``MAX_FACTORIAL``, binomials/Gamma with literals
    over ``MAX_EXPONENT``. Sums and products are bounded through their ``^{upper}`` exponent.
    A false positive (``e^{-x^2}``) costs an unknown verdict; a false negative costs at most the
    worker's time budget, so the screen errs on the strict side.
    """
    if len(s) > MAX_CHARS or _BIG_INT_RE.search(s):
        return "too_large"
    depth = 0
    for c in s:
        if c in "({[":
            depth += 1
            if depth > MAX_DEPTH:
                return "too_large"
        elif c in ")}]":
            depth -= 1
    for m in _SCI_RE.finditer(s):
        if abs(int(m.group(1))) > MAX_EXPONENT:
            return "too_large"
    if "!" in s:
        for m in _FACT_RE.finditer(s):
            if m.end() < len(s) and s[m.end()] == "=":
                continue  # "!=" is an operator, not a factorial
            op = _operand_before(s, m.start()).strip()
            if not op.isdigit() or int(op) > MAX_FACTORIAL:
                return "too_large"
    if _HEAVY_CMD_RE.search(s) and any(v > MAX_EXPONENT for v in _int_literals(s)):
        return "too_large"
    t = s.replace("**", "^")
    i = t.find("^")
    while i >= 0:
        exp, end = _exponent_after(t, i + 1)
        if "^" in exp or "!" in exp:
            return "too_large"
        if any(v > MAX_EXPONENT for v in _int_literals(exp)):
            return "too_large"
        rest = t[end:].lstrip(" ")
        if rest.startswith("^"):
            return "too_large"  # a^b^c: a tower however it is grouped
        i = t.find("^", end)
    return None
