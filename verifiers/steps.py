"""Step checker: find the arithmetic statements a completion makes and judge each one exactly.
Pure Python (fractions), linear-time scanning, bounded work, never raises.
Over 350 lines on purpose: reading a statement is one ordered pipeline (rewrite the text,
tokenize, cut runs, parse each side, judge each relation), read top to bottom.

A *statement* is a relation between two arithmetic sides: ``2 + 6 = 8``, a chain
``25 + 18 = 43 = 40 + 3`` (each adjacent relation is one statement), a word form ``3 plus 4 is 7``
/ ``6 times 3 equals 18``, or a continuation ``3 + 7 = 10, which is 3``. Sides are numbers
(``1,000``, ``2.5``, ``$5``, ``50%``), ``+ - * / ^ x × ÷ \\times \\cdot \\div \\frac{}{}``,
parentheses and the words plus / minus / times / multiplied by / divided by, with an optional unit
word after a number (``2.5 liters + 4 liters = 6.5 liters``). Each statement gets a verdict:

- ``true``: the sides are exactly equal, or one side is a decimal the other rounds to at the
  places shown (``10 / 3 = 3.33``: reason ``rounded``).
- ``false``: they differ (``2 + 6 = 7``).
- ``unknown`` (never a guess): the statement cannot be read for sure. Reasons: ``unreadable``
  (a side does not parse), ``partial`` (a word before or after changes what a side means:
  ``twice 3 + 4``, ``= 5 more than``, ``3 dozen``), ``units`` (two different units in one
  statement: ``2 hours + 30 minutes = 150 minutes``), ``percent`` (``0.5 = 50%`` is true or
  false depending on how the ``%`` is read), ``truncated`` (a decimal one unit of its last place
  off, as when a writer cuts digits instead of rounding), ``too_large``.

Not statements (skipped): a relation with an empty side (``x = 5``, ``The answer is 3 + 7``, a
question ``What is 3 + 7?``), and two bare numbers related outside any computation
(``Step 1 = 7``). Policy and examples: docs/verifiers.md, "Step checker".
"""
from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Any, Iterator

from .texutil import match_braces

__all__ = ["Step", "StepReport", "check_steps", "is_unevaluated", "is_value", "stated_value", "TRUE", "FALSE",
           "UNKNOWN_STEP"]

TRUE, FALSE, UNKNOWN_STEP = "true", "false", "unknown"
MAX_CHARS = 20_000  # text checked per completion; the rest is reported as truncated
MAX_STATEMENTS = 256
MAX_DIGITS = 40  # a number longer than this is too_large
MAX_EXPONENT = 64
MAX_NESTING = 40  # parentheses, minus signs and powers nested in one side
MAX_SIDE_TOKENS = 400


@dataclass(frozen=True)
class Step:
    """One judged statement: [start, end) in the original text, its text, the verdict
    (true | false | unknown), why, and the exact values of its two sides (as strings)."""

    start: int
    end: int
    text: str
    verdict: str
    reason: str
    left: str | None = None
    right: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class StepReport:
    steps: tuple[Step, ...] = ()
    truncated: bool = False  # the text was longer than MAX_CHARS, or had over MAX_STATEMENTS
    seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def first_false(self) -> Step | None:
        return next((s for s in self.steps if s.verdict == FALSE), None)

    def to_dict(self) -> dict[str, Any]:
        return {"steps": [s.to_dict() for s in self.steps], "truncated": self.truncated,
                "seconds": self.seconds, "counts": self.counts}


# ---------------------------------------------------------------- 1. rewrite (with an index map)

_WRAPPERS = ("\\boxed", "\\fbox", "\\text", "\\textbf", "\\textit", "\\textrm", "\\mathrm", "\\mathbf",
             "\\mbox", "\\operatorname")
_FRACS = ("\\frac", "\\dfrac", "\\tfrac")
_COMMANDS = {"\\times": "*", "\\cdot": "*", "\\ast": "*", "\\div": "/", "\\approx": "≈", "\\%": "%",
             "\\left": "", "\\right": "", "\\,": " ", "\\;": " ", "\\!": "", "\\quad": " ",
             "\\qquad": " ", "\\(": " ", "\\)": " ", "\\[": " ", "\\]": " ", "\\$": " ", "\\ ": " "}
_CHARS = {"$": " ", "×": "*", "·": "*", "⋅": "*", "∙": "*", "÷": "/", "−": "-", "{": " ", "}": " ",
          "≈": "≈", "\u00a0": " "}
_CMD_RE = re.compile(r"\\(?:[a-zA-Z]+|.)")


