"""Text similarity primitives (normalisation, shingles, MinHash + LSH, repetition loops) and
the collapse guard's diversity metrics.

Self-play can collapse: the poser repeats one template, the solver repeats one phrasing, every
path lands on the same answer. `diversity_metrics` measures that per round and
`collapse_warnings` compares each round with round 0. The MinHash index lives here (not in
filters.py) because both the dedup filter and the metrics use the same notion of similarity.
"""
from __future__ import annotations

import hashlib
import math
import random
from collections import Counter, defaultdict
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from selfplay.core.records import Problem, Rollout
from selfplay_seeds.text import normalize_question
from selfplay_verifiers import answer_key

_PRIME = 4294967291  # largest prime < 2**32: (a * x + b) stays below 2**64 in uint64 arithmetic


# One normaliser for every question comparison (pose dedup, filters, contamination, eval
# --exclude): selfplay_seeds.text. Shingles and distinct-question counts use it too, so "7 - 4" and
# "7 + 4" are different questions here as well.
normalize_text = normalize_question


def word_shingles(text: str, k: int = 3) -> frozenset[str]:
    """The set of k-word shingles of the normalised text (the whole text if it has < k words)."""
    words = normalize_text(text).split()
    if not words:
        return frozenset()
    if len(words) <= k:
        return frozenset([" ".join(words)])
    return frozenset(" ".join(words[i:i + k]) for i in range(len(words) - k + 1))


def jaccard(a: frozenset[Any] | set[Any], b: frozenset[Any] | set[Any]) -> float:
    """Exact Jaccard similarity; 0.0 when both sets are empty."""
    if not a and not b:
        return 0.0
    return len(a & b) / len(a | b)


def _hash32(s: str) -> int:
    # Stable across processes (Python's str hash is salted per process).
    return int.from_bytes(hashlib.blake2b(s.encode("utf-8"), digest_size=4).digest(), "little")


def _choose_bands(num_perm: int, threshold: float) -> tuple[int, int]:
    """(bands, rows): the most selective banding that still finds a pair at `threshold` with
    probability >= 0.99 (candidates are verified with exact Jaccard, so false positives only cost
    time while false negatives lose duplicates)."""
    best = (num_perm, 1)
    for rows in range(1, num_perm + 1):
        if num_perm % rows:
            continue
        bands = num_perm // rows
        if 1.0 - (1.0 - threshold ** rows) ** bands >= 0.99:
            best = (bands, rows)
    return best


class MinHashIndex:
    """Word-shingle MinHash with LSH banding (numpy), exact Jaccard verified on candidates.

    >>> idx = MinHashIndex(threshold=0.8)
    >>> idx.add(["a b c d e f g h"])
    [0]
    >>> idx.query("a b c d e f g h")
    1.0

    `query` returns the best exact Jaccard among LSH candidates, 0.0 when there are none. Texts
    below the threshold are found only by chance, so values < threshold are lower bounds.
    """

    def __init__(self, num_perm: int = 64, shingle: int = 3, seed: int = 0,
                 threshold: float = 0.8) -> None:
        if num_perm < 1:
            raise ValueError(f"num_perm must be >= 1, got {num_perm}")
        if shingle < 1:
            raise ValueError(f"shingle must be >= 1, got {shingle}")
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        self.num_perm, self.shingle, self.threshold = num_perm, shingle, threshold
        rng = np.random.default_rng(seed)
        self._a = rng.integers(1, _PRIME, size=(num_perm, 1), dtype=np.uint64)
        self._b = rng.integers(0, _PRIME, size=(num_perm, 1), dtype=np.uint64)
        self.bands, self.rows = _choose_bands(num_perm, threshold)
        self._tables: list[dict[bytes, list[int]]] = [defaultdict(list) for _ in range(self.bands)]
        self._sets: list[frozenset[str]] = []

    def __len__(self) -> int:
        return len(self._sets)

    def signature(self, shingles: frozenset[str]) -> np.ndarray | None:
        """MinHash signature (num_perm uint64 values), None for an empty shingle set."""
        if not shingles:
            return None
        x = np.fromiter((_hash32(s) % _PRIME for s in shingles), dtype=np.uint64,
                        count=len(shingles))
        return ((self._a * x[None, :] + self._b) % np.uint64(_PRIME)).min(axis=1)

    def _keys(self, sig: np.ndarray) -> list[bytes]:
        return [sig[i * self.rows:(i + 1) * self.rows].tobytes() for i in range(self.bands)]

    def add(self, texts: Iterable[str]) -> list[int]:
        """Index texts; returns their ids (positions). Texts without words are stored but
        never matched."""
        ids = []
        for text in texts:
            sh = word_shingles(text, self.shingle)
            idx = len(self._sets)
            self._sets.append(sh)
            sig = self.signature(sh)
            if sig is not None:
                for table, key in zip(self._tables, self._keys(sig)):
                    table[key].append(idx)
            ids.append(idx)
        return ids

    def best_match(self, text: str) -> tuple[float, int | None]:
        """(best exact Jaccard among LSH candidates, id of that text) or (0.0, None)."""
        sh = word_shingles(text, self.shingle)
        sig = self.signature(sh)
        if sig is None:
            return 0.0, None
        candidates: set[int] = set()
        for table, key in zip(self._tables, self._keys(sig)):
            candidates.update(table.get(key, ()))
        best, best_id = 0.0, None
        for idx in sorted(candidates):
            j = jaccard(sh, self._sets[idx])
            if j > best:
                best, best_id = j, idx
        return best, best_id

    def query(self, text: str) -> float:
        """Best exact Jaccard of `text` against the indexed texts LSH proposes (0.0 if none)."""
        return self.best_match(text)[0]


