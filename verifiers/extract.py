"""Pull the final answer out of a model completion (pure Python, linear time, never raises).

Order of precedence (the first rule that finds something wins):

1. The last ``\\boxed{...}`` / ``\\fbox{...}`` (braces matched, escaped ``\\{`` ``\\}`` skipped;
   ``\\boxed 5`` also works). If that last box is never closed (a truncated completion) the
   result is None: the model was cut off while writing its answer, and an earlier box may be
   an intermediate result.
2. The last explicit statement: "The answer is ...", "Final answer: ...", "Answer: ...",
   "the answer would be ...", GSM8K's "#### ...". The answer runs to the end of its line and is
   cut at the first sentence-ending period (a period followed by a space or the end; "3.5" is
   kept).
3. A completion that is itself a bare answer ("72", "$\\frac{1}{2}$", "x = 5", "18 dollars"):
   one short line with at most one plain word (a unit). Sentences are not bare answers.
4. Only with ``last_number=True``: the last number in the text. It is off by default because it
   labels rambling text by whatever number it mentioned last, which poisons preference pairs.

``normalize_answer`` then strips wrappers ($, \\(, \\text{}, units, currency, %, degrees, "x =")
and decides thousands separators; its rules are documented on the function.
"""
from __future__ import annotations

import re

from verifiers.chains import collapse_chain

__all__ = ["extract_answer", "find_boxed", "normalize_answer", "strip_text_wrappers", "has_prose",
           "match_braces", "MATH_WORDS"]

# Words that are mathematics, not units or prose; kept by the unit stripper and the bare test.
MATH_WORDS = frozenset({"pi", "sqrt", "sin", "cos", "tan", "cot", "sec", "csc", "log", "ln",
                        "exp", "inf", "infty", "infinity", "oo", "frac", "dfrac", "tfrac",
                        "cdot", "times", "div", "pm", "mp", "le", "ge", "leq", "geq", "lt",
                        "gt", "ne", "neq", "in", "cup", "cap", "arcsin", "arccos", "arctan",
                        "circ", "emptyset", "varnothing", "left", "right", "theta", "alpha",
                        "beta", "gamma", "mathbb", "binom", "choose", "sum", "prod"})

_MAX_PHRASE = 400  # chars kept after "the answer is"; real answers are far shorter
_PHRASE_RE = re.compile(
    r"(?:answer(?:\s*\*{1,2})?\s*(?:(?:is|was|would\s+be|will\s+be|should\s+be)(?![\w'])|=|:)(?:\s*\*{1,2})?"
    r"\s*:?|####)[ \t]*", re.IGNORECASE)  # anchors only: the answer is read after the last one
_FILLER_RE = re.compile(r"^(?:(?:approximately|about|around|roughly|exactly|just|simply|equal\s+to|"
                        r"given\s+by|then|therefore|thus)\s+|\\approx\s*|~\s*)+", re.IGNORECASE)
_SENTENCE_END = re.compile(r"\.(?=\s|$)")
_LAST_NUMBER_RE = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_TEXT_CMD_RE = re.compile(r"\\(?:text|textbf|textit|textrm|mathrm|mathbf|mbox|operatorname)\s*\{")
_WORD_RE = re.compile(r"(?<![\\a-zA-Z])[a-zA-Z]{2,}")
_PROSE_RE = re.compile(r"(?<![\\a-zA-Z])[a-zA-Z]{3,}(?![a-zA-Z])")


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


