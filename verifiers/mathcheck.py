"""Math answer checking: ``check(gold, completion)`` and ``equivalent(gold, pred)``, gold first.

Pipeline: extract (``selfplay_verifiers.extract``) -> normalize -> screen sizes (``numbers.screen``) ->
shape (``selfplay_verifiers.structure``) -> exact fast path for numbers (``selfplay_verifiers.numbers``) -> sympy
only for what is left (``selfplay_verifiers.symbolic``).

Verdicts (label/reason):
  correct/ok, incorrect/wrong, incorrect/no_answer (nothing extractable: a completion that
  states no final answer fails the task), unknown/ambiguous (different final answers stated),
  unknown/parse_error, unknown/too_large (screened before sympy, or a list over MAX_ITEMS),
  unknown/timeout and unknown/error (from the worker pool).

Policies, in one place (details in the modules named):
  - integers and fractions are exact; decimals get the tolerance they state, with at least 4
    significant digits (numbers.py); the gold is taken at face value;
  - "50%" is 50, never 0.5 (no x100 leniency); units, currency and "x =" are stripped;
  - intervals keep open/closed ends; tuples keep order; plain lists and sets ignore order;
  - algebraically equal forms are equal; equations are equal up to a nonzero factor.

These functions run in the calling process with no hard time or memory bound beyond the size
screen. For untrusted completions at scale use ``selfplay_verifiers.MathVerifier``, which runs the sympy
part in killable worker processes. Neither raises.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field, replace

from .extract import MATH_WORDS, box_groups, extract_answer, find_answer, find_boxed, has_prose
from .normalize import normalize_answer
from .numbers import numbers_match, parse_number, screen
from .steps import stated_value
from .structure import Node, atoms, compare_trees, parse_tree, too_large
from .verdict import CORRECT, INCORRECT, UNKNOWN, Verdict

__all__ = ["Gold", "parse_gold", "equivalent", "check", "fast_verdict", "slow_verdict"]

_WORD_RE = re.compile(r"[A-Za-z][A-Za-z ]{2,}")
_GARBLED_RE = re.compile(r"(?=.*[A-Za-z]{3})(?=.*\d)[A-Za-z0-9]+")  # one token, letters and digits
_DIGIT_SPACE_RE = re.compile(r"\d\s+\d")  # sympy would multiply or glue them: ambiguous


@dataclass
class Gold:
    """A gold answer parsed once and reused for every prediction of its problem.

    ``error`` is set ("too_large" / "parse_error") when the gold itself is unusable; every
    check against it is then unknown. ``cache`` holds sympy parses of its atoms (filled lazily
    where sympy runs, never pickled across processes).
    """

    raw: str
    norm: str = ""
    tree: Node | None = None
    error: str | None = None
    cache: dict = field(default_factory=dict, repr=False, compare=False)


def parse_gold(gold: str) -> Gold:
    """Parse a gold answer: a bare answer ("72", "\\frac{1}{2}", "(1,2]", "x^2-1", "2, 3"), or a
    solution that ends in ``\\boxed{}`` or GSM8K's "#### 72". Never raises."""
    if isinstance(gold, Gold):
        return gold
    if not isinstance(gold, str) or not gold.strip():
        return Gold(str(gold), error="parse_error")
    try:
        text = gold
        if "\\boxed" in gold or "\\fbox" in gold:
            text = find_boxed(gold) or ""
            if not text and box_groups(gold)[-1:] == [None]:  # a gold cut inside its box
                text = gold[gold.rfind("{", 0, gold.rfind("boxed") + 6) + 1:]
        elif "####" in gold:
            text = extract_answer(gold, allow_bare=False) or ""
        elif len(gold) > 200 and has_prose(gold):  # a worked solution: its stated answer
            text = find_answer(gold, allow_bare=False)[0] or gold
        if len(text) > 4 * 1000:  # cheap guard before normalizing megabytes
            return Gold(gold, error="too_large")
        norm = normalize_answer(text)
        if not norm:
            return Gold(gold, error="parse_error")
        if screen(norm):
            return Gold(gold, norm, error="too_large")
        tree = parse_tree(norm)
        if too_large(tree):
            return Gold(gold, norm, error="too_large")
        return Gold(gold, norm, tree)
    except Exception:  # never raise: a broken gold is an unknown, not a crash
        return Gold(str(gold), error="parse_error")


def _is_words(s: str) -> bool:
    """A short text answer like "Monday" or "no solution": at most 3 plain words (math words
    such as "pi" excluded). Longer prose is a sentence, not an answer (parse_error)."""
    if not _WORD_RE.fullmatch(s):
        return False
    words = s.lower().split()
    return (len(words) <= 3 and any(len(w) >= 3 for w in words)
            and not any(w in MATH_WORDS for w in words))


