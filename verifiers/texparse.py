"""A small, fast parser for the LaTeX most answers are written in; sympy out.

latex2sympy2_extended's ANTLR parser costs 3-30 ms per answer in Python; this recursive-descent
parser handles the common subset in a fraction of a millisecond and raises ``Unsupported`` for
anything else, which then goes to latex2sympy. It must read what it accepts exactly the way
latex2sympy does (a gold may take one parser and the prediction the other):

- numbers (decimals exact), single letters (``e`` is Euler's number; other letters are plain
  symbols, lower-cased, so ``E`` is the symbol ``e`` as in latex2sympy), ``\\pi``;
- ``+ - * / \\cdot \\times``, juxtaposition (implicit multiplication binds tighter than ``/``:
  ``1/2x`` is ``1/(2x)``), unary minus below powers (``-x^2`` is ``-(x^2)``);
- ``^`` with a braced or one-character exponent, ``( )``, ``{ }``, ``\\frac{}{}``,
  ``\\sqrt{}``, ``\\sqrt[n]{}``.
"""
from __future__ import annotations

import re

import sympy

__all__ = ["Unsupported", "parse_simple"]

_TOKEN_RE = re.compile(r"\s*(\d+\.\d*|\.\d+|\d+|\\[a-zA-Z]+|[a-zA-Z]|[{}()\[\]^*/+\-]|\S)")
_MUL = {"*", "\\cdot", "\\times"}
_MAX_TOKENS = 200


class Unsupported(ValueError):
    """Outside the subset: use the full parser."""


def _tokens(s: str) -> list[str]:
    toks = _TOKEN_RE.findall(s)
    if len(toks) > _MAX_TOKENS or "".join(toks) != re.sub(r"\s+", "", s):
        raise Unsupported(s)
    return toks


class _Parser:
    def __init__(self, toks: list[str]) -> None:
        self.t, self.i = toks, 0

    def peek(self) -> str | None:
        return self.t[self.i] if self.i < len(self.t) else None

    def take(self, want: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (want is not None and tok != want):
            raise Unsupported(f"expected {want!r}, got {tok!r}")
        self.i += 1
        return tok

    def expr(self):
        terms = [self.term()]
        while self.peek() in ("+", "-"):
            op = self.take()
            t = self.term()
            terms.append(-t if op == "-" else t)
        return sympy.Add(*terms)

    def term(self):
        value = self.implicit()
        while self.peek() in _MUL or self.peek() == "/":
            op = self.take()
            rhs = self.implicit()
            value = value / rhs if op == "/" else value * rhs
        return value

    def implicit(self):
        if self.peek() in ("-", "+"):
            sign = self.take()
            v = self.implicit()
            return -v if sign == "-" else v
        factors = [self.power()]
        while self._starts_atom(self.peek()):
            if self.t[self.i - 1][0].isdigit() and self.peek()[0].isdigit():
                raise Unsupported("digits after digits")  # "2 3": not ours to decide
            factors.append(self.power())
        return sympy.Mul(*factors)

    @staticmethod
    def _starts_atom(tok: str | None) -> bool:
        if tok is None:
            return False
        return (tok[0].isdigit() or tok[0] == "." or tok.isalpha() or tok in ("(", "{")
                or tok in ("\\frac", "\\dfrac", "\\sqrt", "\\pi"))

    def power(self):
        base = self.atom()
        if self.peek() == "^":
            self.take()
            tok = self.peek()
            if tok == "{":
                exp = self.group()
            elif tok is not None and len(tok) == 1 and tok.isalnum():
                exp = self.atom()
            else:
                raise Unsupported("exponent form")
            if self.peek() == "^":
                raise Unsupported("double superscript")
            if base is sympy.E:
                return sympy.exp(exp)
            return sympy.Pow(base, exp)
        return base

    def group(self):
        self.take("{")
        v = self.expr()
        self.take("}")
        return v

    def atom(self):
        tok = self.take()
        if tok[0].isdigit() or tok[0] == ".":
            return sympy.Rational(tok) if "." in tok else sympy.Integer(tok)
        if tok.isalpha() and len(tok) == 1:
            return sympy.E if tok == "e" else sympy.Symbol(tok.lower())
        if tok == "\\pi":
            return sympy.pi
        if tok == "(":
            v = self.expr()
            self.take(")")
            return v
        if tok == "{":
            self.i -= 1
            return self.group()
        if tok in ("\\frac", "\\dfrac"):
            num = self.group()
            return num / self.group()
        if tok == "\\sqrt":
            if self.peek() == "[":
                self.take("[")
                n = self.expr()
                self.take("]")
                return sympy.root(self.group(), n)
            return sympy.sqrt(self.group())
        raise Unsupported(tok)


def parse_simple(s: str):
    """Sympy expression for ``s`` in the subset above; raises ``Unsupported`` otherwise."""
    p = _Parser(_tokens(s))
    v = p.expr()
    if p.peek() is not None:
        raise Unsupported(f"trailing {p.peek()!r}")
    return v
