"""Prompts shared by solving, evaluation and posing (one place, so train and eval agree)."""
from __future__ import annotations

from typing import Sequence

from selfplay.backends.base import Messages

# The embedded 135M model rarely writes \boxed{} unless shown; one worked example fixes that.
SOLVE_TEMPLATE = (
    "Solve the math problem. Think step by step, then write the final answer as \\boxed{{answer}}.\n\n"
    "Problem: Tom has 3 apples and buys 4 more. How many apples does he have?\n"
    "Solution: Tom starts with 3 apples and buys 4 more, so 3 + 4 = 7. The answer is \\boxed{{7}}.\n\n"
    "Problem: {question}\n"
    "Solution:"
)


def solve_messages(question: str) -> Messages:
    """The chat prompt for one reasoning path (also the `prompt` field of a pair)."""
    return [{"role": "user", "content": SOLVE_TEMPLATE.format(question=question.strip())}]


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
