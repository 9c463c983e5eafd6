"""Canonical text of an extracted answer (pure Python, no parsing): ``normalize_answer``.

The rules are listed on ``normalize_answer``; the policies behind them are in docs/verifiers.md.
"""
from __future__ import annotations

import re

from selfplay_verifiers.chains import collapse_chain
from selfplay_verifiers.texutil import MATH_WORDS, match_braces, strip_text_wrappers

__all__ = ["normalize_answer", "UNIT_WORDS", "strip_name", "strip_thousands"]

# Units a number may carry in plain text ("18 dollars", "12 cm^2"). Only these words, after
# white space, are stripped: "2ab" (letters glued to a number) and "5 or more" are not units.
UNIT_WORDS = frozenset("""
dollar dollars cent cents euro euros pound pounds yen rupee rupees usd
m cm mm km meter meters metre metres centimeter centimeters millimeter millimeters kilometer
kilometers in inch inches ft foot feet yd yard yards mi mile miles
g kg mg gram grams kilogram kilograms milligram milligrams lb lbs ounce ounces oz ton tons
l ml liter liters litre litres milliliter milliliters gallon gallons quart quarts pint pints cup cups
s sec secs second seconds min mins minute minutes h hr hrs hour hours day days week weeks
month months year years
mph kmh kph
degree degrees deg radian radians rad
unit units sq square cubic percent pct percentage
""".split())

_UNICODE = {"\u2212": "-", "\u2013": "-", "\u00d7": "\\times ", "\u00f7": "/", "\u03c0": "\\pi ",
            "\u221e": "\\infty ", "\u2264": "\\leq ", "\u2265": "\\geq ", "\u00b7": "\\cdot ",
            "\u221a": "\\sqrt ", "\u00b0": "", "\uff0c": ",", "\u2060": "", "\u00b2": "^2",
            "\u00b3": "^3", "\u20ac": "", "\u2260": "\\neq "}
_SPACING_RE = re.compile(r"(?<!\\)\\[,;: ]|\\(?:displaystyle|left|right|big|Big|bigg|Bigg|q?quad)"
                         r"(?![a-zA-Z])|~")
_DEGREE_RE = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|\\circ|\\degree")
# "name = value": the name is a variable, an indexed one, f(x), a tuple of names (p,q), a ratio
# or fraction of names, |AB|; never something with digits or arithmetic ("7 = 11a+c" stays).
_NAME = r"[a-zA-Z]+(?:_\{?[a-zA-Z0-9]+\}?)?(?:\([a-z]\))?"
_NAME_RE = re.compile(r"(?:{n}|\((?:{n}\s*,\s*)+{n}\)|\|{n}\||{n}\s*:\s*{n}|\\frac\{{{n}}}\{{{n}}})"
                      .format(n=_NAME))
_ASSIGN_RE = re.compile(r"^\s*([^=<>]+?)\s*(?:=|\\in(?![a-zA-Z]))\s*(.+)$", re.S)
_UNITS_RE = re.compile(r"^([-+]?(?:\d[\d,]*(?:\.\d+)?|\.\d+))\s+([a-zA-Z][a-zA-Z ./]*(?:\^\d)?)$")
_THOUSANDS_RE = re.compile(r"^[-+]?[1-9]\d{0,2}(?:,\d{3})+(?:\.\d+)?$")
_THOUSANDS_SPACE_RE = re.compile(r"^[-+]?[1-9]\d{0,2}(?: \d{3})+(?:\.\d+)?$")
_IN_TEXT_THOUSANDS_RE = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_FRAC_CMD_RE = re.compile(r"\\[dtc]?frac(?![a-zA-Z])")
_SQRT_RE = re.compile(r"\\sqrt(?![a-zA-Z])\s*(?=[^\s{\[])")
_TRAIL_TEXT_RE = re.compile(r"\\(?:text|textnormal|textbf|textit|textrm|mbox|mathrm)\s*\{([^{}]*)\}"
                            r"(?:\s*\^\s*\{?\d\}?)?\s*\.?\s*$")
_DOUBLE_BS_RE = re.compile(r"\\\\(?=[a-zA-Z])")
_MATRIX_RE = re.compile(r"\\begin\{(?:[bBp]matrix|smallmatrix|array)\}(?:\{[lcr| ]*\})?")
_MATRIX_END_RE = re.compile(r"\\end\{(?:[bBp]matrix|smallmatrix|array)\}")
_RELATIONS = ((">=", "\\geq "), ("<=", "\\leq "), ("!=", "\\neq "), ("\\ne ", "\\neq "),
              ("\\le ", "\\leq "), ("\\ge ", "\\geq "), ("\\lt", "<"), ("\\gt", ">"),
              ("\\leqslant", "\\leq "), ("\\geqslant", "\\geq "))
