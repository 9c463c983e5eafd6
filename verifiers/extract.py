"""Pull the final answer out of a model completion (pure Python, linear time, never raises).
Over 350 lines on purpose: the extraction rules are one ordered cascade, read top to bottom.

``find_answer(text)`` returns ``(answer, problem)``; ``problem`` is ``"ambiguous"`` when the
completion states different final answers. Order of precedence (the first rule that finds
something wins):

1. Boxes (``\\boxed{...}`` / ``\\fbox{...}``, braces matched, ``\\boxed 5`` works). Boxes
   separated only by a connector (punctuation, math delimiters, ``\\quad``, "and", at most three
   short words such as "for part (a) and") form one answer, a list: ``\\boxed{1}, \\boxed{2}``
   is "1, 2". The last such group is the answer. If the last box is never closed (a truncated
   completion) the result is None.
2. The last explicit statement: "The answer is ...", "Final answer: ...", "Answer: ...",
   GSM8K's "#### ...", or "Answer" followed by a math span (``Answer \\[ 9 \\]``). The answer
   runs to the end of its line, is cut at a sentence-ending period, and before the first prose
   word; "7 + 13, which is 18" is 18 (the value stated last wins); "The volume of $V$ is 120"
   is 120.
3. A completion that is itself a bare answer (one short line, at most one plain word), or a
   short one-line completion with exactly one math span ("Therefore $x \\geq 5$.").
4. Only with ``last_number=True``: the last number in the text.

Ambiguity: every box group and every explicit statement that reads as mathematics is a final
answer statement. If any of them differs from the chosen answer (after normalization), the
completion is ambiguous: "the answer is 8 ... So, the answer is 9" is never correct. Identical
repeats are fine. ``normalize_answer`` (``selfplay_verifiers.normalize``) then canonicalizes the text.
"""
from __future__ import annotations

import re
import unicodedata
from fractions import Fraction

from selfplay_verifiers.normalize import normalize_answer
from selfplay_verifiers.numbers import parse_number
from selfplay_verifiers.texutil import MATH_WORDS, match_braces, strip_text_wrappers

__all__ = ["extract_answer", "find_answer", "find_boxed", "box_groups", "normalize_answer", "answer_key",
           "strip_text_wrappers", "has_prose", "match_braces", "MATH_WORDS", "AMBIGUOUS"]

AMBIGUOUS = "ambiguous"
_MAX_PHRASE = 400  # chars kept after "the answer is"; real answers are far shorter
_MAX_STATEMENTS = 64  # statements compared for ambiguity; bounded work on degenerate text
_PHRASE_RE = re.compile(
    r"(?:answer(?:\s*\*{1,2})?\s*(?:(?:is|was|would\s+be|will\s+be|should\s+be)(?![\w'])|=|:)(?:\s*\*{1,2})?"
    r"\s*:?|####)[ \t]*", re.IGNORECASE)  # anchors only: the answer is read after each one
_ANSWER_MATH_RE = re.compile(r"\banswer\b[ \t:]*(?=\$|\\\[|\\\()", re.IGNORECASE)
_FILLER_RE = re.compile(r"^(?:(?:approximately|about|around|roughly|exactly|just|simply|equal\s+to|"
                        r"given\s+by|then|therefore|thus)\s+|\\approx\s*|~\s*)+", re.IGNORECASE)
_WHICH_RE = re.compile(r",?\s*\b(?:which|that)\s+(?:is|equals|gives)\s+", re.IGNORECASE)
_VERB_RE = re.compile(r"(?:is|are|was|equals|gives|makes)\s+(?:equal\s+to\s+)?", re.IGNORECASE)
_IS_RE = re.compile(r"\s(?:is|are|equals|=|by|to)\s+", re.IGNORECASE)
# A concluding sentence: "Therefore, ...", "So, ..." (or the start of a one-line completion).
_CONCLUSION_RE = re.compile(r"\b(?:therefore|thus|hence|in\s+other\s+words)\b,?\s+|"
                            r"(?:^|(?<=[.!?\n]))\s*so\b,?\s+|\b(?-i:So),\s+|^\s*(?=\S)",
                            re.IGNORECASE)
_NUMBER_RE = re.compile(r"-?\d[\d,]*(?:\.\d+)?%?|\$[^$]+\$")
_SENTENCE_END = re.compile(r"\.(?=\s|$)")
_LAST_NUMBER_RE = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_WORD_RE = re.compile(r"(?<![\\a-zA-Z])[a-zA-Z]{2,}")
_FUNCTION_WORD_RE = re.compile(r"\s+(?:in|at|on|of|to|by|as|is|it|an|a)$", re.IGNORECASE)
_PROSE_RE = re.compile(r"(?<![\\a-zA-Z])[a-zA-Z]{3,}(?![a-zA-Z])")
_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![a-zA-Z])")
_CONNECTOR_DROP_RE = re.compile(r"\\(?:text|textbf|mbox|textnormal|q?quad|[()\[\],;! ])|[$&{}.,;:+\s-]|"
                                r"[a-zA-Z](?:_\{?\w+\}?)?\s*=|\b(?:and|or)\b")
