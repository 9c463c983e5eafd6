"""Held-out contamination check: no held-out question may appear in any training pair's prompt.

Texts are compared after `normalize_text` (selfplay_seeds.text.normalize_question, the one question
normaliser: NFKC, lowercase, prose punctuation dropped, operators kept as tokens), so punctuation,
case, spacing and line breaks can't hide a copy, and "7 - 4" is still not "7 + 4". A pair leaks when a
held-out question's normalized word sequence occurs as a contiguous word sequence of the pair's
normalized prompt (the prompt wraps the question in a template, so this is a substring test on
word boundaries, not equality). Pairs whose metadata problem_id equals a held-out id are counted
separately. Lookup is by each question's first few words, so the cost is linear in prompt length.
What it does not catch: paraphrases and changed numbers (that needs n-gram overlap or embeddings).

Before solving, `HeldoutMatcher` (inside a counting `HeldoutGate`) checks every problem of a round (procedural,
file, HF, posed) against the held-out questions: exact after normalisation, or word-shingle MinHash
near-duplicate (selfplay.pair.diversity.MinHashIndex, the index the dedup filter uses), so a copy with a
word changed is dropped before it is solved. The post-training scan above stays as the proof.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Iterable, Sequence

from selfplay.core.io import iter_jsonl
from selfplay.core.records import Problem
from selfplay.pair.diversity import MinHashIndex
from selfplay_seeds.text import normalize_question

KEY_WORDS = 8  # index held-out questions by their first 8 normalized words


class ContaminationError(ValueError):
    """Raised by check_contamination(..., strict=True) when a held-out question leaked."""


normalize_text = normalize_question  # kept under its old name for callers and tests


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


# ---------------------------------------------------------------- before solving

class HeldoutMatcher:
    """Is a question a held-out question: "exact" (equal after normalize_question), "near" (MinHash
    word-shingle Jaccard >= threshold, verified exactly on LSH candidates) or None."""

    def __init__(self, heldout: Iterable[str], threshold: float = 0.8, *, num_perm: int = 64,
                 shingle: int = 3, seed: int = 0) -> None:
        texts = sorted(set(heldout))  # sorted: index ids (and so results) never depend on set order
        self.n = len(texts)
        self.threshold = threshold
        self._exact = {normalize_text(t) for t in texts}
        self._index = MinHashIndex(num_perm, shingle, seed, threshold)
        self._index.add(texts)

    def match(self, question: str) -> str | None:
        if not self.n:
            return None
        if normalize_text(question) in self._exact:
            return "exact"
        return "near" if self._index.query(question) >= self.threshold else None


class HeldoutGate:
    """A HeldoutMatcher that counts what it checks and drops, per origin: the record a round keeps
    (OUT/round_K/contamination_pre.json) of problems removed before solving."""

    def __init__(self, matcher: HeldoutMatcher, max_examples: int = 10) -> None:
        self.matcher = matcher
        self.checked: Counter[str] = Counter()
        self.dropped: dict[str, Counter[str]] = defaultdict(Counter)
        self.examples: list[dict[str, Any]] = []
        self._max_examples = max_examples

    def rejects(self, p: Problem) -> bool:
        """True (and counted) when `p` matches a held-out question."""
        self.checked[p.origin] += 1
        kind = self.matcher.match(p.question)
        if kind is None:
            return False
        self.dropped[p.origin][kind] += 1
        if len(self.examples) < self._max_examples:
            self.examples.append({"id": p.id, "origin": p.origin, "match": kind, "question": p.question[:200]})
        return True

    def keep(self, problems: Sequence[Problem]) -> list[Problem]:
        return [p for p in problems if not self.rejects(p)]

    def summary(self) -> dict[str, Any]:
        return {"heldout": self.matcher.n, "near_threshold": self.matcher.threshold,
                "checked": dict(sorted(self.checked.items())),
                "dropped": {o: dict(sorted(c.items())) for o, c in sorted(self.dropped.items())},
                "dropped_total": sum(sum(c.values()) for c in self.dropped.values()),
                "examples": self.examples}