def _rewrite(text: str, lo: int, hi: int, out: list[str], pos: list[int], depth: int = 0) -> None:
    """Append text[lo:hi] rewritten to plain arithmetic to `out`, with each output char's
    source index in `pos`: LaTeX operators become + - * /, \\frac{a}{b} becomes ((a)/(b)),
    \\boxed{x} / \\text{x} become their content, $ and braces become spaces."""
    def emit(s: str, at: int) -> None:
        out.extend(s)
        pos.extend([at] * len(s))

    i = lo
    while i < hi:
        c = text[i]
        if c == "\\":
            m = _CMD_RE.match(text, i, hi)
            cmd = m.group(0) if m else "\\"
            j = i + len(cmd)
            k = j
            while k < hi and text[k] == " ":
                k += 1
            if cmd in _FRACS and depth < 8 and k < hi and text[k] == "{":
                a_end = match_braces(text, k)
                b_start = a_end + 1 if 0 <= a_end < hi else -1
                if 0 <= b_start < hi and text[b_start] == "{":
                    b_end = match_braces(text, b_start)
                    if 0 <= b_end < hi:
                        emit("((", i)
                        _rewrite(text, k + 1, a_end, out, pos, depth + 1)
                        emit(")/(", a_end)
                        _rewrite(text, b_start + 1, b_end, out, pos, depth + 1)
                        emit("))", b_end)
                        i = b_end + 1
                        continue
            if cmd in _WRAPPERS and depth < 8 and k < hi and text[k] == "{":
                end = match_braces(text, k)
                if 0 <= end < hi:
                    emit(" ", i)
                    _rewrite(text, k + 1, end, out, pos, depth + 1)
                    emit(" ", end)
                    i = end + 1
                    continue
            emit(_COMMANDS.get(cmd, cmd if cmd[1:].isalpha() else " "), i)
            i = j
            continue
        if c == "*" and i + 1 < hi and text[i + 1] == "*":  # **bold** vs 2**3
            power = i > lo and text[i - 1].isdigit() and i + 2 < hi and text[i + 2].isdigit()
            emit("^" if power else "  ", i)
            i += 2
            continue
        if c == "–" and i > lo and text[i - 1] == " " and i + 1 < hi and text[i + 1] == " ":
            emit("-", i)  # "5/5 – 1/5": a spaced en dash is a minus sign (unspaced, "3–5" is a range)
            i += 1
            continue
        emit(_CHARS.get(c, c), i)
        i += 1


# ---------------------------------------------------------------- 2. tokens

NUM, OP, LP, RP, REL, WORD, PUNCT, GLUED = "num", "op", "lp", "rp", "rel", "word", "punct", "glued"

_TOKEN_RE = re.compile(
    r"(?P<which>,?[ \t]*\bwhich[ \t]+(?:is|equals|gives|makes)(?:[ \t]+equal[ \t]+to)?\b)"
    r"|(?P<num>(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)(?P<pct>[ \t]*(?:%|percent\b))?"
    r"|(?P<rel>=+|≈|\bis[ \t]+equal[ \t]+to\b|\bis[ \t]+equivalent[ \t]+to\b|\bequal[ \t]+to\b|\bequals\b|\bis[ \t]+approximately\b|"
    r"\bis\b|\bmakes\b|\bgives\b)"
    r"|(?P<wop>\bplus\b|\bminus\b|\btimes\b|\bmultiplied[ \t]+by\b|\bdivided[ \t]+by\b)"
    r"|(?P<op>[-+*/^])|(?P<lp>\()|(?P<rp>\))"
    r"|(?P<word>[A-Za-z]+(?:'[a-z]+)?)|(?P<nl>\n)|(?P<space>[ \t\r]+)|(?P<punct>.)", re.DOTALL)
_WORD_OPS = {"plus": "+", "minus": "-", "times": "*", "multiplied": "*", "divided": "/"}


@dataclass
class _Tok:
    kind: str
    text: str  # the operator, relation or word (lowercased); a number's digits
    start: int  # in the rewritten string
    end: int
    value: Fraction | None = None
    pct: bool = False
    approx: bool = False  # a relation: ≈, "is approximately"
    weak: bool = False  # a relation in words (is, makes, gives, which is): needs a computation on its left
    word: bool = False  # an operator or relation written as a word (plus, divided by; is, equals)


def _number(s: str) -> Fraction | None:
    digits = s.replace(",", "")
    if len(digits) > MAX_DIGITS:
        return None
    return Fraction(digits)