_RETRACT_RE = re.compile(r"\b(?:I\s+apologi[sz]e\s+for\s+(?:the|my|a)\s+(?:mistake|error)|I\s+made\s+"
                         r"(?:a|an)\s+(?:mistake|error)|let\s+me\s+correct\s+(?:it|this|that|myself)|"
                         r"(?:previous|above)\s+(?:answer|solution)\s+(?:is|was)\s+(?:wrong|incorrect))",
                         re.IGNORECASE)
# Words that turn the text between two boxes into a correction, not a connector.
_CORRECTION_WORDS = frozenset("then wait no not but actually correct correcting correction "
                              "instead however sorry recheck hmm oops mistake myself so".split())
# $$..$$ and \[..\] may span lines; inline $..$ (an escaped \$ inside is text) and \(..\) may not.
_MATH_SPAN_RE = re.compile(r"\$\$(.+?)\$\$|\\\[(.+?)\\\]|"
                           r"(?<![\\$])\$((?:\\\$|[^$\n])+?)(?<!\\)\$|\\\(([^\n]+?)\\\)", re.S)


def _boxes(text: str) -> list[tuple[int, int, str | None]]:
    """Every box: (start, end, content); content None when the box is never closed."""
    out: list[tuple[int, int, str | None]] = []
    for m in _BOX_RE.finditer(text):
        if out and m.start() < out[-1][1]:
            continue  # a box inside a box: the outer one is the statement
        i, n = m.end(), len(text)
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] == "{":
            close = match_braces(text, i)
            if close < 0:
                out.append((m.start(), n, None))
                break
            out.append((m.start(), close + 1, text[i + 1:close].strip()))
        else:
            t = re.match(r"[^\s$]+", text[i:i + _MAX_PHRASE])
            out.append((m.start(), i + (len(t.group(0)) if t else 0), t.group(0) if t else ""))
        if len(out) > 4 * _MAX_STATEMENTS:
            out = out[-_MAX_STATEMENTS:]  # keep the tail: the final answer is there
    return out


def _connected(between: str) -> bool:
    """Text between two boxes that joins them into one answer ("and", ",", ``\\quad``...)."""
    if len(between) > 80:
        return False
    rest = _CONNECTOR_DROP_RE.sub(" ", between)
    words = rest.lower().split()
    return (len(words) <= 3 and not re.search(r"\d", rest)
            and not any(w.strip("(),:") in _CORRECTION_WORDS for w in words))


def _box_groups(text: str) -> list[tuple[int, str | None]]:
    """(start, answer) of each group of connected boxes ("1, 2"); None for an unclosed box."""
    groups: list[tuple[int, list[str]]] = []
    prev_end = None
    for start, end, content in _boxes(text):
        if content is None:
            return [(p, ", ".join(g)) for p, g in groups] + [(start, None)]
        if prev_end is not None and groups and _connected(text[prev_end:start]):
            if content and content not in groups[-1][1]:
                groups[-1][1].append(content)
        else:
            groups.append((start, [content] if content else []))
        prev_end = end
    return [(p, ", ".join(g)) for p, g in groups]


def box_groups(text: str) -> list[str | None]:
    """Each group of connected boxes as one answer text ("1, 2"); None for an unclosed box."""
    return [a for _, a in _box_groups(text)]


def find_boxed(text: str) -> str | None:
    """The final box group's content; None if absent, empty or unclosed."""
    groups = box_groups(text)
    return groups[-1] or None if groups else None


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


