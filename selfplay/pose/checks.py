"""The posing checks (docs/posing.md): is a posed question a question with one numeric gold, does
its program compute that gold from the question's numbers, and is what it prints an exact number.

check_posed accepts a posed problem only if: the question is a question (it ends with "?") and not
ill-posed (yes/no, an unknown such as 4x, two questions, a stated answer); every number literal of
its program appears in the question (apart from a few common constants), at least one of the
question's numbers is used (a program that prints 7 for "What is 5 - 1?" would give a wrong gold)
and every number the question writes in digits is; the program computes something, runs in the
sandbox, is deterministic (two runs print the same) and prints exactly one parseable number that is
exact (a float artefact such as 0.30000000000000004 is "inexact_output"); the question is not a
duplicate of one already seen. Every rejection has a reason.
"""
from __future__ import annotations

import io
import re
import tokenize
from fractions import Fraction
from typing import Any

from selfplay.verify.label import printed_lines, program_answer
from selfplay_seeds.text import normalize_question  # the one normaliser (operators kept): also pose dedup's
from selfplay_verifiers.normalize import strip_thousands

MAX_QUESTION_CHARS = 600
_MARKER = re.compile(r"(?:New\s+)?(?:Problem|Question)\s*:\s*(?:\*\*)?", re.I)
_QNUM = re.compile(r"(?<![\w.])\d+(?:\.\d+)?")
_WORDS = {w: i for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve "
                                      "thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty".split())}
# literals a program may use without the question stating them (rounding, percent, unit steps)
COMMON_CONSTANTS = frozenset({Fraction(0), Fraction(1), Fraction(2), Fraction(10), Fraction(100)})


# ---------------------------------------------------------------- the question

def clean_question(text: str) -> str | None:
    """The question in a posing completion's line: after a last "Problem:"/"Question:" marker,
    cut after its last "?" (chatter after the question, "What is 5 - 4? Python Code:", is not
    part of it), whitespace and bold marks collapsed; None when nothing is left."""
    head = text.replace("**", " ")
    markers = list(_MARKER.finditer(head))
    if markers:  # "Here is a new problem. Question: What is ...?" -> the part after the last marker
        head = head[markers[-1].end():]
    if "?" in head:
        head = head[:head.rfind("?") + 1]
    return " ".join(head.split()) or None


def question_numbers(question: str) -> set[Fraction]:
    """Numbers a question states: digits (1,000 = 1000) and the words zero..twenty."""
    nums = digit_numbers(question)
    nums.update(Fraction(_WORDS[w]) for w in re.findall(r"[a-z]+", question.lower()) if w in _WORDS)
    return nums


def digit_numbers(question: str) -> set[Fraction]:
    """The numbers a question writes in digits (1,000 = 1000): a program must use every one."""
    return {Fraction(m.group()) for m in _QNUM.finditer(strip_thousands(question))}


_YES_NO = re.compile(r"^(?:is|are|does|do|did|can|could|will|would|was|were|should|has|have)\b", re.I)
_VARIABLE = re.compile(r"\b\d+[a-z]\b")  # 4x, 2y (5th, 2nd and 3rd have two letters)


def ill_posed(question: str) -> str | None:
    """Why a question cannot have one numeric gold, as seen from the embedded model: a yes/no
    question ("Is 200 a multiple of 4?" got gold 0), two questions in one, an unknown ("What is 4x + 1?" got 5), or a
    question that states an answer ('The answer to "What is 27 minus 1?" is 27. How many...')."""
    if _YES_NO.match(question.strip()):
        return "yes_no_question"
    if len(re.findall(r"\b(?:what|how\s+many|how\s+much|which)\b", question, re.I)) > 1:
        return "two_questions"  # "What is 5 - 2, and what is 5?" got gold 3
    if _VARIABLE.search(question):
        return "has_variable"
    if re.search(r"\banswer", question, re.I):
        return "mentions_answer"
    return None


# ---------------------------------------------------------------- the program

def program_numbers(program: str) -> set[Fraction] | None:
    """Number literals of a Python program (tokenized: names like x1 and strings do not count);
    None if it does not tokenize."""
    out: set[Fraction] = set()
    try:
        for tok in tokenize.generate_tokens(io.StringIO(program).readline):
            if tok.type == tokenize.NUMBER:
                try:
                    out.add(Fraction(tok.string.replace("_", "")))
                except (ValueError, ZeroDivisionError):
                    return None  # hex, complex...: not a plain arithmetic literal
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return None
    return out


_OPS = re.compile(r"\*\*|//|[-+*/%]")


def program_steps(program: str) -> int:
    """Arithmetic steps of a posed program: its binary operators (a - b counts; -3 counts too)."""
    try:
        return sum(1 for tok in tokenize.generate_tokens(io.StringIO(program).readline)
                   if tok.type == tokenize.OP and _OPS.fullmatch(tok.string))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return 0