def _tokens(s: str) -> list[_Tok]:
    toks: list[_Tok] = []
    for m in _TOKEN_RE.finditer(s):
        kind = m.lastgroup if m.lastgroup != "pct" else "num"
        a, b = m.start(), m.end()
        if kind == "space":
            continue
        if kind == "num":
            val = _number(m.group("num"))
            after_x = bool(toks) and toks[-1].kind == OP and toks[-1].end == a
            digits = m.group("num")
            glued = (len(digits) > 1 and digits[0] == "0" and digits[1].isdigit()) or (  # "0900": a time
                a > 0 and (s[a - 1].isalpha() or s[a - 1] in "_\\") and not after_x) or (
                b < len(s) and (s[b].isalpha() or s[b] == "_") and not _times_x(s, b))
            toks.append(_Tok(GLUED if glued else NUM, m.group("num"), a, b, val,
                             pct=m.group("pct") is not None))
        elif kind == "which":
            toks.append(_Tok(REL, "which", a, b, weak=True, word=True))
        elif kind == "rel":
            t = " ".join(m.group(0).lower().split())
            toks.append(_Tok(REL, "=", a, b, approx=t in ("≈", "is approximately"),
                             weak=t in ("is", "makes", "gives", "is approximately"), word=t[0].isalpha()))
        elif kind == "wop":
            toks.append(_Tok(OP, _WORD_OPS[m.group(0).split()[0].lower()], a, b, word=True))
        elif kind == "op":
            bullet = m.group(0) in "-*+" and b < len(s) and s[b] in " \t" and _line_start(s, a)
            toks.append(_Tok(PUNCT if bullet else OP, m.group(0), a, b))  # "- 7 + 6 = 13": a list item
        elif kind in ("lp", "rp"):
            toks.append(_Tok(LP if kind == "lp" else RP, m.group(0), a, b))
        elif kind == "word":
            w = m.group(0).lower()
            after_quantity = toks and (toks[-1].kind in (NUM, RP) or (
                toks[-1].kind == WORD and len(toks) > 1 and toks[-2].kind == NUM))  # "2.5 liter x 8"
            if w == "x" and after_quantity and _next_is_number(s, b):
                toks.append(_Tok(OP, "*", a, b))
            elif w == "of" and toks and (toks[-1].pct or toks[-1].kind == RP) and _next_is_number(s, b):
                toks.append(_Tok(OP, "*", a, b))  # "50% of 20", "(1/2) of 10"
            elif a > 0 and s[a - 1] == "\\":
                toks.append(_Tok(GLUED, w, a, b))  # a LaTeX command (\sqrt, \log): not arithmetic here
            else:
                toks.append(_Tok(WORD, w, a, b))
        elif kind == "nl":
            toks.append(_Tok(PUNCT, "\n", a, b))
        else:
            toks.append(_Tok(PUNCT, m.group(0), a, b))
    return toks


def _line_start(s: str, i: int) -> bool:
    """Only spaces between the start of i's line and i."""
    j = i - 1
    while j >= 0 and s[j] in " \t":
        j -= 1
    return j < 0 or s[j] == "\n"


def _times_x(s: str, b: int) -> bool:
    """'3x4' / '3x 4': the x right after a number is a multiplication sign."""
    return s[b] in "xX" and _next_is_number(s, b + 1)


def _next_is_number(s: str, i: int) -> bool:
    while i < len(s) and s[i] in " \t":
        i += 1
    return i < len(s) and (s[i].isdigit() or s[i] == "(")


# ---------------------------------------------------------------- 3. runs

# A word before a run that changes its first side: "twice 3 + 4", "3 dozen", "half of 10".
_LEFT_MODIFIERS = frozenset({"of", "by", "than", "from", "times", "plus", "minus", "twice", "double",
                             "triple", "thrice", "half", "less", "more", "x", "multiplied", "divided",
                             "per", "over", "into", "each", "every", "squared", "cubed", "point"})
# A word before a run that joins it to a number before it only when its first side is bare:
# "the sum of 3 and 4 = 7" (not a claim that 4 = 7).
# A word before a number that makes it a label, not a quantity ("day 1 * 2", "Week 4 = ...").
_LABELS = frozenset({"day", "week", "weeks", "step", "steps", "page", "pages", "year", "chapter", "grade", "level",
                     "part", "room", "number", "no", "question", "problem", "round", "line", "item", "month",
                     "months", "days", "years", "hour", "hours", "minute", "minutes", "row", "column", "floor"})
_LEFT_JOINERS = frozenset({"and", "or", "to", "with", "between", "plus", "add", "subtract", "minus"})
# A word after a run that changes its last side: "= 5 more than 3", "= 2 hundred", "= 3 r 1".
_RIGHT_MODIFIERS = frozenset({"more", "less", "than", "times", "of", "plus", "minus", "x", "hundred",
                              "thousand", "million", "billion", "trillion", "dozen", "dozens", "half",
                              "halves", "third", "thirds", "quarter", "quarters", "fifth", "fifths",
                              "squared", "cubed", "divided", "multiplied", "over", "per", "point",
                              "remainder", "r", "with", "hundreds", "thousands", "millions", "fewer",
                              "to", "cents", "cent", "pence", "penny", "pennies"})