_GLUED_OR_RE = re.compile(r"(?<=[\d)])or(?=[A-Z(\d-])")
_JOINED_TUPLES_RE = re.compile(r"(?<=[)\]])\s*(?:,?\s*(?:or|and)\s*)(?=[(\[])")


def _tex_arg(s: str, i: int) -> tuple[str, int] | None:
    """One TeX argument at ``i``: a brace group or a single character (spaces skipped)."""
    n = len(s)
    while i < n and s[i] == " ":
        i += 1
    if i >= n:
        return None
    if s[i] == "{":
        end = match_braces(s, i)
        return (s[i + 1:end], end + 1) if end >= 0 else None
    if s[i] == "\\":
        m = re.match(r"\\[a-zA-Z]+", s[i:])
        if m:
            return m.group(0), i + len(m.group(0))
    return s[i], i + 1


def _brace_args(s: str, cmd: re.Pattern[str], name: str, nargs: int) -> str:
    """Rewrite each `cmd` match with its next `nargs` TeX arguments braced: ``\\name{a}{b}``."""
    out, pos = [], 0
    for m in cmd.finditer(s):
        if m.start() < pos:
            continue
        args, end = [], m.end()
        for _ in range(nargs):
            arg = _tex_arg(s, end)
            if not arg:
                break
            args.append(arg[0])
            end = arg[1]
        if len(args) < nargs:
            continue
        out.append(s[pos:m.start()] + "\\" + name + "".join("{" + x + "}" for x in args))
        pos = end
    out.append(s[pos:])
    return "".join(out)


def _fix_frac(s: str) -> str:
    """``\\dfrac12``, ``\\frac 1{2}`` -> ``\\frac{1}{2}`` (latex2sympy wants braces)."""
    return _brace_args(s, _FRAC_CMD_RE, "frac", 2)


def _fix_sqrt(s: str) -> str:
    """``\\sqrt3``, ``\\sqrt 2`` -> ``\\sqrt{3}``: TeX takes one token as the argument."""
    return _brace_args(s, _SQRT_RE, "sqrt", 1)


def _drop_trailing_text(s: str) -> str:
    """``17\\text{ any text}`` -> ``17``: words in a text box after a value are not the value.
    A text box that is the whole answer (``\\text{Evelyn}``) is kept."""
    for _ in range(4):
        m = _TRAIL_TEXT_RE.search(s)
        if not m or not s[:m.start()].strip() or not re.search(r"[a-zA-Z]{2}", m.group(1)):
            break
        if re.search(r"\d", m.group(1)):
            break
        s = s[:m.start()].rstrip()
    return s


def _peel(s: str) -> str:
    """Remove delimiters and a box that wrap the whole answer, and text after a value."""
    while True:
        t = s.strip().rstrip(".").strip().strip('"').strip()
        for a, b in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
            if len(t) >= len(a) + len(b) and t.startswith(a) and t.endswith(b):
                t = t[len(a):len(t) - len(b)].strip()
                break
        if t.startswith("\\boxed{") and match_braces(t, 6) == len(t) - 1:
            t = t[7:-1].strip()
        if "\\" in t:
            t = _drop_trailing_text(t)
        if t == s:
            return s
        s = t


def strip_thousands(text: str) -> str:
    """Thousands separators inside running text removed: a comma between a digit and exactly three
    digits ("1,000,000 apples" -> "1000000 apples"; "2,5" and "1,0000" stay). For prose and raw
    dataset fields; a whole answer gets the stricter rule of ``normalize_answer``."""
    return _IN_TEXT_THOUSANDS_RE.sub("", text)


def strip_name(s: str) -> str:
    """``x = 5`` -> ``5``, ``(p,q) = (3,2)`` -> ``(3,2)``, ``x \\in (0,1]`` -> ``(0,1]``: a
    leading assignment to a name (see ``_NAME_RE``). Equations stay equations."""
    m = _ASSIGN_RE.match(s)
    if not m or not _NAME_RE.fullmatch(m.group(1).strip()):
        return s
    rest = m.group(2).strip()
    if "=" in rest:  # "x = 8/2 = 4" is 4 when the chain holds; a false chain stays as written
        rest = collapse_chain(rest)
    return rest if "=" not in rest else s