def find_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed``/``\\fbox``; None if absent, empty or unclosed."""
    end = len(text)
    while True:
        start = max(text.rfind("\\boxed", 0, end), text.rfind("\\fbox", 0, end))
        if start < 0:
            return None
        i = start + (6 if text.startswith("\\boxed", start) else 5)
        if i < len(text) and text[i].isalpha():  # e.g. \boxedtext: not our command
            end = start
            continue
        break
    n = len(text)
    while i < n and text[i] in " \t":
        i += 1
    if i >= n:
        return None
    if text[i] == "{":
        close = match_braces(text, i)
        if close < 0:
            return None  # truncated while writing the answer: do not guess
        inner = text[i + 1:close].strip()
        return inner or None
    m = re.match(r"[^\s$]+", text[i:i + _MAX_PHRASE])  # "\boxed 5": one TeX token group
    return m.group(0) if m else None


def _from_phrase(text: str) -> str | None:
    last = None
    for last in _PHRASE_RE.finditer(text):
        pass
    if last is None:
        return None
    ans = text[last.end():last.end() + _MAX_PHRASE].split("\n", 1)[0]
    m = _SENTENCE_END.search(ans)
    if m:
        ans = ans[:m.start()]
    ans = _FILLER_RE.sub("", ans.strip().strip("*").strip())
    cut = _first_prose_word(ans)
    if cut > 0:  # "18 because 9*2 = 18" -> "18"; an answer that starts with prose is kept
        ans = ans[:cut].rstrip(" ,;:")
    return ans or None


def _first_prose_word(s: str) -> int:
    """Index of the first plain word (3+ letters, not mathematics, outside braces), or -1."""
    for m in _PROSE_RE.finditer(s):
        w = m.group(0).lower()
        if w in MATH_WORDS or w in ("and", "or"):
            continue
        if s.count("{", 0, m.start()) == s.count("}", 0, m.start()):
            return m.start()
    return -1


def has_prose(s: str) -> bool:
    """True when ``s`` holds a plain word: sympy would read "because" as b*e*c*a*u*s*e."""
    return _first_prose_word(s) >= 0


def _looks_bare(text: str) -> bool:
    """One short line that is an answer rather than prose (at most one plain word, a unit)."""
    if "\n" in text or len(text) > 200:
        return False
    # words inside \text{...} count too: "\text{ dollars}" is one unit word.
    words = [w for w in _WORD_RE.findall(text) if w.lower() not in MATH_WORDS]
    return len(words) <= 1


def extract_answer(text: str, *, last_number: bool = False, allow_bare: bool = True) -> str | None:
    """The final answer stated in ``text`` (see the module docstring), or None. Never raises."""
    if not isinstance(text, str) or not text.strip():
        return None
    if "\\boxed" in text or "\\fbox" in text:
        return find_boxed(text)  # a box is the model's own final answer marker
    ans = _from_phrase(text)
    if ans is not None:
        return ans
    stripped = text.strip()
    if allow_bare and _looks_bare(stripped):
        return stripped
    if last_number:
        m = None
        for m in _LAST_NUMBER_RE.finditer(text):
            pass
        return m.group(0).rstrip(",") if m else None
    return None


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


_UNICODE = {"\u2212": "-", "\u2013": "-", "\u00d7": "\\times ", "\u00f7": "/", "\u03c0": "\\pi ",
            "\u221e": "\\infty ", "\u2264": "\\leq ", "\u2265": "\\geq ", "\u00b7": "\\cdot ",
            "\u221a": "\\sqrt ", "\u00b0": "", "\uff0c": ",", "\u2060": ""}
_SPACING_RE = re.compile(r"\\[,;:! ]|\\(?:displaystyle|left|right|big|Big|bigg|Bigg)(?![a-zA-Z])|~")
_DEGREE_RE = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|\\circ|\\degree")
_ASSIGN_RE = re.compile(r"^\s*[a-zA-Z](?:_\{?[a-zA-Z0-9]+\}?)?(?:\([a-z]\))?\s*(?:=|\\in(?![a-zA-Z]))"
                        r"\s*(.+)$", re.S)
_UNITS_RE = re.compile(r"^([-+]?(?:\d[\d,]*(?:\.\d+)?|\.\d+))\s*([a-zA-Z][a-zA-Z ./]*(?:\^\d)?)$")
_THOUSANDS_RE = re.compile(r"^[-+]?[1-9]\d{0,2}(?:,\d{3})+(?:\.\d+)?$")
_THOUSANDS_SPACE_RE = re.compile(r"^[-+]?[1-9]\d{0,2}(?: \d{3})+(?:\.\d+)?$")
_FRAC_CMD_RE = re.compile(r"\\[dt]?frac(?![a-zA-Z])")


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


def _fix_frac(s: str) -> str:
    """``\\dfrac12``, ``\\frac 1{2}`` -> ``\\frac{1}{2}`` (latex2sympy wants braces)."""
    out, pos = [], 0
    for m in _FRAC_CMD_RE.finditer(s):
        if m.start() < pos:
            continue
        a = _tex_arg(s, m.end())
        b = _tex_arg(s, a[1]) if a else None
        if not b:
            continue
        out.append(s[pos:m.start()] + "\\frac{" + a[0] + "}{" + b[0] + "}")
        pos = b[1]
    out.append(s[pos:])
    return "".join(out)


def normalize_answer(ans: str) -> str:
    """Canonical text of an extracted answer (still LaTeX-ish; no parsing happens here).

    Rules, in order:
    - math delimiters ``$..$``, ``\\(..\\)``, ``\\[..\\]``, markdown ``**`` and a wrapping
      ``\\boxed{}`` are removed; ``\\text{}``/``\\mathrm{}``... are replaced by their content;
    - spacing (``\\,`` ``\\!`` ``~``), ``\\left``/``\\right``, ``\\displaystyle`` go; ``\\dfrac``
      and ``\\tfrac`` become ``\\frac`` with braced arguments (``\\frac12`` -> ``\\frac{1}{2}``);
    - degrees (``^\\circ``) and the percent sign are dropped: "50\\%" is the number 50, never
      0.5 (no x100 leniency either way);
    - currency: ``\\$`` and any ``$`` left over are dropped ("$18" -> "18");
    - trailing periods and a leading single-variable assignment go ("x = 5" -> "5", "f(x) = 2x"
      -> "2x",
      "x \\in (0, 1)" -> "(0, 1)");
    - a number followed only by plain words is a number with a unit ("18 dollars" -> "18");
      words that are mathematics ("2 pi") are kept;
    - thousands separators: commas (or LaTeX ``{,}``, or single spaces / ``\\,``) are removed
      only when the *whole* answer is one number written in groups of exactly three digits
      after a leading 1-3 digit group ("1,000", "-12,345.5", "1\\,000" are numbers; "2, 3",
      "2,3", "1,00" and "(1,100)" are left alone and read as lists/tuples).
    """
    s = ans.strip()
    for k, v in _UNICODE.items():
        if k in s:
            s = s.replace(k, v)
    s = s.replace("**", "")
    s = strip_text_wrappers(s)
    while True:  # peel delimiters that wrap the whole answer
        t = s.strip().rstrip(".").strip()
        for a, b in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
            if len(t) >= len(a) + len(b) and t.startswith(a) and t.endswith(b):
                t = t[len(a):len(t) - len(b)].strip()
                break
        if t.startswith("\\boxed{") and match_braces(t, 6) == len(t) - 1:
            t = t[7:-1].strip()
        if t == s:
            break
        s = t
    s = _SPACING_RE.sub(" ", s)
    s = _DEGREE_RE.sub("", s)
    s = s.replace("\\%", "").replace("%", "").replace("\\$", "").replace("$", "")
    s = _fix_frac(s) if "frac" in s else s
    s = s.replace("\\le ", "\\leq ").replace("\\ge ", "\\geq ")
    s = " ".join(s.split()).rstrip(".").strip()
    m = _ASSIGN_RE.match(s)
    if m and "=" not in m.group(1):
        s = m.group(1).strip()
    if "=" in s:  # "6 + 1 = 7" -> "7" only when every side has the same value (verifiers/chains.py)
        s = collapse_chain(s)
    m = _UNITS_RE.match(s)
    if m and not any(w.lower() in MATH_WORDS for w in re.findall(r"[a-zA-Z]+", m.group(2))):
        if len(re.sub(r"[^a-zA-Z]", "", m.group(2))) >= 2:
            s = m.group(1)
    if "{,}" in s:
        s = s.replace("{,}", ",")  # LaTeX's 1{,}000
    if ("," in s and _THOUSANDS_RE.match(s)) or (" " in s and _THOUSANDS_SPACE_RE.match(s)):
        s = s.replace(",", "").replace(" ", "")
    return s