# After "of", a side is read as is ("a total of 6 + 4 = 10") unless "of" follows a number or a
# word that multiplies ("half of", "3 times of", "2 dozen of").
_OF_MULTIPLIERS = _RIGHT_MODIFIERS | {"twice", "double", "triple", "thrice", "percent", "fraction", "product"}
_MULTIPLIER_UNITS = _RIGHT_MODIFIERS | {"percent", "cents", "cent"}
# Words after a number that end a sentence's arithmetic rather than name a unit.
_NOT_UNITS = frozenset({"so", "and", "the", "then", "is", "are", "we", "which", "that", "to", "for", "in",
                        "on", "at", "as", "but", "or", "because", "since", "thus", "therefore", "now",
                        "this", "it", "he", "she", "they", "you", "i", "a", "an", "if", "when", "total",
                        "altogether", "left", "remaining", "in", "from", "answer", "was", "will", "would",
                        "by", "not", "all", "both", "each", "step", "after", "before", "here", "there"})
_MATH_FUNCTIONS = frozenset({"sqrt", "root", "log", "ln", "sin", "cos", "tan", "exp", "abs", "floor",
                             "ceil", "ceiling", "factorial", "round", "mod", "modulo", "gcd", "lcm"})
_IN_RUN = (NUM, OP, LP, RP, REL)


def _unit(w: str) -> bool:
    """A word that may name a unit; one letter is a variable ("4 W^2"), not a unit."""
    return len(w) > 1 and w not in _MULTIPLIER_UNITS and w not in _NOT_UNITS and w not in _MATH_FUNCTIONS


def _runs(toks: list[_Tok]) -> Iterator[tuple[int, int, list[str]]]:
    """(first, last) token indices of maximal runs of arithmetic and relation tokens, and the unit
    words absorbed in each (a word right after a number, followed by an operator or a relation;
    or ending the run: "= 6.5 liters")."""
    i, n = 0, len(toks)
    while i < n:
        if toks[i].kind not in _IN_RUN:
            i += 1
            continue
        j, units = i, []
        while j + 1 < n:
            nxt = toks[j + 1]
            if nxt.kind in _IN_RUN:
                if nxt.kind == REL and nxt.text == "which" and toks[j].kind not in (NUM, RP):
                    break
                j += 1
            elif (nxt.kind == WORD and toks[j].kind == NUM and _unit(nxt.text) and j + 2 < n
                  and toks[j + 2].kind in (OP, REL) and toks[j + 2].text not in ("which", "^")):
                units.append(nxt.text)
                j += 2  # the unit and the operator or relation after it
            else:
                break
        if j + 1 < n and toks[j + 1].kind == WORD and toks[j].kind == NUM and _unit(toks[j + 1].text):
            units.append(toks[j + 1].text)
        yield i, j, units
        i = j + 1


# ---------------------------------------------------------------- 4. sides

class _Unreadable(Exception):
    pass


class _TooLarge(Exception):
    pass


def _parse(toks: list[_Tok], pct_scale: Fraction) -> tuple[Fraction, bool]:
    """The exact value of a side, and whether it has an operator. `pct_scale` is what a % means
    (1/100, or 1 when % is read as a label)."""
    pos = 0
    has_op = False

    def peek() -> _Tok | None:
        return toks[pos] if pos < len(toks) else None

    def expr() -> Fraction:
        nonlocal pos, has_op
        v = term()
        while (t := peek()) is not None and t.kind == OP and t.text in "+-":
            pos += 1
            has_op = True
            w = term()
            v = v + w if t.text == "+" else v - w
        return v

    def term() -> Fraction:
        nonlocal pos, has_op
        v = unary()
        while (t := peek()) is not None and ((t.kind == OP and t.text in "*/") or t.kind == LP):
            if t.kind == OP:
                pos += 1
            has_op = True  # an explicit or implicit product: 2(3 + 4)
            w = unary()
            if t.kind == OP and t.text == "/":
                if w == 0:
                    raise _Unreadable("division by zero")
                v = v / w
            else:
                v = v * w
            _bound(v)
        return v

    def unary() -> Fraction:
        nonlocal pos
        t = peek()
        if t is not None and t.kind == OP and t.text == "-":
            pos += 1
            return -unary()
        return power()

    def power() -> Fraction:
        nonlocal pos, has_op
        base = atom()
        t = peek()
        if t is not None and t.kind == OP and t.text == "^":
            pos += 1
            has_op = True
            exp = unary()
            if exp.denominator != 1 or abs(exp) > MAX_EXPONENT or abs(base) > 10 ** 6:
                raise _TooLarge()
            if base == 0 and exp < 0:
                raise _Unreadable("0 to a negative power")
            base = base ** int(exp)
        return base

    def atom() -> Fraction:
        nonlocal pos, has_op
        t = peek()
        if t is None:
            raise _Unreadable("side ends early")
        if t.kind == NUM:
            if t.value is None:
                raise _TooLarge()  # over MAX_DIGITS digits
            pos += 1
            if not t.pct and pos + 1 < len(toks) and _tight_fraction(t, toks[pos], toks[pos + 1]):
                pos += 2  # "28 / 1/5": a fraction written without spaces is one number
                has_op = True
                return t.value / toks[pos - 1].value
            return t.value * pct_scale if t.pct else t.value
        if t.kind == LP:
            pos += 1
            v = expr()
            close = peek()
            if close is None or close.kind != RP:
                raise _Unreadable("unclosed parenthesis")
            pos += 1
            return v
        raise _Unreadable(f"unexpected {t.text!r}")

    if not toks:
        raise _Unreadable("empty side")
    value = expr()
    if pos != len(toks):
        raise _Unreadable(f"unexpected {toks[pos].text!r}")
    return value, has_op


