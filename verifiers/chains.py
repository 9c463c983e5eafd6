"""Arithmetic chains in a final answer: "6 + 1 = 7" means 7.

Small models often box the whole computation (\\boxed{6 + 1 = 7}). Policy: when an answer is a
chain of two or more variable-free arithmetic sides joined by "=", and every side evaluates to the
same exact value, the answer is that value (the last side's text). When the sides disagree
("12 + 7 = 9", "8 = 3 + 4") the chain is left alone, so it never equals a number: a wrong claim
anywhere in the chain is never labelled correct. Evaluation is exact (Fraction) over + - * / and
small integer powers, with size limits; anything else leaves the text unchanged.
"""
from __future__ import annotations

import ast
import re
from fractions import Fraction

_ALLOWED = re.compile(r"^[0-9+\-*/().\s]+$")
_FRAC = re.compile(r"\\frac\{([^{}]*)\}\{([^{}]*)\}")
MAX_SIDE_CHARS = 80


def _to_python(side: str) -> str:
    s = side.replace("\\times", "*").replace("\\cdot", "*").replace("×", "*").replace("\\div", "/")
    s = s.replace("÷", "/").replace("^", "**").replace("{", "(").replace("}", ")")
    return s


def _eval(node: ast.AST) -> Fraction:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return Fraction(str(node.value))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = _eval(node.operand)
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.BinOp):
        a, b = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Add):
            return a + b
        if isinstance(node.op, ast.Sub):
            return a - b
        if isinstance(node.op, ast.Mult):
            return a * b
        if isinstance(node.op, ast.Div):
            return a / b  # ZeroDivisionError is caught by the caller
        if isinstance(node.op, ast.Pow) and b.denominator == 1 and abs(b) <= 64 and abs(a) < 10 ** 6:
            return a ** int(b)
    raise ValueError("not plain arithmetic")


def evaluate_side(side: str) -> Fraction | None:
    """Exact value of one variable-free arithmetic side, or None."""
    s = side.strip()
    while True:  # \frac{a}{b} -> (a)/(b), innermost first
        t = _FRAC.sub(r"((\1)/(\2))", s)
        if t == s:
            break
        s = t
    s = _to_python(s)
    if not s or len(s) > MAX_SIDE_CHARS or not _ALLOWED.match(s):
        return None
    try:
        return _eval(ast.parse(s, mode="eval"))
    except (ValueError, SyntaxError, ZeroDivisionError, RecursionError, OverflowError):
        return None


def collapse_chain(answer: str) -> str:
    """'6 + 1 = 7' -> '7' when every side has the same exact value; otherwise unchanged."""
    if "=" not in answer or any(op in answer for op in ("<", ">", "\\le", "\\ge", "\\ne")):
        return answer
    sides = answer.split("=")
    if len(sides) < 2 or any(not s.strip() for s in sides):
        return answer
    values = [evaluate_side(s) for s in sides]
    if any(v is None for v in values) or len(set(values)) != 1:
        return answer
    return sides[-1].strip()
