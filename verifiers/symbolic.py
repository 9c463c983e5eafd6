"""The sympy side: parse one atom and decide equality. Imported only where sympy may run
(pool workers, or in-process ``equivalent`` without hard bounds).

Policy (also in docs/verifiers.md):

- Atoms are parsed by ``verifiers.texparse`` (the common subset, fast) or by
  latex2sympy2_extended (an ANTLR parser); neither ``eval``s model text. Plain-text forms
  (``sqrt(2)``, ``**``, ``pi``, ``inf``) are rewritten to LaTeX first. Letters are case-folded
  (``X`` == ``x``). Decimals inside expressions are read exactly.
- Numbers: the difference evaluates to zero at 60 significant digits (this also covers closed
  forms that ``simplify`` cannot prove equal). A prediction that *is* a decimal literal is
  judged by the precision rule of :mod:`verifiers.numbers` against the gold's numeric value
  (``\\pi`` vs ``3.1416`` is correct, vs ``3.14`` is not).
- Expressions: equality at three fixed random-looking rational points (probabilistic identity
  testing: any disagreement is a mismatch, agreement at two or more defined points is a match);
  where the points are undefined, ``expand``/``simplify`` of the difference decides.
- Equations: ``a = b`` and ``c = d`` are equal when ``a - b`` is a nonzero constant multiple of
  ``c - d`` (``x + y = 1`` == ``2x + 2y = 2``). Inequalities must have the same strictness and
  direction after moving everything to one side, with a positive multiple.
- Matrices: same shape, equal entries.
"""
from __future__ import annotations

import re
from fractions import Fraction

import sympy
from latex2sympy2_extended import latex2sympy

from .numbers import Num, numbers_match, parse_number
from .texparse import Unsupported, parse_simple

__all__ = ["ParseFailure", "to_sympy", "atom_equal"]

_POINTS = (sympy.Rational(7, 9), sympy.Rational(-13, 11), sympy.Rational(29, 17))
_REL_TOL = sympy.Float("1e-40", 60)
_PLAIN_FUNC_RE = re.compile(r"(?<![\\a-zA-Z])(sqrt|ln|log|sin|cos|tan|exp)\s*\(")
_PLAIN_CONST_RE = re.compile(r"(?<![\\a-zA-Z])(pi|infinity|infty|inf|oo)(?![a-zA-Z])")


class ParseFailure(ValueError):
    """The atom is not something sympy can read."""


def _latexify(s: str) -> str:
    s = s.replace("**", "^")
    s = _PLAIN_CONST_RE.sub(lambda m: "\\pi " if m.group(1) == "pi" else "\\infty ", s)
    out, pos = [], 0
    for m in _PLAIN_FUNC_RE.finditer(s):
        if m.start() < pos:
            continue
        depth, k = 0, m.end() - 1
        while k < len(s):
            depth += {"(": 1, ")": -1}.get(s[k], 0)
            if depth == 0:
                break
            k += 1
        inner = s[m.end():k]
        name = m.group(1)
        out.append(s[pos:m.start()])
        out.append("\\sqrt{%s}" % inner if name == "sqrt" else "\\%s(%s)" % (name, inner))
        pos = k + 1
    out.append(s[pos:])
    return "".join(out).replace("\\sqrt(", "\\sqrt{").strip()


def _exact(expr):
    """Replace binary floats by the exact decimals they were written as."""
    if isinstance(expr, sympy.Basic) and expr.has(sympy.Float):
        return expr.xreplace({f: sympy.Rational(str(f)) for f in expr.atoms(sympy.Float)})
    return expr


def to_sympy(text: str):
    """Parse one atom; raises ParseFailure."""
    tex = _latexify(text)
    try:
        return parse_simple(tex)  # the common subset, ~20x faster than the ANTLR parser
    except (Unsupported, ZeroDivisionError, TypeError, ValueError):
        pass
    try:
        expr = latex2sympy(tex)
    except Exception as e:  # the ANTLR parser raises bare Exception
        raise ParseFailure(f"cannot parse {text[:60]!r}: {str(e)[:80]}") from None
    if expr is None:
        raise ParseFailure(f"cannot parse {text[:60]!r}")
    if isinstance(expr, (list, tuple)):
        raise ParseFailure(f"ambiguous {text[:60]!r}")
    return _exact(expr)