def _tight_fraction(a: _Tok, slash: _Tok, b: _Tok) -> bool:
    return (slash.kind == OP and slash.text == "/" and b.kind == NUM and not b.pct and b.value
            and a.end == slash.start and slash.end == b.start)


def _bound(v: Fraction) -> None:
    if abs(v.numerator).bit_length() > 4 * MAX_DIGITS or v.denominator.bit_length() > 4 * MAX_DIGITS:
        raise _TooLarge()


_PERCENT, _LABEL = Fraction(1, 100), Fraction(1)


def _side(toks: list[_Tok]) -> tuple[dict[Fraction, Fraction] | None, bool, str]:
    """Values of a side per reading of % ({scale: value}), whether it has an operator, and the
    reason when it does not parse (values None). A side with a % is read both ways: n/100
    ("50% of 20") and n with % as a label ("0.2 * 100 = 20%", "1.2 x 100% = 120")."""
    has_pct = any(t.pct for t in toks)
    depth = deepest = 0
    for k, t in enumerate(toks):  # bounded recursion: the parser nests per parenthesis, unary minus and power
        unary = t.kind == OP and t.text == "-" and (k == 0 or toks[k - 1].kind in (OP, LP))
        depth += (t.kind == LP or unary or (t.kind == OP and t.text == "^")) - (t.kind == RP)
        deepest = max(deepest, depth)
    if deepest > MAX_NESTING or len(toks) > MAX_SIDE_TOKENS:
        return None, any(t.kind == OP for t in toks), "too_large"
    values: dict[Fraction, Fraction] = {}
    has_op = False
    for scale in (_PERCENT, _LABEL) if has_pct else (_PERCENT,):
        try:
            values[scale], has_op = _parse(toks, scale)
        except (_TooLarge, _Unreadable) as e:  # still a computation when it has an operator
            return None, any(t.kind == OP for t in toks), "too_large" if isinstance(e, _TooLarge) else "unreadable"
    return values, has_op, ""


# ---------------------------------------------------------------- 5. judge

def _decimals(toks: list[_Tok]) -> int | None:
    """Decimal places of a side that is one decimal literal, else None (33.3% has 3: it is 0.333)."""
    if len(toks) == 1 and toks[0].kind == NUM and "." in toks[0].text:
        return len(toks[0].text.split(".", 1)[1]) + (2 if toks[0].pct else 0)
    return None


def _compare(a: Fraction, b: Fraction, a_toks: list[_Tok], b_toks: list[_Tok], approx: bool) -> tuple[str, str]:
    if a == b:
        return TRUE, "exact"
    diff = abs(a - b)
    places = [d for d in (_decimals(a_toks), _decimals(b_toks)) if d is not None]
    if places:
        ulp = Fraction(1, 10 ** max(places))
        if diff <= ulp / 2:
            return TRUE, "rounded"
        exact, shown = (b, a) if _decimals(a_toks) is not None else (a, b)
        cut = Fraction(int(abs(exact) / ulp)) * ulp * (1 if exact >= 0 else -1)
        if shown == cut:
            return UNKNOWN_STEP, "truncated"  # digits cut, not rounded: sloppy, not surely false
    if approx:
        scale = max(abs(a), abs(b))
        if scale and diff / scale <= Fraction(1, 100):
            return TRUE, "approximate"
    return FALSE, "wrong"


def _judge(a: tuple, b: tuple, approx: bool) -> tuple[str, str]:
    (a_vals, _, a_why, a_toks), (b_vals, _, b_why, b_toks) = a, b
    if a_vals is None or b_vals is None:
        return UNKNOWN_STEP, a_why or b_why
    readings = {(sa, sb) for sa in a_vals for sb in b_vals}
    if any(t.pct for t in a_toks) and any(t.pct for t in b_toks):  # % on both sides: /100 on each
        readings = {(_PERCENT, _PERCENT)}
    verdicts = {_compare(a_vals[sa], b_vals[sb], a_toks, b_toks, approx) for sa, sb in readings}
    kinds = {v for v, _ in verdicts}
    if len(kinds) > 1:
        return UNKNOWN_STEP, "percent"
    return min(verdicts)  # one verdict kind: a deterministic reason


