"""Verifiers: decide whether a completion is correct, incorrect, or unknown. Never raise.

- ``check(gold, completion)`` / ``equivalent(gold, pred)``: math answers, in-process.
- ``MathVerifier``: the same with hard time/memory bounds in killable worker processes, from
  any thread; ``verify``, ``verify_many`` (ordered, streaming), ``submit``.
- ``extract_answer(text)``: the final answer of a completion (boxed, "the answer is", ####);
  ``find_answer(text)`` also says when the completion is ambiguous (different answers stated).
- ``answer_key(answer)``: the one comparable form of an extracted answer, for every vote (maj@k,
  pseudo-labels, answer diversity): "1,000", "1000" and "1000.0" are one vote.
- ``parse_gold(gold)``: parse a gold answer once, reuse it for all its predictions.
- ``Sandbox`` (``selfplay_verifiers.sandbox``): run generated programs (imported lazily).

Policies are in ``selfplay_verifiers.mathcheck`` and docs/verifiers.md. Importing this package does not
import sympy; only workers (or an in-process slow comparison) do.
"""
from __future__ import annotations

from typing import Any

from .extract import answer_key, extract_answer, find_answer, normalize_answer
from .mathcheck import Gold, check, equivalent, parse_gold
from .pool import MathVerifier
from .verdict import CORRECT, INCORRECT, UNKNOWN, Verdict

__all__ = ["Verdict", "CORRECT", "INCORRECT", "UNKNOWN", "extract_answer", "find_answer",
           "normalize_answer", "answer_key",
           "Gold", "parse_gold", "equivalent", "check", "MathVerifier", "Sandbox"]


def __getattr__(name: str) -> Any:
    if name in ("Sandbox", "ExecResult"):
        from . import sandbox  # written separately; imported only when asked for
        return getattr(sandbox, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