def normalize_answer(ans: str, *, keep_name: bool = False) -> str:
    """Canonical text of an extracted answer (still LaTeX-ish; no parsing happens here).

    Rules, in order:
    - math delimiters ``$..$``, ``\\(..\\)``, ``\\[..\\]``, markdown ``**`` and a wrapping
      ``\\boxed{}`` are removed; ``\\\\frac`` (a doubly escaped command) is ``\\frac``;
    - a ``\\text{words}`` after a value is dropped ("17\\text{ any text}" -> 17); other
      ``\\text{}``/``\\mathrm{}``... are replaced by their content;
    - spacing (``\\,`` ``\\!`` ``~`` ``\\quad``), ``\\left``/``\\right``, ``\\displaystyle`` go;
      ``\\dfrac``/``\\tfrac``/``\\cfrac`` become ``\\frac`` with braced arguments, ``\\sqrt3``
      becomes ``\\sqrt{3}``; bmatrix/array matrices become pmatrix;
    - relations: ``>=`` ``<=`` ``!=`` ``\\lt`` ``\\gt`` become ``\\geq`` ``\\leq`` ``\\neq`` < >;
    - degrees (``^\\circ``) and the percent sign are dropped: "50\\%" is the number 50, never
      0.5 (no x100 leniency either way); currency ``\\$``, ``$``, € is dropped;
    - a leading assignment to a name goes ("x = 5" -> "5", "(p,q) = (3,2)" -> "(3,2)");
    - a number followed by a known unit word after white space is the number ("18 dollars",
      "12 cm^2"); "2ab" and "5 or more" are not numbers with units;
    - thousands separators: commas (or ``{,}``, ``,\\!``, single spaces) are removed only when
      the *whole* answer is one number written in groups of exactly three digits after a
      leading 1-3 digit group ("1,000" is a number; "2, 3", "1,00" and "(1,100)" are lists).
    """
    s = ans.strip()
    for k, v in _UNICODE.items():
        if k in s:
            s = s.replace(k, v)
    s = s.replace("**", "")
    if "\\\\" in s and "\\begin" not in s:
        s = _DOUBLE_BS_RE.sub(r"\\", s)  # "\\frac" outside a matrix is an escaping accident
    s = _peel(s)
    if "\\" in s:
        s = _peel(strip_text_wrappers(s))
    if "\\" in s:
        s = re.sub(r",\\!\s*", ",", s).replace("\\!", "")
        s = s.replace("\\qquad", " ").replace("\\quad", " ")  # also a glued "\quadx_2"
        s = _SPACING_RE.sub(" ", s)
        s = _DEGREE_RE.sub("", s)
        if "\\begin" in s:
            s = _MATRIX_END_RE.sub("\\\\end{pmatrix}", _MATRIX_RE.sub("\\\\begin{pmatrix}", s))
    s = s.replace("\\%", "").replace("%", "").replace("\\$", "").replace("$", "")
    s = _fix_frac(s) if "frac" in s else s
    s = _fix_sqrt(s) if "\\sqrt" in s else s
    s = " ".join(s.split()).rstrip(".").strip() + " "
    for a, b in _RELATIONS:
        if a in s:
            s = s.replace(a, b)
    s = " ".join(s.split())
    if "or" in s:
        s = _GLUED_OR_RE.sub(" or ", s)  # "W(x)=1orW(x)=-1"
    if ")" in s or "]" in s:
        s = _JOINED_TUPLES_RE.sub(", ", s)  # "(1,2) or (2,1)": a list of tuples
    if not keep_name:  # kept when the gold is an equation: "y = 2x+1" is then an equation too
        s = strip_name(s)
    if "=" in s:  # "6 + 1 = 7" -> "7" only when every side has the same value (verifiers/chains.py)
        s = collapse_chain(s)
    m = _UNITS_RE.match(s)
    if m:
        words = re.findall(r"[a-zA-Z]+", m.group(2))
        if words and all(w.lower() in UNIT_WORDS for w in words):
            s = m.group(1)
    if "{,}" in s:
        s = s.replace("{,}", ",")  # LaTeX's 1{,}000
    if ("," in s and _THOUSANDS_RE.match(s)) or (" " in s and _THOUSANDS_SPACE_RE.match(s)):
        s = s.replace(",", "").replace(" ", "")
    return s
