"""The sympy side: parse one atom and decide equality. Imported only where sympy may run
(pool workers, or in-process ``equivalent`` without hard bounds).

Policy (also in docs/verifiers.md):

- Atoms are parsed by ``selfplay_verifiers.texparse`` (the common subset, fast) or by
  latex2sympy2_extended (an ANTLR parser); neither ``eval``s model text. Plain-text forms
  (``sqrt(2)``, ``**``, ``pi``, ``inf``) are rewritten to LaTeX first. Letters are case-folded
  (``X`` == ``x``). Decimals inside expressions are read exactly.
- Numbers: the difference evaluates to zero at 60 significant digits (this also covers closed
  forms that ``simplify`` cannot prove equal). A prediction that *is* a decimal literal is
  judged by the precision rule of :mod:`selfplay_verifiers.numbers` against the gold's numeric value
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
# Relative: two constants are equal when they agree to 50 of the 60 digits evaluated. An
# absolute bound would call 10^{-50} equal to 0 and 1 + 10^{-45} equal to 1.
_REL_TOL = sympy.Float("1e-50", 60)
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


def _is_zero_number(d, *scale) -> bool | None:
    """True/False when the closed-form number ``d`` (a difference of the numbers ``scale``) is /
    is not zero, None if undecidable."""
    try:
        v = sympy.N(d, 60)
        ref = [abs(sympy.N(x, 60)) for x in scale]
    except Exception:
        return None
    if v.has(sympy.nan, sympy.zoo, sympy.oo, -sympy.oo) or not v.is_number:
        return None
    if v == 0:
        return True
    # evalf targets 60 significant digits of d itself, so a nonzero d (even 10^{-50}) keeps its
    # size; a d that is zero but unprovable by simplify evaluates to noise far below the scale.
    size = max([r for r in ref if r.is_number and r.is_finite] or [sympy.Integer(0)])
    if size == 0:
        return None  # both sides evaluate to 0 but their difference does not: cannot tell
    return not abs(v) > _REL_TOL * size


def _at(expr, point: dict):
    try:
        e = expr.subs(point)
        if e.has(sympy.Sum, sympy.Product):
            e = e.doit()  # integer limits (see _points): a finite sum, exact and fast
        v = sympy.N(e, 30)
    except Exception:
        return None
    return v if v.is_number and not v.has(sympy.nan, sympy.zoo, sympy.oo, -sympy.oo) else None


def _points(symbols, *exprs) -> list[dict]:
    """Three evaluation points. Integers when a sum or product is present: its limits must be
    integers, and numerically summing to a fractional limit costs seconds."""
    syms = sorted(symbols, key=lambda s: s.name)
    if any(e.has(sympy.Sum, sympy.Product) for e in exprs):
        return [{s: sympy.Integer(3 + (5 * i + 3 * k) % 7) for k, s in enumerate(syms)}
                for i in range(3)]
    return [{s: _POINTS[(i + k) % 3] + k for k, s in enumerate(syms)} for i in range(3)]


def _expr_equal(g, p) -> bool | None:
    if any(x.has(sympy.oo, -sympy.oo, sympy.zoo) for x in (g, p)):
        return bool(g == p)  # infinities: oo - 2 is oo, never a small difference
    d = g - p
    free = g.free_symbols | p.free_symbols  # not d's: x+2n+1 - (x+1) still needs x bound
    if not free:
        return _is_zero_number(d, g, p)
    # Points before expand/simplify: evaluating is cheap and bounded, expanding (x+1)^9999
    # is not; unequal forms (the common case) are refuted at the first point.
    seen = 0
    for pt in _points(free, g, p):
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
        return _is_zero_number(d1 - d2, d1, d2)
    ratios = [r for r in (_at(d1 / d2, pt) for pt in _points(free, d1, d2)) if r is not None]
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
    g, p = (x.as_explicit() if isinstance(x, sympy.MatrixExpr) else x for x in (g, p))
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