def entropy_bits(items: Iterable[Any]) -> float:
    """Shannon entropy (bits) of the empirical distribution of `items`; 0.0 for no items."""
    counts = Counter(items)
    total = sum(counts.values())
    if total == 0:
        return 0.0
    return float(sum((c / total) * math.log2(total / c) for c in counts.values()))


def distinct_n(texts: Iterable[str], n: int) -> float:
    """Unique n-grams / total n-grams over all texts (whitespace tokens, n-grams within a text)."""
    seen: set[tuple[str, ...]] = set()
    total = 0
    for text in texts:
        toks = text.split()
        for i in range(len(toks) - n + 1):
            seen.add(tuple(toks[i:i + n]))
            total += 1
    return len(seen) / total if total else 0.0


def has_repetition(text: str, *, substring_len: int = 30, substring_count: int = 6,
                   line_min_chars: int = 5, line_count: int = 5, ngram: int = 4,
                   min_distinct_ngram: float = 0.3, min_words: int = 50) -> bool:
    """A degenerate loop, any of:
    - the occurrences of one `substring_len`-char substring (whitespace collapsed) cover at least
      substring_len x substring_count chars: six disjoint repeats, or a shorter-period loop
      ("7 + 7 + 7 + ...") as long as that (a lone run like "=====" of 40 chars is not enough);
    - one line of >= `line_min_chars` chars occurs >= `line_count` times;
    - a text of >= `min_words` words has distinct-`ngram` ratio < `min_distinct_ngram`.
    Defaults flag 1 of the 8,792 GSM8K reference solutions (train + test)."""
    lines = Counter(s for s in (ln.strip() for ln in text.splitlines()) if len(s) >= line_min_chars)
    if lines and max(lines.values()) >= line_count:
        return True
    flat = " ".join(text.split())
    size, need = substring_len, substring_len * substring_count
    if len(flat) >= need:
        windows = Counter(flat[i:i + size] for i in range(len(flat) - size + 1))
        for sub, c in windows.most_common():
            if c < substring_count:  # coverage <= c * size: no later window can reach `need`
                break
            covered, end, pos = 0, 0, flat.find(sub)
            while pos >= 0:  # length of the union of [pos, pos + size) over occurrences
                covered += pos + size - max(pos, end)
                end, pos = pos + size, flat.find(sub, pos + 1)
            if covered >= need:
                return True
    n_words = len(flat.split())
    return n_words >= max(min_words, ngram) and distinct_n([flat], ngram) < min_distinct_ngram


def mean_pairwise_jaccard(texts: Sequence[str], *, shingle: int = 1, sample: int = 200,
                          seed: int = 0) -> float | None:
    """Mean exact Jaccard over all pairs of texts (a seeded sample of at most `sample` of them);
    None if there are fewer than 2."""
    texts = list(texts)
    if len(texts) > sample:
        texts = random.Random(seed).sample(texts, sample)
    sets = [word_shingles(t, shingle) for t in texts]
    if len(sets) < 2:
        return None
    total, pairs = 0.0, 0
    for i in range(len(sets)):
        for j in range(i + 1, len(sets)):
            total += jaccard(sets[i], sets[j])
            pairs += 1
    return total / pairs


