"""The shape of an answer: a single expression, an ordered tuple/interval, or an unordered set.

Policy (also in docs/verifiers.md):

- ``(a, b, ...)``, ``[a, b, ...]``, ``(a, b]``, ``[a, b)`` and ``\\langle a, b \\rangle`` are
  *ordered*: same length, same brackets, items equal in order. An open interval ``(1, 2)`` and
  the pair ``(1, 2)`` are the same object here, so the ambiguity never matters; a closed end
  never matches an open one.
- ``\\{a, b\\}`` and bare lists ``a, b`` (also "a or b", "a and b") are *sets*: every item of
  one equals some item of the other (order and repeats ignored). ``A \\cup B`` compares its
  parts as a set too.
- Inequalities in one variable become intervals: ``x > 3`` is ``(3, \\infty)``,
  ``1 < x \\leq 2`` is ``(1, 2]``.
- Different shapes never match: ``5`` vs ``\\{5\\}``, a set vs a tuple, a pair vs a triple.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from .normalize import normalize_answer, strip_name

__all__ = ["Node", "parse_tree", "compare_trees", "atoms", "too_large", "MAX_ITEMS"]

MAX_ITEMS = 64  # a longer list is unknown/too_large: never compared on a truncated prefix

_TOKEN_RE = re.compile(r"\\[a-zA-Z]+|\\.|.", re.S)
_OPEN = {"(": ")", "[": "]", "{": "}", "\\{": "\\}", "\\langle": "\\rangle"}
_CLOSE = {")", "]", "}", "\\}", "\\rangle"}
_LT = {"<", "\\lt", "\\le", "\\leq", "\\leqslant"}
_GT = {">", "\\gt", "\\ge", "\\geq", "\\geqslant"}
_WORD_SPLIT_RE = re.compile(r"\s+(?:or|and)\s+")
_VAR_RE = re.compile(r"-?[a-zA-Z](?:_\{?[a-zA-Z0-9]+\}?)?(?:\([a-z]\))?|-?\|[a-zA-Z]\|")
_RATIO_RE = re.compile(r"\d+(?:\.\d+)?(?:\s*:\s*\d+(?:\.\d+)?)+")


@dataclass(frozen=True)
class Node:
    """``kind``: "atom" (``text`` is the expression), "seq" (ordered; ``text`` holds the two
    bracket tokens joined by a space), or "set" (unordered)."""

    kind: str
    items: tuple["Node", ...] = ()
    text: str = ""


def _tokens(s: str) -> list[str]:
    return _TOKEN_RE.findall(s)


def _split_top(toks: list[str], is_sep: Callable[[str], bool]) -> tuple[list[list[str]], list[str]]:
    """Split a token list at depth-0 separators; returns the parts and the separators."""
    parts: list[list[str]] = [[]]
    seps: list[str] = []
    depth = 0
    for t in toks:
        if t in _OPEN:
            depth += 1
        elif t in _CLOSE:
            depth -= 1
        elif depth == 0 and is_sep(t):
            parts.append([])
            seps.append(t)
            continue
        parts[-1].append(t)
    return parts, seps


def _wrapped(toks: list[str]) -> bool:
    """True when the first token opens a bracket that the last token closes."""
    if len(toks) < 2 or toks[0] not in _OPEN or toks[-1] not in _CLOSE:
        return False
    depth = 0
    for i, t in enumerate(toks):
        if t in _OPEN:
            depth += 1
        elif t in _CLOSE:
            depth -= 1
            if depth == 0:
                return i == len(toks) - 1
    return False


def _join(toks: list[str]) -> str:
    out = []
    for t in toks:
        # keep "\pi x" apart: gluing a command to a following letter changes its name
        if out and out[-1].startswith("\\") and out[-1][1:].isalpha() and t[:1].isalpha():
            out.append(" ")
        out.append(t)
    return "".join(out).strip()


def _atom(text: str) -> Node:
    return Node("atom", text=text)


def _neg(v: str) -> str:
    """The negation of a bound, as plain text when it is a number (so no sympy is needed)."""
    if re.fullmatch(r"-?\d+(?:\.\d+)?", v):
        return v[1:] if v.startswith("-") else "-" + v
    return "-(" + v + ")"


def _iv(lo: str, hi: str, c_lo: bool, c_hi: bool) -> Node:
    return Node("seq", (_atom(lo), _atom(hi)), ("[" if c_lo else "(") + " " + ("]" if c_hi else ")"))


def _abs_interval(exprs: list[str], kinds: list[str], closed: list[bool]) -> Node | None:
    """|x| < a is (-a, a); |x| > a is (-oo, -a) U (a, oo); lo <= |x| <= hi is two intervals."""
    if len(exprs) == 3 and exprs[1].startswith("|") and kinds[0] == kinds[1]:
        lo, hi, c_lo, c_hi = exprs[0], exprs[2], closed[0], closed[1]
        if kinds[0] == ">":
            lo, hi, c_lo, c_hi = hi, lo, c_hi, c_lo
        return Node("set", (_iv(_neg(hi), _neg(lo), c_hi, c_lo), _iv(lo, hi, c_lo, c_hi)))
    if len(exprs) != 2:
        return None
    bound = exprs[1] if exprs[0].startswith("|") else exprs[0]
    below = (kinds[0] == "<") == exprs[0].startswith("|")  # |x| < a or a > |x|
    if below:
        return _iv(_neg(bound), bound, closed[0], closed[0])
    return Node("set", (_iv("-\\infty", _neg(bound), False, closed[0]),
                        _iv(bound, "\\infty", closed[0], False)))


def _relation_interval(parts: list[list[str]], seps: list[str]) -> Node | None:
    exprs = [_join(p) for p in parts]
    kinds = ["<" if s in _LT else ">" for s in seps]
    closed = [s in ("\\le", "\\leq", "\\leqslant", "\\ge", "\\geq", "\\geqslant") for s in seps]
    absvar = [e for e in exprs if e.startswith("|")]
    if absvar:
        return _abs_interval(exprs, kinds, closed)
    if len(exprs) == 2:
        if _VAR_RE.fullmatch(exprs[0]):
            var_first, value, var = True, exprs[1], exprs[0]
        elif _VAR_RE.fullmatch(exprs[1]):
            var_first, value, var = False, exprs[0], exprs[1]
        else:
            return None
        upper = (kinds[0] == "<") == var_first  # x < v or v > x: v is an upper bound
        if var.startswith("-"):  # -x > -1 is x < 1: negate the bound and flip the direction
            value, upper = _neg(value), not upper
        br = "]" if closed[0] else ")"
        if upper:
            return Node("seq", (_atom("-\\infty"), _atom(value)), "( " + br)
        return Node("seq", (_atom(value), _atom("\\infty")), ("[" if closed[0] else "(") + " )")
    if (len(exprs) == 3 and _VAR_RE.fullmatch(exprs[1]) and not exprs[1].startswith("-")
            and kinds[0] == kinds[1]):
        lo, hi, c_lo, c_hi = exprs[0], exprs[2], closed[0], closed[1]
        if kinds[0] == ">":
            lo, hi, c_lo, c_hi = hi, lo, c_hi, c_lo
        return Node("seq", (_atom(lo), _atom(hi)), ("[" if c_lo else "(") + " " + ("]" if c_hi else ")"))
    return None


def _items(parts: list[str], sub: Callable[[str], Node]) -> tuple[Node, ...] | None:
    """Sub-trees of list items, nested unordered lists flattened; None when over MAX_ITEMS."""
    out: list[Node] = []
    for p in parts:
        if not p.strip():
            continue
        node = sub(p)
        out.extend(node.items if node.kind == "set" else (node,))
        if len(out) > MAX_ITEMS:
            return None
    return tuple(out)


def _split_words(s: str) -> list[str]:
    """Split at " or " / " and " outside brackets ("f(x) = 1 or f(x) = -1")."""
    parts, pos = [], 0
    for m in _WORD_SPLIT_RE.finditer(s):
        head = s[:m.start()]
        if sum(head.count(c) for c in "([{") == sum(head.count(c) for c in ")]}"):
            parts.append(s[pos:m.start()])
            pos = m.end()
    return parts + [s[pos:]]


def _group(kind: str, parts: list[str], sub: Callable[[str], Node], text: str = "") -> Node:
    items = _items(parts, sub) if kind == "set" else None
    if kind == "seq":
        items = tuple(sub(p) for p in parts) if len(parts) <= MAX_ITEMS else None
    return Node(kind, items, text) if items is not None else Node("too_large")


def parse_tree(s: str, _depth: int = 0) -> Node:
    """Shape of a normalized answer (see the module docstring). Never raises on odd input."""
    s = s.strip()
    if _depth > 6:
        return _atom(s)
    sub = lambda t: parse_tree(strip_name(normalize_answer(t)), _depth + 1)  # noqa: E731
    words = _split_words(s)
    if len(words) > 1:
        return _group("set", words, sub)
    toks = _tokens(s)
    if ";" in toks:  # "(0;1;2)" is a tuple; "p=5,q=2;p=7,q=2" is a list of tuples
        parts, _ = _split_top(toks, lambda t: t == ";")
        toks = [("," if t == ";" else t) for t in toks]
        if len(parts) > 1 and any("," in p for p in parts):
            return _group("set", ["(" + _join(p) + ")" for p in parts], sub)
        s = _join(toks)
    parts, _ = _split_top(toks, lambda t: t == "\\cup")
    if len(parts) > 1:
        return _group("set", [_join(p) for p in parts], sub)
    parts, _ = _split_top(toks, lambda t: t == ",")
    if len(parts) > 1:
        return _group("set", [_join(p) for p in parts], sub)
    if _wrapped(toks):
        inner = toks[1:-1]
        items, _ = _split_top(inner, lambda t: t == ",")
        if toks[0] in ("\\{", "{"):  # a plain {a, b} is the set a model means to write
            if len(items) >= 2 or toks[0] == "\\{":
                return _group("set", [_join(p) for p in items], sub)
        elif len(items) >= 2:
            return _group("seq", [_join(p) for p in items], sub, toks[0] + " " + toks[-1])
        if toks[0] == "(" and toks[-1] == ")":
            return sub(_join(inner))  # "(5)" is just 5
    if len(toks) > 2 and toks[0] == "-" and _wrapped(toks[1:]) and "," in toks:
        return Node("neg", (sub(_join(toks[1:])),))  # "-[0,1)": a negated interval, no number
    if toks.count("\\pm") == 1:  # "a \pm b" is the set {a + b, a - b}
        a, b = _join(toks[:toks.index("\\pm")]), _join(toks[toks.index("\\pm") + 1:])
        if b and "=" not in a:
            return _group("set", [f"{a}+({b})", f"{a}-({b})"] if a else [b, _neg(b)], sub)
    if ":" in toks and _RATIO_RE.fullmatch(s):  # "7:32", "12:00": compared part by part
        return Node("seq", tuple(_atom(x.strip()) for x in s.split(":")), ": :")
    parts, seps = _split_top(toks, lambda t: t in _LT or t in _GT)
    if 2 <= len(parts) <= 3:
        node = _relation_interval(parts, seps)
        if node is not None:
            return node
    return _atom(s)


def too_large(node: Node) -> bool:
    """True when a list somewhere in the tree had more than MAX_ITEMS items."""
    return node.kind == "too_large" or any(too_large(n) for n in node.items)


def atoms(node: Node) -> list[str]:
    """All atom texts of a tree, depth first."""
    if node.kind == "atom":
        return [node.text]
    return [a for it in node.items for a in atoms(it)]


def _and3(values: list[bool | None]) -> bool | None:
    if any(v is False for v in values):
        return False
    return None if any(v is None for v in values) else True


def compare_trees(g: Node, p: Node, atom_eq: Callable[[str, str], bool | None]) -> bool | None:
    """Shape-aware equality; ``atom_eq`` may return None for "cannot tell here" (e.g. the fast
    path meeting something that needs sympy), and then so may this."""
    if g.kind != p.kind:
        return False
    if g.kind == "atom":
        return atom_eq(g.text, p.text)
    if g.kind == "seq":
        if g.text != p.text or len(g.items) != len(p.items):
            return False
        out: list[bool | None] = []
        for a, b in zip(g.items, p.items):
            r = compare_trees(a, b, atom_eq)
            if r is False:
                return False  # ordered: one mismatch settles it
            out.append(r)
        return _and3(out)
    # sets: every gold item matched by some pred item and vice versa
    m = [[compare_trees(a, b, atom_eq) for b in p.items] for a in g.items]
    rows = [True if any(v is True for v in row) else (False if all(v is False for v in row) else None)
            for row in m]
    cols = [True if any(m[i][j] is True for i in range(len(g.items))) else
            (False if all(m[i][j] is False for i in range(len(g.items))) else None)
            for j in range(len(p.items))]
    if not g.items or not p.items:
        return len(g.items) == len(p.items)
    return _and3(rows + cols)