def _fmt(vals: dict[Fraction, Fraction] | None) -> str | None:
    if not vals:
        return None
    v = vals[_PERCENT]
    return str(v.numerator) if v.denominator == 1 else f"{v.numerator}/{v.denominator}"


def _unmatched(toks: list[_Tok]) -> tuple[list[int], list[int]]:
    """Indices of the closing parentheses with no opening one before them, and of the opening
    ones never closed."""
    closes: list[int] = []
    opened: list[int] = []
    for k, t in enumerate(toks):
        if t.kind == LP:
            opened.append(k)
        elif t.kind == RP:
            if opened:
                opened.pop()
            else:
                closes.append(k)
    return closes, opened


def _balanced(toks: list[_Tok]) -> list[_Tok]:
    """A side without its unit words and without parentheses that close or open outside it
    ("(2 + 6 = 8)": the sides are "2 + 6" and "8")."""
    toks = [t for t in toks if t.kind != WORD]
    closes, opens = _unmatched(toks)
    drop = set(closes) | set(opens)
    return [t for k, t in enumerate(toks) if k not in drop]


def _rel_depths(run: list[_Tok]) -> list[int]:
    """The parenthesis depth at each relation of a run."""
    depth, out = 0, []
    for t in run:
        depth += (t.kind == LP) - (t.kind == RP)
        if t.kind == REL:
            out.append(depth)
    return out


def _opens_inside(raw: list[_Tok], first: bool) -> bool:
    """The first side closes a parenthesis opened before the run ("(age - 1) x 2"), or opens one
    after its start ("600/(3+1=4)"); the last side opens one it does not close ("= 4 (2 + 2"...)."""
    closes, opens = _unmatched(raw)
    if first:
        return bool(closes) or any(k > 0 for k in opens)
    return any(k < len(raw) - 1 for k in opens)


def _range(toks: list[_Tok]) -> bool:
    """a-b with no spaces after a word: a range ("Weeks 1-2"), not a subtraction."""
    return (len(toks) == 3 and toks[0].kind == NUM and toks[1].text == "-" and toks[2].kind == NUM
            and toks[0].end == toks[1].start and toks[1].end == toks[2].start)


def _share(toks: list[_Tok]) -> bool:
    """A side that is one fraction a/b or one percent: in words it names a share of something."""
    core = [t for t in toks if t.kind not in (LP, RP)]
    return (len(core) == 1 and core[0].pct) or (
        len(core) == 3 and core[0].kind == NUM == core[2].kind and core[1].text == "/" and not core[1].word)


def _mixed_forms(a: list[_Tok], b: list[_Tok], rel: _Tok) -> bool:
    """An operator in words on one side of a symbolic "=" whose other side is symbolic
    ("8*45 = 360 divided by 5 is 72"): the words start a new sentence, not this side."""
    def ops(toks: list[_Tok], word: bool) -> bool:
        return any(t.kind == OP and t.word == word for t in toks)
    return not rel.word and ((ops(a, True) and ops(b, False)) or (ops(b, True) and ops(a, False)))


def _unit_label(a_raw: list[_Tok], a_op: bool, b_raw: list[_Tok], b_op: bool) -> bool:
    """A bare quantity with a unit set equal to a computation without units ("8 coins = 8 * 10",
    "1 apples = 1 * 2"): the writer converts or relabels; what is claimed is not arithmetic."""
    def unit(raw: list[_Tok]) -> bool:
        return any(t.kind == WORD for t in raw)
    return (not a_op and unit(a_raw) and b_op and not unit(b_raw)) or (not b_op and unit(b_raw) and a_op
                                                                       and not unit(a_raw))


def _of_multiplies(toks: list[_Tok], k: int) -> bool:
    """Whether the "of" at k takes a multiplier before it ("half of", "20% of"), not a noun."""
    before = toks[k - 1] if k > 0 else None
    return before is not None and (before.kind in (NUM, GLUED, RP) or before.pct
                                   or (before.kind == WORD and before.text in _OF_MULTIPLIERS))


def _and_continues(toks: list[_Tok], k: int) -> bool:
    """Whether the "and" at k goes on with the number before it ("= 3 and a half", "3 and 1/2")."""
    nxt = toks[k + 1:k + 5]
    if nxt and nxt[0].kind == WORD:
        return nxt[0].text in ("a", "half", "one", "quarter", "third", "two", "three")
    return _fraction_only(nxt)


def _fraction_only(toks: list[_Tok]) -> bool:
    """toks start with a/b (or (a/b)) that no relation follows: the fraction of a mixed number."""
    toks = [t for t in toks if t.kind != LP]
    kinds = [t.kind for t in toks[:3]]
    return (kinds == [NUM, OP, NUM] and toks[1].text == "/"
            and not (len(toks) > 3 and toks[3].kind in (REL, OP)))