def diversity_metrics(problems: Sequence[Problem], rollouts: Sequence[Rollout], *,
                      shingle: int = 1, sample: int = 200, seed: int = 0) -> dict[str, Any]:
    """Per-round diversity numbers (definitions in docs/filters.md).

    Keys: n_problems, distinct_problems, distinct_problem_ratio, n_posed, posed_similarity
    (mean pairwise word-set Jaccard of posed questions, sampled; None if < 2), n_rollouts,
    distinct_1/2/3 (completions), answer_entropy (mean per problem over problems with an
    extracted answer; None if none), answer_entropy_global, n_answers.
    """
    normalized = [normalize_text(p.question) for p in problems]
    distinct = len(set(normalized))
    # Sort posed questions by id so the sample does not depend on input order.
    posed = [p.question for p in sorted(problems, key=lambda p: p.id) if p.origin == "posed"]
    completions = [r.completion for r in rollouts]
    by_problem: dict[str, list[str]] = defaultdict(list)
    for r in rollouts:  # answers compared as every vote compares them (selfplay_verifiers.answer_key)
        key = answer_key(r.extracted)
        if key is not None:
            by_problem[r.problem_id].append(key)
    per_problem = [entropy_bits(answers) for answers in by_problem.values()]
    all_answers = [a for answers in by_problem.values() for a in answers]
    return {
        "n_problems": len(problems),
        "distinct_problems": distinct,
        "distinct_problem_ratio": distinct / len(problems) if problems else 0.0,
        "n_posed": len(posed),
        "posed_similarity": mean_pairwise_jaccard(posed, shingle=shingle, sample=sample, seed=seed),
        "n_rollouts": len(rollouts),
        "distinct_1": distinct_n(completions, 1),
        "distinct_2": distinct_n(completions, 2),
        "distinct_3": distinct_n(completions, 3),
        "answer_entropy": sum(per_problem) / len(per_problem) if per_problem else None,
        "answer_entropy_global": entropy_bits(all_answers),
        "n_answers": len(all_answers),
    }


COLLAPSE_KEYS: tuple[str, ...] = ("distinct_problem_ratio", "distinct_1", "distinct_2",
                                  "distinct_3", "answer_entropy_global", "posed_similarity")
HIGHER_IS_WORSE: frozenset[str] = frozenset({"posed_similarity"})


def collapse_warnings(metrics_by_round: Sequence[Mapping[str, Any]], min_fraction: float = 0.7,
                      keys: Sequence[str] = COLLAPSE_KEYS) -> list[str]:
    """One warning per (round K >= 1, key) where the metric fell below `min_fraction` x round 0's
    value; for keys in HIGHER_IS_WORSE (similarity), where it rose above round 0's / min_fraction.
    Rounds are named by their "round" key when present, else by position. Missing or None values
    and a zero (or missing) round-0 baseline are skipped: there is nothing to compare against."""
    if not 0.0 < min_fraction <= 1.0:
        raise ValueError(f"min_fraction must be in (0, 1], got {min_fraction}")
    if len(metrics_by_round) < 2:
        return []
    base = metrics_by_round[0]
    warnings: list[str] = []
    for pos, metrics in enumerate(metrics_by_round[1:], start=1):
        name = metrics.get("round", pos)
        for key in keys:
            b, v = base.get(key), metrics.get(key)
            if b is None or v is None or b <= 0:
                continue
            if key in HIGHER_IS_WORSE:
                limit = b / min_fraction
                if v > limit:
                    warnings.append(f"round {name}: {key} = {v:.4g} rose above {limit:.4g} "
                                    f"(round 0 = {b:.4g} / {min_fraction:g}): possible collapse")
            else:
                limit = b * min_fraction
                if v < limit:
                    warnings.append(f"round {name}: {key} = {v:.4g} fell below {limit:.4g} "
                                    f"({min_fraction:g} x round 0 = {b:.4g}): possible collapse")
    return warnings


def round_warnings(metrics_by_round: Sequence[Mapping[str, Any]], min_fraction: float = 0.7,
                   keys: Sequence[str] = COLLAPSE_KEYS) -> list[str]:
    """The warnings about the last round of `metrics_by_round` only (each round's stats.json keeps
    its own; earlier rounds' are not repeated)."""
    if len(metrics_by_round) < 2:
        return []
    return collapse_warnings([metrics_by_round[0], {"round": len(metrics_by_round) - 1, **metrics_by_round[-1]}],
                             min_fraction=min_fraction, keys=keys)