def _read_statement(text: str, at: int) -> str | None:
    """The answer stated after an anchor ending at ``at`` (see the module docstring)."""
    ans = text[at:at + _MAX_PHRASE].split("\n", 1)[0]
    m = _SENTENCE_END.search(ans)
    if m:
        ans = ans[:m.start()]
    ans = _FILLER_RE.sub("", re.sub(r'^(?:\\?"|\*)+|(?:\\?"|\*)+$', "", ans.strip()).strip())
    if _first_prose_word(ans) == 0:  # "The volume of $V$ is 120" -> "120"
        last = None
        for last in _IS_RE.finditer(ans):
            pass
        if last is not None:
            ans = ans[last.end():]
        else:  # "Jane started growing Sphere 3 hours ago": a sentence with one value states it
            values = _NUMBER_RE.findall(ans)
            if len(values) != 1:
                return ans.strip() or None
            ans = values[0]
    which = None
    for which in _WHICH_RE.finditer(ans):
        pass
    if (which is not None and which.start() > 0
            and _first_prose_word(ans[which.end():]) != 0):  # "7 + 13, which is 18" is 18
        ans = ans[which.end():]
    cut = _first_prose_word(ans)
    verb = _VERB_RE.match(ans, cut) if cut > 0 else None
    if verb and _first_prose_word(ans[verb.end():]) != 0:
        ans, cut = ans[verb.end():], _first_prose_word(ans[verb.end():])  # "7 + 13 equals 10"
    if cut > 0:  # "18 because 9*2 = 18" -> "18"; an answer that starts with prose is kept
        # a short function word before the prose is part of the sentence, not a unit:
        # "12 in the problem" is 12 (not 12 inches), "12 cm in total" is 12 cm
        ans = _FUNCTION_WORD_RE.sub("", ans[:cut].rstrip(" ,;:")).rstrip(" ,;:")
    return re.sub(r'^(?:\\?"|\*)+|(?:\\?"|\*)+$', "", ans.strip()).strip() or None


def _math_span(text: str, at: int) -> str | None:
    m = _MATH_SPAN_RE.match(text[at:at + 4 * _MAX_PHRASE])  # a window: linear on huge text
    if not m:
        return None
    return next(g for g in m.groups() if g is not None).strip() or None


def _statements(text: str) -> list[tuple[int, str]]:
    """(position, answer) of every explicit statement, in text order."""
    out = [(m.start(), _read_statement(text, m.end())) for m in _PHRASE_RE.finditer(text)]
    out += [(m.start(), _math_span(text, m.end())) for m in _ANSWER_MATH_RE.finditer(text)]
    out = sorted((p, a) for p, a in out if a)
    return out[-_MAX_STATEMENTS:]


def _key(ans: str) -> str:
    """Comparable form of a statement (normalized; list order ignored) for the ambiguity test."""
    if len(ans) > 4000:
        return ans  # over the checker's own size limit: compared verbatim, never normalized
    norm = normalize_answer(ans)
    if "," in norm and "(" not in norm and "[" not in norm:
        return ",".join(sorted(x.strip() for x in norm.strip("{}\\").split(",")))
    return norm.replace(" ", "")


_KEY_SPACE_RE = re.compile(r"(?<![A-Za-z0-9]) | (?![A-Za-z0-9])")  # a space not between two words
_KEY_CASE_RE = re.compile(r"(\\[A-Za-z]+)|[A-Z]+")  # capitals outside command names