def _statements(s: str, toks: list[_Tok]) -> Iterator[tuple[int, int, str, str, str | None, str | None]]:
    """(start, end) in the rewritten string, verdict, reason and side values of each statement."""
    for i, j, units in _runs(toks):
        run = toks[i:j + 1]
        rels = [k for k, t in enumerate(run) if t.kind == REL]
        if not rels:
            continue
        cuts = [-1] + rels + [len(run)]
        side_toks = [_balanced(run[cuts[k] + 1:cuts[k + 1]]) for k in range(len(cuts) - 1)]
        sides = [(*_side(st), st) if st else (None, False, "empty", st) for st in side_toks]
        prev = toks[i - 1] if i > 0 else None
        after = toks[j + 1] if j + 1 < len(toks) else None
        left_partial = prev is not None and (
            prev.kind == GLUED
            or (prev.kind == WORD and prev.text == "of" and _of_multiplies(toks, i - 1))
            or (prev.kind == WORD and prev.text != "of" and (prev.text in _LEFT_MODIFIERS or prev.text in _MATH_FUNCTIONS))
            or (prev.kind == WORD and prev.text in _LEFT_JOINERS and not sides[0][1])
            or (prev.kind == WORD and prev.text == "and" and i >= 2 and toks[i - 2].kind == NUM
                and len(side_toks[0]) == 3 and side_toks[0][1].text == "/")  # "3 and 1/2 = 3.5"
            or (prev.kind == PUNCT and prev.text in ".:,/!" and prev.start > 0 and s[prev.start - 1].isdigit()
                and prev.end == run[0].start)
            or (prev.kind == PUNCT and prev.text == "," and prev.start > 0 and s[prev.start - 1].isdigit()
                and run[0].kind == NUM and len(run[0].text) == 3)  # "14, 400": a thousands comma and a stray space
            or (prev.kind == WORD and _range(side_toks[0]))  # "Weeks 1-2", "pages 3-5"
            or (prev.kind == WORD and prev.text in _LABELS)  # "on day 1 * 2 = 20"
            or (prev.kind == PUNCT and prev.text in ".," and i >= 2 and toks[i - 2].kind == OP)  # ".8 + . 84"
            or _opens_inside(run[cuts[0] + 1:cuts[1]], first=True))
        right_partial = after is not None and (
            after.kind == GLUED or (after.kind == WORD and after.text in _RIGHT_MODIFIERS)
            or (after.kind == WORD and after.text == "and" and _and_continues(toks, j + 1))
            or (after.kind == PUNCT and after.text in "/:!" and after.start == run[-1].end)
            or (after.kind == PUNCT and after.start == run[-1].end and s.startswith("...", after.start))  # 8.333...%
            or _opens_inside(run[cuts[-2] + 1:cuts[-1]], first=False))
        any_op = any(sd[1] for sd in sides)
        nested = len(set(_rel_depths(run))) > 1  # "600/(3+1=4) = 150": a relation inside a side
        mixed_units = len({u[:-1] if u.endswith("s") else u for u in units}) > 1
        for k in range(len(sides) - 1):
            a, b = sides[k], sides[k + 1]
            rel = run[rels[k]]
            if not side_toks[k] or not side_toks[k + 1]:
                continue  # "x = 5", "The answer is 3 + 7": a relation with an empty side
            if k == 0 and side_toks[0][0].kind == OP and (side_toks[0][0].text != "-" or (
                    prev is not None and prev.kind in (WORD, GLUED, RP))):
                continue  # "2x + 3 = 13", "(age - 1) x 2 = 15": the left side began in words before the run
            if not any_op and not (a[1] or b[1]):
                continue  # two bare numbers outside any computation: not a statement
            if k == 0 and not a[1] and prev is not None and prev.kind == WORD:
                continue  # "Week 4 = 48 + 48", "costs 8 = ...": a number that labels or belongs to the words
            if rel.word and (_share(side_toks[k]) or _share(side_toks[k + 1])):
                continue  # "2/3 is equal to $20", "1% is $4.50": a share of some quantity, not arithmetic
            if rel.weak and not a[1] and (k == 0 or not side_toks[k - 1]):
                continue  # "Step 2 is 5 + 3", "the coin is 4, which is ...": words, not a claim about 2 or 4
            if _unit_label(run[cuts[k] + 1:cuts[k + 1]], a[1], run[cuts[k + 1] + 1:cuts[k + 2]], b[1]):
                yield side_toks[k][0].start, side_toks[k + 1][-1].end, UNKNOWN_STEP, "units", _fmt(a[0]), _fmt(b[0])
                continue
            first, last = k == 0, k + 1 == len(sides) - 1
            lp, rp = first and left_partial, last and right_partial
            start, end = side_toks[k][0].start, side_toks[k + 1][-1].end
            if (lp and not a[1]) or (rp and not a[1] and not b[1]):
                continue  # a bare number that belongs to the words around it
            if lp or rp or nested or _mixed_forms(side_toks[k], side_toks[k + 1], rel):
                yield start, end, UNKNOWN_STEP, "partial", _fmt(a[0]), _fmt(b[0])
            elif mixed_units:
                yield start, end, UNKNOWN_STEP, "units", _fmt(a[0]), _fmt(b[0])
            else:
                verdict, reason = _judge(a, b, rel.approx)
                yield start, end, verdict, reason, _fmt(a[0]), _fmt(b[0])