def fast_atom_equal(g: str, p: str) -> bool | None:
    """Exact, sympy-free atom equality; None when only sympy can tell."""
    if g == p:
        return True
    gn, pn = parse_number(g), parse_number(p)
    if gn is not None and pn is not None:
        return numbers_match(gn, pn)
    gw, pw = _is_words(g), _is_words(p)
    if gw or pw:  # text answers ("Monday", "yes"): compared as text, never as e*s*y
        return gw and pw and g.lower().split() == p.lower().split()
    return None


def _verdict(label: str, reason: str, t0: float) -> Verdict:
    return Verdict(label, reason, seconds=time.perf_counter() - t0)


def fast_verdict(gold: Gold, pred: str | None) -> tuple[Verdict | None, Node | None]:
    """Decide without sympy when that is exact (numbers, shapes, text). Returns (verdict, None)
    when decided, else (None, pred_tree) for ``slow_verdict``."""
    t0 = time.perf_counter()
    if gold.error:
        return _verdict(UNKNOWN, gold.error, t0), None
    if pred is None or not isinstance(pred, str) or not pred.strip():
        return _verdict(INCORRECT, "no_answer", t0), None
    try:
        if len(pred) > 4 * 1000:
            return _verdict(UNKNOWN, "too_large", t0), None
        norm = normalize_answer(pred, keep_name="=" in gold.norm)
        if not norm:
            return _verdict(INCORRECT, "no_answer", t0), None
        if screen(norm):
            return _verdict(UNKNOWN, "too_large", t0), None
        if norm == gold.norm:
            return _verdict(CORRECT, "ok", t0), None
        tree = parse_tree(norm)
        if too_large(tree):
            return _verdict(UNKNOWN, "too_large", t0), None
        for a in atoms(tree):
            if (" " not in a and gold.tree.kind == "atom" and _GARBLED_RE.fullmatch(a)
                    and parse_number(gold.norm) is not None):
                return _verdict(INCORRECT, "wrong", t0), None  # "AZYUK2A" is not the number 2
            if has_prose(a) and not _is_words(a):
                return _verdict(UNKNOWN, "parse_error", t0), None  # a sentence, not an answer
            if _DIGIT_SPACE_RE.search(a) and parse_number(a) is None:
                return _verdict(UNKNOWN, "parse_error", t0), None  # "10 00": digits apart
        r = compare_trees(gold.tree, tree, fast_atom_equal)
    except Exception:
        return _verdict(UNKNOWN, "error", t0), None
    if r is None:
        return None, tree
    return _verdict(CORRECT, "ok", t0) if r else _verdict(INCORRECT, "wrong", t0), None


def slow_verdict(gold: Gold, tree: Node) -> Verdict:
    """The sympy comparison (imports sympy). No time bound here: call it in a worker."""
    t0 = time.perf_counter()
    try:
        from .symbolic import ParseFailure, atom_equal
    except ImportError:  # pragma: no cover - sympy is a core dependency
        return _verdict(UNKNOWN, "error", t0)
    pred_cache: dict = {}

    def eq(g: str, p: str) -> bool | None:
        fast = fast_atom_equal(g, p)
        if fast is not None:
            return fast
        key = (g, p)
        if key not in pred_cache:
            pred_cache[key] = atom_equal(g, p, gold.cache)
        return pred_cache[key]

    try:
        r = compare_trees(gold.tree, tree, eq)
    except ParseFailure:
        return _verdict(UNKNOWN, "parse_error", t0)
    except MemoryError:
        return _verdict(UNKNOWN, "too_large", t0)
    except RecursionError:
        return _verdict(UNKNOWN, "too_large", t0)
    except Exception:
        return _verdict(UNKNOWN, "error", t0)
    if r is None:
        return _verdict(UNKNOWN, "parse_error", t0)
    return _verdict(CORRECT, "ok", t0) if r else _verdict(INCORRECT, "wrong", t0)


def equivalent(gold: str | Gold, pred: str) -> Verdict:
    """Is ``pred`` (a bare answer) equal to ``gold`` under the module's policies? In-process."""
    t0 = time.perf_counter()
    g = parse_gold(gold)
    v, tree = fast_verdict(g, pred)
    if v is None:
        v = slow_verdict(g, tree)
    return replace(v, extracted=pred if isinstance(pred, str) else None,
                   seconds=time.perf_counter() - t0)


def check(gold: str | Gold, completion: str, *, extract: bool = True) -> Verdict:
    """Extract the final answer from ``completion`` (unless ``extract=False``: it is the answer)
    and compare it to ``gold``. A bare answer works either way. In-process; never raises."""
    t0 = time.perf_counter()
    ans, problem = find_answer(completion) if extract else (completion, None)
    if problem:  # the completion states different final answers: never correct
        return Verdict(UNKNOWN, problem, ans, time.perf_counter() - t0)
    if ans is None:
        return Verdict(INCORRECT, "no_answer", None, time.perf_counter() - t0)
    v = equivalent(gold, ans)
    # the record keeps the value stated ("1 + 9 = 10." -> "10"), not the sentence around it
    return replace(v, extracted=stated_value(ans), seconds=time.perf_counter() - t0)