def _is_zero_number(d) -> bool | None:
    """True/False when the closed-form number ``d`` is / is not zero, None if undecidable."""
    try:
        v = sympy.N(d, 60)
    except Exception:
        return None
    if v.has(sympy.nan, sympy.zoo, sympy.oo, -sympy.oo) or not v.is_number:
        return None
    if v == 0:
        return True
    # evalf targets 60 significant digits of d itself, so a nonzero d shows up as |v| >> tol;
    # a d that is zero but unprovable by simplify evaluates to noise far below tol.
    return not abs(v) > _REL_TOL


def _at(expr, point: dict):
    try:
        v = sympy.N(expr.subs(point), 30)
    except Exception:
        return None
    return v if v.is_number and not v.has(sympy.nan, sympy.zoo, sympy.oo, -sympy.oo) else None


def _points(symbols) -> list[dict]:
    syms = sorted(symbols, key=lambda s: s.name)
    return [{s: _POINTS[(i + k) % 3] + k for k, s in enumerate(syms)} for i in range(3)]


def _expr_equal(g, p) -> bool | None:
    d = g - p
    free = d.free_symbols
    if not free:
        return _is_zero_number(d)
    # Points before expand/simplify: evaluating is cheap and bounded, expanding (x+1)^9999
    # is not; unequal forms (the common case) are refuted at the first point.
    seen = 0
    for pt in _points(free):
        vg, vp = _at(g, pt), _at(p, pt)
        if vg is None or vp is None:
            continue
        seen += 1
        if abs(vg - vp) > sympy.Float("1e-20") * (1 + abs(vg)):
            return False
    if seen >= 2:
        return True  # equal at independent random-looking points: identical with high probability
    return True if sympy.expand(d) == 0 or sympy.simplify(d) == 0 else None


def _ratio_constant(d1, d2, positive: bool) -> bool | None:
    free = d1.free_symbols | d2.free_symbols
    if not free:
        return _is_zero_number(d1 - d2)
    ratios = [r for r in (_at(d1 / d2, pt) for pt in _points(free)) if r is not None]
    if len(ratios) < 2:
        return None
    r0 = ratios[0]
    if r0 == 0 or (positive and not (r0.is_real and r0 > 0)):
        return False
    return all(abs(r - r0) <= sympy.Float("1e-20") * (1 + abs(r0)) for r in ratios)


def _relation_equal(g, p) -> bool | None:
    if not (isinstance(g, sympy.core.relational.Relational)
            and isinstance(p, sympy.core.relational.Relational)):
        return False
    if isinstance(g, sympy.Eq) or isinstance(p, sympy.Eq):
        if not (isinstance(g, sympy.Eq) and isinstance(p, sympy.Eq)):
            return False
        return _ratio_constant(g.lhs - g.rhs, p.lhs - p.rhs, positive=False)

    def canon(r):  # -> (expr, strict) meaning expr < 0 or expr <= 0
        if isinstance(r, (sympy.StrictLessThan, sympy.LessThan)):
            return r.lhs - r.rhs, isinstance(r, sympy.StrictLessThan)
        return r.rhs - r.lhs, isinstance(r, sympy.StrictGreaterThan)

    (a, sa), (b, sb) = canon(g), canon(p)
    return sa == sb and _ratio_constant(a, b, positive=True)


def atom_equal(g_text: str, p_text: str, cache: dict | None = None) -> bool | None:
    """Equality of two atoms under the policy above; raises ParseFailure."""
    if cache is not None and g_text in cache:
        g = cache[g_text]
    else:
        g = to_sympy(g_text)
        if cache is not None:
            cache[g_text] = g
    p = to_sympy(p_text)
    if isinstance(g, sympy.MatrixBase) or isinstance(p, sympy.MatrixBase):
        if not (isinstance(g, sympy.MatrixBase) and isinstance(p, sympy.MatrixBase)):
            return False
        if g.shape != p.shape:
            return False
        res = [_expr_equal(a, b) for a, b in zip(g, p)]
        return False if False in res else (None if None in res else True)
    if isinstance(g, sympy.core.relational.Relational) or isinstance(p, sympy.core.relational.Relational):
        return _relation_equal(g, p)
    if isinstance(g, sympy.Set) or isinstance(p, sympy.Set):
        return bool(g == p)
    if not isinstance(g, sympy.Expr) or not isinstance(p, sympy.Expr):
        return bool(g == p)
    g, p = g.doit(), p.doit()
    pn = parse_number(p_text)
    if pn is not None and pn.decimals is not None and g.is_number:
        v = sympy.N(g, 60)
        if not v.is_real or v.has(sympy.oo, -sympy.oo, sympy.nan, sympy.zoo):
            return False
        return numbers_match(Num(Fraction(str(v))), pn)
    return _expr_equal(g, p)