def _number_text(v: Fraction) -> str:
    """An exact value's one spelling: 12, -0.5 (a terminating decimal), else -1/3."""
    if v.denominator == 1:
        return str(v.numerator)
    rest, twos, fives = v.denominator, 0, 0
    while rest % 2 == 0:
        rest, twos = rest // 2, twos + 1
    while rest % 5 == 0:
        rest, fives = rest // 5, fives + 1
    if rest != 1:
        return f"{v.numerator}/{v.denominator}"
    n = max(twos, fives)  # digits after the point
    digits = str(abs(v.numerator) * 10 ** n // v.denominator).rjust(n + 1, "0")
    return ("-" if v < 0 else "") + digits[:-n] + "." + digits[-n:]


def _atom_key(s: str) -> str:
    num = parse_number(s)
    if num is not None:
        return ("-\\infty" if num.inf < 0 else "\\infty") if num.inf else _number_text(num.value)
    s = _KEY_SPACE_RE.sub("", s.strip())
    return _KEY_CASE_RE.sub(lambda m: m.group(1) or m.group(0).lower(), s)


def answer_key(answer: str | None) -> str | None:
    """The one comparable form of an extracted answer, for every vote (maj@k at evaluation, the
    pseudo-label majority, answer diversity): two answers with one key are one vote. None for a
    missing or empty answer. Cheap and exact, never sympy: ``normalize_answer`` (delimiters,
    boxes, ``x =``, units, percent, thousands separators), then a number's value in one spelling
    ("1,000" = "1000" = "1000.0"; "\\frac{1}{2}" = "1/2" = "0.5"; "2 1/2" = "2.5"; thirds stay
    "1/3"), spaces only where they separate two words, letters case-folded as the checker reads
    them (``X`` = ``x``; command names kept), and a plain list sorted ("2, 1" = "1,2") as the
    checker ignores its order. Equal keys imply equivalent answers; the converse needs the
    checker ("0.3333" and "1/3" are two keys)."""
    if answer is None:
        return None
    text = str(answer).strip()
    if len(text) > 4000:
        return text  # over the checker's own size limit: compared verbatim, never normalized
    norm = normalize_answer(text)
    if not norm.isascii():
        norm = unicodedata.normalize("NFKC", norm)
    if not norm.strip():
        return None
    if "," in norm and not any(c in norm for c in "([") and parse_number(norm) is None:
        return ",".join(sorted(_atom_key(x) for x in norm.strip("{}\\").split(",")))
    return _atom_key(norm)


def _looks_bare(text: str) -> bool:
    """One short line that is an answer rather than prose (at most one plain word, a unit)."""
    if "\n" in text or len(text) > 200:
        return False
    # words inside \text{...} count too: "\text{ dollars}" is one unit word.
    words = [w for w in _WORD_RE.findall(text) if w.lower() not in MATH_WORDS]
    return len(words) <= 1


def _single_span(text: str) -> str | None:
    """The math span of a short completion that has exactly one ("Thus $x \\leq 2$ holds.")."""
    if len(text) > 300 or text.count("\n") > 2:
        return None
    if (text.count("$") - text.count("\\$")) % 2:
        return None  # an odd number of $: some are currency ("$48 - 144 = $22"), spans are guesses
    spans = _MATH_SPAN_RE.findall(text)
    if len(spans) != 1:
        return None
    return next(g for g in spans[0] if g).strip() or None


def _conclusion(text: str) -> str | None:
    """The value of a final "Therefore/So/Thus ... is X." sentence (or of a one-line
    completion "the number is 10 which is 1,000.99"), when no later sentence has a number."""
    tail = text[-_MAX_PHRASE:]
    last = None
    for last in _CONCLUSION_RE.finditer(tail):
        pass
    if last is None or (last.start() == 0 and len(text) > len(tail)):
        return None
    rest = tail[last.end():]
    end = _SENTENCE_END.search(rest)
    if end and re.search(r"\d", rest[end.end():]):
        return None  # a number after the conclusion: it is not the last word
    sentence = rest[:end.start() if end else None]
    verb = r"\s(?:is|are|equals|by|to)\s" if last.group(0).strip() else r"\sis\s"
    if not has_prose(sentence) or not re.search(verb, sentence):
        return None  # a conclusion states what something is: "... is 2/3"
    ans = _read_statement(tail, last.end())
    return ans if ans and not has_prose(ans) and re.search(r"[\d\\]", ans) else None


def _withdrawn_before(text: str, positions: list[int]) -> int:
    """Position of the last explicit retraction ("I apologize for the mistake ... Let me correct
    it") that is followed by a new statement; statements before it are withdrawn, not
    ambiguous. 0 when there is none."""
    last = None
    for last in _RETRACT_RE.finditer(text):
        pass
    if last is None or not any(p >= last.end() for p in positions):
        return 0
    return last.end()


def find_answer(text: str, *, last_number: bool = False,
                allow_bare: bool = True) -> tuple[str | None, str | None]:
    """(answer, problem) for a completion; problem is None, ``AMBIGUOUS``, or "error" (a bug
    met on odd input: reported, never raised)."""
    try:
        return _find_answer(text, last_number, allow_bare)
    except Exception:
        return None, "error"


def _find_answer(text: str, last_number: bool, allow_bare: bool) -> tuple[str | None, str | None]:
    if not isinstance(text, str) or not text.strip():
        return None, None
    has_box = "\\boxed" in text or "\\fbox" in text
    groups = _box_groups(text) if has_box else []
    if groups and groups[-1][1] is None:
        return None, None  # truncated while writing the answer: do not guess
    statements = _statements(text)
    retracted = _withdrawn_before(text, [p for p, a in groups if a] + [p for p, _ in statements])
    stated = [a for p, a in groups if a and p >= retracted]
    phrases = [a for p, a in statements if p >= retracted]
    answer = stated[-1] if stated else (phrases[-1] if phrases else None)
    if answer is not None:
        key = _key(answer)
        others = stated + [p for p in phrases if "\\boxed" not in p and not has_prose(p)]
        if any(_key(o) != key for o in others):
            return answer, AMBIGUOUS
        return answer, None
    if has_box:
        return None, None  # only empty boxes: the model stated nothing
    stripped = text.strip()
    if allow_bare and _looks_bare(stripped):
        return stripped, None
    if allow_bare:
        span = _single_span(stripped) or _conclusion(stripped)
        if span is not None:
            return span, None
    if last_number:
        m = None
        for m in _LAST_NUMBER_RE.finditer(text):
            pass
        return (m.group(0).rstrip(","), None) if m else (None, None)
    return None, None


def extract_answer(text: str, *, last_number: bool = False, allow_bare: bool = True) -> str | None:
    """The final answer stated in ``text`` (see the module docstring), or None when there is
    none or the completion is ambiguous (``find_answer`` tells the two apart)."""
    ans, problem = find_answer(text, last_number=last_number, allow_bare=allow_bare)
    return None if problem else ans
