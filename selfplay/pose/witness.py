"""The second witness of a posed gold (docs/posing.md, pose.witness): a question that states one
arithmetic expression is witnessed by its exact value; a second program written from the question
alone must print the same value. (The solver-majority witness runs after solving, in
selfplay.pair.pseudo.) A disagreement is counted as golds_disagree.
"""
from __future__ import annotations

import ast
import operator
import re
from collections import Counter
from fractions import Fraction
from typing import Any

from selfplay.config.enums import Witness, names
from selfplay.core.records import Problem
from selfplay.pose.checks import run_answer
from selfplay.prompts import answer_value
from selfplay_verifiers.normalize import strip_thousands

# auto: a second program always; then a question that states one arithmetic expression is
# witnessed by its exact value, any other question by the solver majority (docs/posing.md)
WITNESSES = names(Witness)  # pose.witness (selfplay/config/enums.py)

_WORD_OPS = ((r"\bmultiplied\s+by\b", "*"), (r"\bdivided\s+by\b", "/"), (r"\btimes\b", "*"),
             (r"\bplus\b", "+"), (r"\bminus\b", "-"), (r"[×x](?=\s*\d)", "*"), (r"÷", "/"))
_OPERAND = r"\(*\s*-?\d+(?:\.\d+)?\s*\)*"
_EXPRESSION = re.compile(rf"{_OPERAND}(?:\s*[-+*/]\s*{_OPERAND})+")
_ARITHMETIC = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def stated_expressions(question: str) -> list[str]:
    """The arithmetic expressions a question writes out ("What is 7 + 5 - 4 + 2?", "3 times 4"):
    runs of numbers joined by + - * / (and plus, minus, times, multiplied by, divided by, x)."""
    text = strip_thousands(question)
    for pattern, op in _WORD_OPS:
        text = re.sub(pattern, op, text, flags=re.I)
    return [m.group().strip() for m in _EXPRESSION.finditer(text)]


def expression_value(expr: str) -> Fraction | None:
    """The exact value of an arithmetic expression of numbers, + - * / and parentheses (Fractions,
    so 0.1 + 0.2 is 3/10); None when it is not one or divides by zero."""
    def ev(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return Fraction(str(node.value))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -ev(node.operand)
        if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
            return _ARITHMETIC[type(node.op)](ev(node.left), ev(node.right))
        raise ValueError("not arithmetic")

    try:
        return ev(ast.parse(expr, mode="eval"))
    except (SyntaxError, ValueError, ZeroDivisionError, RecursionError):
        return None


def expression_witness(p: Problem, reasons: Counter[str]) -> bool | None:
    """The exact witness of a question that states one arithmetic expression: its value must be
    the gold (recorded in p.meta["expression_witness"]; a mismatch counts as golds_disagree).
    None when the question states no expression or several (another route must witness it)."""
    exprs = stated_expressions(p.question)
    value = expression_value(exprs[0]) if len(exprs) == 1 else None
    if value is None:
        return None
    agree = value == answer_value(p.answer)
    p.meta["expression_witness"] = {"expression": exprs[0], "value": str(value), "agree": agree}
    if not agree:
        reasons["golds_disagree"] += 1
    return agree


def program_witness(p: Problem, program: str | None, sandbox: Any, reasons: Counter[str]) -> bool:
    """Run the second program; record it in p.meta["witness"]; True when it prints p's gold."""
    answer, why = (None, "no_program") if program is None else run_answer(sandbox, program)[:2]
    agree = answer is not None and answer == p.answer  # both canonical (checks.posed_answer)
    p.meta["witness"] = {"route": "program", "program": program, "answer": answer, "agree": agree}
    if answer is None:
        reasons[f"witness_{why}"] += 1
    elif not agree:
        reasons["golds_disagree"] += 1
    return agree