# ---------------------------------------------------------------- what the program printed

_NUMBER = re.compile(r"^-?\d+(?:\.\d+)?(?:/\d+)?$")
# A printed decimal this short is the value the program meant: Python prints the shortest text
# that round-trips, so 0.1 prints "0.1". Longer ones are binary-float artefacts
# (3.3333333333333335, 0.30000000000000004) that must not become golds as printed.
MAX_EXACT_DECIMALS = 6
MAX_DENOMINATOR = 1000


def canonical_number(text: str) -> tuple[str | None, str]:
    """(gold, "ok") for a printed answer that is one exact number, normalised (12.0 -> 12,
    6/4 -> \\frac{3}{2}, 3.3333333333333335 -> \\frac{10}{3}); else (None, reason):
    "unparseable_output", or "inexact_output" for a long float that is not the nearest double of
    a fraction with denominator <= MAX_DENOMINATOR (0.30000000000000004: 3/10 prints as 0.3)."""
    if not _NUMBER.match(text) or len(text) > 40:
        return None, "unparseable_output"
    try:
        v = Fraction(text)
    except (ValueError, ZeroDivisionError):
        return None, "unparseable_output"
    if "." in text and len(text.partition(".")[2]) > MAX_EXACT_DECIMALS:
        near = v.limit_denominator(MAX_DENOMINATOR)
        if float(near) != float(text):  # the printed float is not near's own double: inexact
            return None, "inexact_output"
        v, text = near, ""
    if v.denominator == 1:
        return str(v.numerator), "ok"
    if "." in text:
        return text.rstrip("0").rstrip("."), "ok"
    sign = "-" if v < 0 else ""
    return f"{sign}\\frac{{{abs(v.numerator)}}}{{{v.denominator}}}", "ok"


def posed_answer(stdout: str) -> tuple[str | None, str]:
    """(gold, "ok") for a posed program's output: the answer it printed (program_answer, as for
    a pot path) must be the only line it printed and one exact number (canonical_number); else
    (None, reason): "no_output", "unparseable_output" or "inexact_output"."""
    answer = program_answer(stdout)
    if answer is None:
        return None, "no_output"
    if len(printed_lines(stdout)) != 1:
        return None, "unparseable_output"
    return canonical_number(answer)


def canonical_answer(stdout: str) -> str | None:
    """The gold of posed_answer, or None when it rejects the output."""
    return posed_answer(stdout)[0]


def run_answer(sandbox: Any, program: str) -> tuple[str | None, str, Any]:
    """(answer, "ok", run) for a program that runs and prints one exact number (posed_answer);
    else (None, reason, run): "program_<verdict reason>" for a failed run, or posed_answer's."""
    run = sandbox.run(program)
    if run.verdict.label != "correct":
        return None, f"program_{run.verdict.reason}", run
    answer, reason = posed_answer(run.stdout)
    return answer, reason, run


# ---------------------------------------------------------------- one posed problem

def check_posed(question: str | None, program: str | None, sandbox: Any, seen: set[str],
                require_program: bool = True) -> tuple[str | None, str]:
    """(answer, "ok") or (None, rejection reason) for one posed problem (the module docstring).
    Without a program and with require_program=False: ("", "unlabelled"), a question whose gold
    the round's majority vote decides (selfplay.pair.pseudo)."""
    if not question or len(question) < 8:  # "What is 5 - 4?" is a question
        return None, "no_question"
    if len(question) > MAX_QUESTION_CHARS:
        return None, "question_too_long"
    if not question.rstrip().endswith("?"):
        return None, "not_a_question"
    ill = ill_posed(question)
    if ill:
        return None, ill
    if normalize_question(question) in seen:
        return None, "duplicate"
    if not program:
        return (None, "no_program") if require_program else ("", "unlabelled")
    used, stated = program_numbers(program), question_numbers(question)
    telling = (stated - COMMON_CONSTANTS) or stated  # "What is 1 + 2?" has only small numbers
    if used is None or not used - COMMON_CONSTANTS <= stated or not used & telling:
        return None, "program_ignores_question"
    if not digit_numbers(question) <= used:  # "What is 7 + 5 - 4 + 2?" -> print(7 + 5 + 2): 14
        return None, "question_number_unused"
    if program_steps(program) == 0:  # print(111) for "What is 111?": nothing to solve
        return None, "no_computation"
    answer, reason, first = run_answer(sandbox, program)
    if answer is None:
        return None, reason
    second = sandbox.run(program)
    if second.verdict.label != "correct" or second.stdout != first.stdout:
        return None, "nondeterministic"
    return answer, "ok"
