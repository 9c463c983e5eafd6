"""Prompts shared by solving, evaluation and posing (one place, so train and eval agree)."""
from __future__ import annotations

import re
from fractions import Fraction
from typing import Sequence

from selfplay.backends.base import Messages

# The embedded 135M model rarely writes \boxed{} unless shown; one worked example fixes that.
# Its answer, 6.5, is one no default procedural generator can produce (their golds are integers,
# or fractions below 2 from fraction_add), so a completion that copies the example can never be
# labelled correct; the hygiene filter drops such copies too (copies_example).
SOLVE_EXAMPLE_QUESTION = "Tom has 2.5 liters of water and pours in 4 more liters. How many liters of water does he have?"
SOLVE_EXAMPLE_SOLUTION = "Tom starts with 2.5 liters and pours in 4 more, so 2.5 + 4 = 6.5. The answer is \\boxed{6.5}."
SOLVE_EXAMPLE_ANSWER = "6.5"
SOLVE_TEMPLATE = (
    "Solve the math problem. Think step by step, then write the final answer as \\boxed{{answer}}.\n\n"
    f"Problem: {SOLVE_EXAMPLE_QUESTION}\n"
    f"Solution: {SOLVE_EXAMPLE_SOLUTION.replace('{', '{{').replace('}', '}}')}\n\n"
    "Problem: {question}\n"
    "Solution:"
)
# Solving and evaluation stop where the model starts inventing the next problem: what follows a
# new "Problem:" is not a solution of this one (it used to become part of `chosen`). Backends cut
# the stop string from the stored text.
SOLVE_STOP: tuple[str, ...] = ("Problem:",)


# Program of thought (solve.mode "pot"): the path is a Python program that prints the answer; it
# runs in the sandbox and its last printed line is verified. Same worked example as above, so a
# copy prints 6.5 and is caught the same way. Of the prompt wordings measured on the embedded
# model (docs/verifiers.md, "Program of thought"), this one gave the most runnable programs.
POT_EXAMPLE_PROGRAM = "water = 2.5 + 4\nprint(water)"
POT_TEMPLATE = (
    "Write a Python program that solves the math problem and prints the final answer. "
    "Reply with only the code in a ```python block, no explanation.\n\n"
    f"Problem: {SOLVE_EXAMPLE_QUESTION}\n"
    f"```python\n{POT_EXAMPLE_PROGRAM}\n```\n\n"
    "Problem: {question}\n"
)
SOLVE_MODES: tuple[str, ...] = ("cot", "pot")  # the kinds of path; solve.mode "mixed" samples both


def solve_modes(mode: str) -> tuple[str, ...]:
    """The kinds of path solve.mode samples per problem, in sample-index order."""
    return SOLVE_MODES if mode == "mixed" else (mode,)


def solve_messages(question: str, mode: str = "cot") -> Messages:
    """The chat prompt for one reasoning path (also the `prompt` field of a pair)."""
    if mode not in SOLVE_MODES:
        raise ValueError(f"solve mode must be one of {SOLVE_MODES}, got {mode!r}")
    template = SOLVE_TEMPLATE if mode == "cot" else POT_TEMPLATE
    return [{"role": "user", "content": template.format(question=question.strip())}]


_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)(?:```|\Z)", re.S | re.I)


def extract_program(completion: str) -> str | None:
    """The program of a pot path: the first fenced code block (an unclosed one runs to the end),
    else the whole text when it is Python as written; None when there is no program."""
    m = _FENCE.search(completion)
    code = m.group(1) if m else completion
    if not code.strip():
        return None
    if m:
        return code
    try:
        compile(code, "<pot>", "exec")
    except (SyntaxError, ValueError):  # ValueError: a NUL byte in the text
        return None
    return code


# A run of this many words/numbers shared with the worked example is a copy, if the run holds one
# of the example's decimals (2.5, 6.5): a real problem may well ask "how many liters of water does".
_COPY_RUN = 6
_TOKEN = re.compile(r"[a-z]+|\d+(?:\.\d+)?")
_FRAC = re.compile(r"-?\\[dt]?frac\{(-?\d+)\}\{(\d+)\}")


def _runs(text: str) -> set[tuple[str, ...]]:
    toks = _TOKEN.findall(text.lower())
    return {tuple(toks[i:i + _COPY_RUN]) for i in range(len(toks) - _COPY_RUN + 1)}


_EXAMPLE_RUNS = {run for run in _runs(SOLVE_EXAMPLE_QUESTION) | _runs(SOLVE_EXAMPLE_SOLUTION)
                 if any("." in tok for tok in run)}


def _value(answer: str) -> Fraction | None:
    s = answer.strip().strip("$").replace(" ", "")
    m = _FRAC.fullmatch(s)
    if m:
        v = Fraction(int(m.group(1)), int(m.group(2))) if int(m.group(2)) else None
        return -v if v is not None and s.startswith("-") else v
    try:
        return Fraction(s)
    except (ValueError, ZeroDivisionError):
        return None


def copies_example(completion: str, extracted: str | None = None) -> bool:
    """True when a completion reproduces the solve prompt's worked example instead of solving its
    own problem: its final answer (`extracted`) is the example's value, or it shares a run of
    _COPY_RUN words/numbers holding 2.5 or 6.5 with the example's problem or solution."""
    if extracted is not None and _value(extracted) == Fraction(SOLVE_EXAMPLE_ANSWER):
        return True
    return not _EXAMPLE_RUNS.isdisjoint(_runs(completion))


POSE_TEMPLATE = (
    "Write one new math word problem similar to the examples, and a short Python program that "
    "computes its answer and prints only the final number.\n\n"
    "{examples}"
    "Now write a new one in exactly the same format.\n"
)

POSE_EXAMPLE = "Problem: {question}\nProgram:\n```python\n{program}\n```\n\n"


def pose_messages(examples: Sequence[tuple[str, str]]) -> Messages:
    """The chat prompt that asks the model for a new problem + program, from (question, program) shots."""
    shots = "".join(POSE_EXAMPLE.format(question=q.strip(), program=p.strip()) for q, p in examples)
    return [{"role": "user", "content": POSE_TEMPLATE.format(examples=shots)}]