def _read(src: str) -> tuple[str, list[int], list[_Tok]]:
    """`src` rewritten to plain arithmetic, the source index of each of its characters (plus
    len(src), so an end offset maps too), and its tokens."""
    out: list[str] = []
    pos: list[int] = []
    _rewrite(src, 0, len(src), out, pos)
    s = "".join(out)
    pos.append(len(src))
    return s, pos, _tokens(s)


def check_steps(text: str) -> StepReport:
    """Every checkable statement of `text`, in order, with its verdict. Never raises."""
    t0 = time.perf_counter()
    if not isinstance(text, str):
        return StepReport(seconds=time.perf_counter() - t0)
    truncated = len(text) > MAX_CHARS
    src = text[:MAX_CHARS]
    s, pos, toks = _read(src)
    steps: list[Step] = []
    for a, b, verdict, reason, left, right in _statements(s, toks):
        if len(steps) >= MAX_STATEMENTS:
            truncated = True
            break
        start, end = pos[a], pos[b - 1] + 1
        steps.append(Step(start, end, src[start:end], verdict, reason, left, right))
    counts = {TRUE: 0, FALSE: 0, UNKNOWN_STEP: 0}
    for st in steps:
        counts[st.verdict] += 1
    return StepReport(tuple(steps), truncated, time.perf_counter() - t0, counts)


# ---------------------------------------------------------------- final answers

def _answer_sides(answer: str) -> list[tuple[list[_Tok], str]] | None:
    """An answer's sides (tokens and source text), when the whole answer is one run of
    arithmetic (optionally a chain with "="); None otherwise."""
    if not isinstance(answer, str) or len(answer) > 400:
        return None
    src = answer.strip().rstrip(".").strip()
    s, pos, toks = _read(src)
    toks = [t for t in toks if not (t.kind == PUNCT and t.text in ".,")]
    if not toks or any(t.kind not in _IN_RUN for t in toks):
        return None
    sides, cur = [], []
    for t in toks + [_Tok(REL, "=", len(s), len(s))]:
        if t.kind == REL:
            if not cur:
                return None
            sides.append((cur, src[pos[cur[0].start]:pos[cur[-1].end - 1] + 1]))
            cur = []
        else:
            cur.append(t)
    return sides


def _is_value(toks: list[_Tok]) -> bool:
    """A single number, -n, n%, or a fraction a/b in lowest terms: a value, not a computation."""
    kinds = [t.kind for t in toks]
    if kinds in ([NUM], [OP, NUM]) and (kinds == [NUM] or toks[0].text == "-"):
        return True
    core = toks[1:] if toks and toks[0].kind == OP and toks[0].text == "-" else toks
    core = [t for t in core if t.kind not in (LP, RP)]
    if [t.kind for t in core] == [NUM, OP, NUM] and core[1].text == "/":
        a, b = core[0].value, core[2].value
        return (a is not None and b is not None and a.denominator == 1 == b.denominator and b > 1
                and Fraction(int(a), int(b)).denominator == b)
    return False


def is_value(text: str | None) -> bool:
    """True when the whole text is one value: a number, -n, n%, or a fraction in lowest terms."""
    sides = _answer_sides(text or "")
    return bool(sides) and len(sides) == 1 and _is_value(sides[0][0])


def is_unevaluated(answer: str | None) -> bool:
    """True when a final answer is a computation left undone ("3 + 7", "6 + 6 + 6", "2 \\times 5")
    rather than a value ("10", "-3", "3/4", "50%"). A chain ("1 + 9 = 10") is judged by its last
    side. Anything that does not read as arithmetic is False (not judged)."""
    sides = _answer_sides(answer or "")
    if not sides:
        return False
    last = sides[-1][0]
    values, has_op, _ = _side(last)
    return values is not None and has_op and not _is_value(last)


def stated_value(answer: str | None) -> str | None:
    """The value a final answer states, for records: the last side of a true chain
    ("1 + 9 = 10." -> "10"), a bare number without its sentence period ("10." -> "10"),
    otherwise the answer unchanged."""
    if answer is None:
        return None
    sides = _answer_sides(answer)
    if not sides:
        return answer
    if len(sides) == 1:
        return sides[0][1] if _is_value(sides[0][0]) else answer
    values = [_side(toks)[0] for toks, _ in sides]
    if any(v is None or len(v) > 1 for v in values) or len({tuple(v.values()) for v in values}) != 1:
        return answer  # a false chain ("12 + 7 = 9") is kept as written
    return sides[-1][1]
