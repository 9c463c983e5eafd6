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


def answer_value(answer: str) -> Fraction | None:
    """A bare numeric answer ("12", "-0.5", "\\frac{10}{3}", "-\\frac{1}{2}", "$6.5$") as a
    Fraction; None when it is not one."""
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
    if extracted is not None and answer_value(extracted) == Fraction(SOLVE_EXAMPLE_ANSWER):
        return True
    return not _EXAMPLE_RUNS.isdisjoint(_runs(completion))


# Posing (selfplay/pose/posing.py). A 135M model follows a pattern far better than an instruction, so
# every posing prompt puts the pattern in the assistant's mouth (a prefill the backend continues,
# selfplay.backends.base.chat_token_ids) and generation stops at the end of the one part asked:
# a question ends at its line's end, a program at its closing fence.
#   fewshot        `shots` seed questions, then "Problem:": a new question like them
#   mutation       `shots` seed questions of one kind (one generator or seed file, word problems
#                  first), then "Problem:": one more of that kind, new numbers, names and story
#   composition    two seed questions: one new question that takes both steps
#   program_first  `shots` seed programs, then an open fence: a new program; then the question it
#                  answers, from seed (program, question) shots
# A question's program (and the second witness's) comes from program_messages.
POSE_KINDS: dict[str, int | None] = {"fewshot": None, "mutation": None, "composition": 2, "program_first": None}
QUESTION_STOP = ("\n",)
PROGRAM_STOP = ("```",)
_ASK = {
    "fewshot": "Write new math word problems like these, with new numbers and names.{hint}",
    "mutation": "Write one more problem of the same kind as these, with new numbers, new names and a new story.{hint}",
    "composition": ("Combine these two problems into one new problem, so that solving it takes both "
                    "steps.{hint}\n\n{examples}"),
    "program_first": "Write a new short Python program like these, with new numbers, that prints one number.{hint}",
}
_FENCED = "```python\n{program}\n```\n\n"
_SOLVED = "Problem: {question}\nProgram:\n```python\n{program}\n```\n\n"


def level_hint(level: int) -> str:
    """The curriculum's ask at `level` (0 = as the examples): larger numbers, then more steps."""
    if level <= 0:
        return ""
    if level == 1:
        return " Make it a little harder: use larger numbers."
    steps = "one more step" if level == 2 else f"{level - 1} more steps"
    return f" Make it harder: use larger numbers and {steps}."


def pose_messages(kind: str, examples: Sequence[tuple[str, str]], level: int = 0) -> Messages:
    """The first posing call for `kind` from (question, program) seed shots: it yields a question
    (stop at QUESTION_STOP) or, for program_first, a program (stop at PROGRAM_STOP)."""
    if kind not in POSE_KINDS:
        raise ValueError(f"pose kind must be one of {sorted(POSE_KINDS)}, got {kind!r}")
    hint = level_hint(level)
    if kind == "program_first":
        shown = "".join(_FENCED.format(program=p.strip()) for _, p in examples)
        return [{"role": "user", "content": _ASK[kind].format(hint=hint)},
                {"role": "assistant", "content": shown + "```python\n"}]
    listed = "".join(f"Problem: {q.strip()}\n" for q, _ in examples)
    if kind in ("fewshot", "mutation"):
        return [{"role": "user", "content": _ASK[kind].format(hint=hint)},
                {"role": "assistant", "content": listed + "Problem:"}]
    return [{"role": "user", "content": _ASK[kind].format(hint=hint, examples=listed)},
            {"role": "assistant", "content": "Problem:"}]


def program_messages(examples: Sequence[tuple[str, str]], question: str) -> Messages:
    """A program for `question` after seed (question, program) shots; stop at PROGRAM_STOP."""
    shown = "".join(_SOLVED.format(question=q.strip(), program=p.strip()) for q, p in examples)
    return [{"role": "user", "content": "Write a short Python program that prints the answer to each problem."},
            {"role": "assistant", "content": shown + f"Problem: {question.strip()}\nProgram:\n```python\n"}]


def question_messages(examples: Sequence[tuple[str, str]], program: str) -> Messages:
    """The question a program answers, after seed (program, question) shots; stop at QUESTION_STOP."""
    shown = "".join(f"Program:\n```python\n{p.strip()}\n```\nProblem: {q.strip()}\n\n" for q, p in examples)
    return [{"role": "user", "content": "Write the math word problem that each program answers."},
            {"role": "assistant", "content": shown + f"Program:\n```python\n{program.strip()}\n```\nProblem:"}]
