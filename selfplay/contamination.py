"""Held-out contamination check: no held-out question may appear in any training pair's prompt.

Texts are compared after `normalize_text` (NFKC, lowercase, every run of non-alphanumerics -> one
space), so punctuation, case, spacing and line breaks can't hide a copy. A pair leaks when a
held-out question's normalized word sequence occurs as a contiguous word sequence of the pair's
normalized prompt (the prompt wraps the question in a template, so this is a substring test on
word boundaries, not equality). Pairs whose metadata problem_id equals a held-out id are counted
separately. Lookup is by each question's first few words, so the cost is linear in prompt length.
What it does not catch: paraphrases and changed numbers (that needs n-gram overlap or embeddings).
"""
from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

from selfplay.io import iter_jsonl

from selfplay.records import Problem

_NON_ALNUM = re.compile(r"[^0-9a-z]+")
# An operator between two numbers is a word ("7 - 4" is not "7 + 4"); elsewhere it is punctuation.
_OPERATOR = re.compile(r"(?<=\d)\s*([+\-*/=^×÷])\s*(?=\d)")
_OP_WORDS = {"+": "plus", "-": "minus", "*": "times", "×": "times", "/": "over", "÷": "over", "=": "equals",
             "^": "pow"}
KEY_WORDS = 8  # index held-out questions by their first 8 normalized words


class ContaminationError(ValueError):
    """Raised by check_contamination(..., strict=True) when a held-out question leaked."""


def normalize_text(text: str) -> str:
    t = unicodedata.normalize("NFKC", text).lower()
    t = _OPERATOR.sub(lambda m: f" {_OP_WORDS[m.group(1)]} ", t)
    return _NON_ALNUM.sub(" ", t).strip()


class HeldoutIndex:
    """Find which held-out questions occur (normalized, on word boundaries) inside a text."""

    def __init__(self, heldout: Sequence[Problem]) -> None:
        self.ids = {p.id for p in heldout}
        self._by_key: dict[tuple[str, ...], list[tuple[tuple[str, ...], str]]] = defaultdict(list)
        for p in heldout:
            words = tuple(normalize_text(p.question).split())
            if words:
                self._by_key[words[:KEY_WORDS]].append((words, p.id))
        self._key_lens = sorted({len(k) for k in self._by_key})

    def find(self, text: str) -> set[str]:
        words = normalize_text(text).split()
        hits: set[str] = set()
        for i in range(len(words)):
            for n in self._key_lens:
                for full, pid in self._by_key.get(tuple(words[i:i + n]), ()):
                    if tuple(words[i:i + len(full)]) == full:
                        hits.add(pid)
        return hits


def _prompt_text(pair: dict[str, Any]) -> str:
    prompt = pair.get("prompt")
    if isinstance(prompt, str):
        return prompt
    return "\n".join(str(m.get("content", "")) for m in prompt or [] if isinstance(m, dict))


def check_contamination(heldout: Sequence[Problem], pair_files: Sequence[Path], *,
                        strict: bool = False, max_examples: int = 20) -> dict[str, Any]:
    """Scan pair JSONL files for held-out questions (text) and held-out ids (metadata.problem_id).

    Returns {"heldout", "pairs", "text_leaks", "id_leaks", "leaked_heldout_ids", "examples",
    "clean"}; with strict=True a leak raises ContaminationError carrying the same summary.
    """
    index = HeldoutIndex(heldout)
    n_pairs = text_leaks = id_leaks = 0
    leaked: set[str] = set()
    examples: list[dict[str, Any]] = []
    for path in pair_files:
        for lineno, pair in iter_jsonl(path, numbered=True):
            n_pairs += 1
            hits = index.find(_prompt_text(pair))
            pid = (pair.get("metadata") or {}).get("problem_id")
            id_hit = pid is not None and str(pid) in index.ids
            text_leaks += bool(hits)
            id_leaks += id_hit
            leaked.update(hits)
            if id_hit:
                leaked.add(str(pid))
            if (hits or id_hit) and len(examples) < max_examples:
                examples.append({"file": str(path), "line": lineno, "problem_id": pid,
                                 "heldout_ids": sorted(hits), "id_match": id_hit})
    result = {"heldout": len(heldout), "pairs": n_pairs, "text_leaks": text_leaks, "id_leaks": id_leaks,
              "leaked_heldout_ids": sorted(leaked)[:100], "n_leaked_heldout": len(leaked),
              "examples": examples, "clean": not (text_leaks or id_leaks)}
    if strict and not result["clean"]:
        raise ContaminationError(f"held-out contamination: {text_leaks} pairs contain a held-out question, "
                                 f"{id_leaks} share a held-out id; e.g. {examples[:3]}")
    return result
