"""Text primitives, MinHash index, diversity metrics on hand-computed inputs, collapse warnings."""
from __future__ import annotations

import pytest

from selfplay.core.records import Problem, Rollout
from selfplay.pair.diversity import (
    MinHashIndex,
    collapse_warnings,
    distinct_n,
    diversity_metrics,
    entropy_bits,
    jaccard,
    mean_pairwise_jaccard,
    normalize_text,
    round_warnings,
    word_shingles,
)
from selfplay_verifiers import answer_key


@pytest.mark.parametrize("text, expected", [
    ("  What IS 2+2?\n\n", "what is 2 + 2"),  # operators are tokens (selfplay_seeds.text)
    ("Tom has 1,000 apples; he ate 3.5!", "tom has 1000 apples he ate 3.5"),
    ("He paid $12.", "he paid 12"),
    ("x_1 -- y", "x 1 y"),  # a dash is punctuation, a lone "-" is an operator
    ("?!...", ""),
    ("Café au lait", "café au lait"),
    ("x2 and the 3rd costs 3.5.", "x2 and the 3rd costs 3.5"),
])
def test_normalize_text(text, expected):
    assert normalize_text(text) == expected


# Answers are counted by selfplay_verifiers.answer_key, the key of every vote (tests/pair/test_one_key.py); it
# is the verifier's normal form, so "\\frac{1}{2}" counts as "0.5" and a plain list as sorted.
@pytest.mark.parametrize("raw, key", [
    ("7", "7"), (" 7.0 ", "7"), ("$7$", "7"), ("7.", "7"), ("1,000", "1000"), ("-3", "-3"),
    ("0.50", "0.5"), ("\\frac{1}{2}", "0.5"), ("2,  3", "2,3"),
])
def test_answer_key(raw, key):
    assert answer_key(raw) == key


def test_shingles_and_jaccard():
    assert word_shingles("a b c d", 3) == {"a b c", "b c d"}
    assert word_shingles("A b", 3) == {"a b"}
    assert word_shingles("!!", 3) == frozenset()
    assert jaccard({"a b"}, {"a b", "c"}) == 0.5
    assert jaccard(set(), set()) == 0.0


def _text(i: int) -> str:
    words = [f"w{(i * 7919 + k * 104729) % 100003}" for k in range(40)]
    return " ".join(words)


def test_minhash_index_finds_near_duplicates_only():
    idx = MinHashIndex(num_perm=64, shingle=3, seed=0, threshold=0.8)
    assert (idx.bands, idx.rows) == (16, 4)
    idx.add(_text(i) for i in range(50))
    assert len(idx) == 50
    for i in range(50):
        words = _text(i).split()
        words[20] = "changed"  # one word: 3 of 38 shingles differ, Jaccard 35/41
        score, best = idx.best_match(" ".join(words))
        assert best == i and score == pytest.approx(35 / 41)
    assert idx.query(_text(3)) == 1.0
    assert idx.query("completely unrelated words about something else entirely here") == 0.0
    assert idx.query("") == 0.0


def test_minhash_signature_is_seeded():
    sh = word_shingles(_text(1))
    a, b = MinHashIndex(seed=1), MinHashIndex(seed=1)
    assert (a.signature(sh) == b.signature(sh)).all()
    assert not (a.signature(sh) == MinHashIndex(seed=2).signature(sh)).all()
    with pytest.raises(ValueError):
        MinHashIndex(threshold=0.0)


def test_distinct_n_and_entropy_hand_computed():
    texts = ["a b a", "a b"]
    assert distinct_n(texts, 1) == pytest.approx(2 / 5)
    assert distinct_n(texts, 2) == pytest.approx(2 / 3)   # (a b) (b a) (a b)
    assert distinct_n(texts, 3) == 1.0                    # only (a b a)
    assert distinct_n([], 2) == 0.0
    assert entropy_bits(["x", "x", "y", "y"]) == pytest.approx(1.0)
    assert entropy_bits(["x", "x", "y", "z"]) == pytest.approx(1.5)
    assert entropy_bits(["x"]) == 0.0 and entropy_bits([]) == 0.0


def _p(pid: str, q: str, origin: str = "posed") -> Problem:
    return Problem(id=pid, question=q, answer="1", origin=origin, source="t")


def _r(pid: str, i: int, completion: str, extracted: str | None) -> Rollout:
    return Rollout(problem_id=pid, sample_index=i, completion=completion, finish_reason="stop",
                   n_tokens=3, seed=0, label="correct", reason="ok", extracted=extracted)


def test_diversity_metrics_hand_computed():
    problems = [_p("p1", "a b c"), _p("p2", "A b d!"), _p("s1", "What is 2+2?", "procedural"),
                _p("s2", "what is 2 + 2", "procedural")]
    rollouts = [_r("p1", 0, "a b a", "1"), _r("p1", 1, "a b", "1.0"), _r("p1", 2, "a", "2"),
                _r("p1", 3, "", "2"), _r("p2", 0, "", "3"), _r("p2", 1, "", "3"),
                _r("s1", 0, "", None)]
    m = diversity_metrics(problems, rollouts)
    assert m["n_problems"] == 4 and m["distinct_problems"] == 3
    assert m["distinct_problem_ratio"] == pytest.approx(0.75)
    assert m["n_posed"] == 2 and m["posed_similarity"] == pytest.approx(0.5)  # {a,b,c} vs {a,b,d}
    assert m["n_rollouts"] == 7 and m["n_answers"] == 6
    assert m["distinct_1"] == pytest.approx(2 / 6)
    assert m["distinct_2"] == pytest.approx(2 / 3)
    assert m["distinct_3"] == 1.0
    assert m["answer_entropy"] == pytest.approx(0.5)          # p1: {1,1,2,2} = 1 bit, p2: 0
    assert m["answer_entropy_global"] == pytest.approx(1.5849625)  # 1, 2, 3 twice each: log2 3
    empty = diversity_metrics([], [])
    assert empty["posed_similarity"] is None and empty["answer_entropy"] is None
    assert empty["distinct_problem_ratio"] == 0.0 and empty["distinct_2"] == 0.0


def test_mean_pairwise_jaccard_sample_is_seeded():
    texts = [f"word{i % 17} word{i % 5} shared" for i in range(300)]
    a = mean_pairwise_jaccard(texts, sample=50, seed=3)
    assert a == mean_pairwise_jaccard(list(texts), sample=50, seed=3)
    assert a != mean_pairwise_jaccard(texts, sample=50, seed=4)
    assert 0.0 < a < 1.0
    assert mean_pairwise_jaccard(["only one"]) is None
    assert mean_pairwise_jaccard(["same text", "same text"]) == 1.0


BASE = {"round": 0, "distinct_problem_ratio": 1.0, "distinct_1": 0.5, "distinct_2": 0.8,
        "distinct_3": 0.9, "answer_entropy_global": 2.0, "posed_similarity": 0.2}


def test_collapse_warnings_triggered():
    # distinct_2: 0.5 < 0.7 x 0.8 = 0.56; posed_similarity: 0.3 > 0.2 / 0.7 = 0.2857
    r1 = {**BASE, "round": 1, "distinct_2": 0.5, "posed_similarity": 0.3}
    r2 = {**BASE, "round": 2, "answer_entropy_global": 1.0}
    warnings = collapse_warnings([BASE, r1, r2])
    assert len(warnings) == 3
    assert warnings[0].startswith("round 1: distinct_2")
    assert warnings[1].startswith("round 1: posed_similarity")
    assert warnings[2].startswith("round 2: answer_entropy_global")
    assert collapse_warnings([BASE, r1], keys=("distinct_1",)) == []
    no_names = [{k: v for k, v in m.items() if k != "round"} for m in (BASE, r2)]
    assert collapse_warnings(no_names)[0].startswith("round 1: answer_entropy_global")


def test_round_warnings_name_only_the_last_round():
    r1 = {**BASE, "distinct_2": 0.5}  # collapsed in round 1
    r2 = {**BASE, "answer_entropy_global": 1.0}  # round 2 collapses elsewhere
    plain = [{k: v for k, v in m.items() if k != "round"} for m in (BASE, r1, r2)]
    w = round_warnings(plain)
    assert len(w) == 1 and w[0].startswith("round 2: answer_entropy_global")
    assert round_warnings(plain[:2])[0].startswith("round 1: distinct_2")
    assert round_warnings(plain[:1]) == []


def test_collapse_warnings_not_triggered():
    ok = {**BASE, "round": 1, "distinct_1": 0.36, "distinct_2": 0.57, "posed_similarity": 0.28}
    assert collapse_warnings([BASE, ok]) == []
    assert collapse_warnings([BASE]) == [] and collapse_warnings([]) == []
    missing = {"round": 1, "distinct_1": None, "posed_similarity": None}
    assert collapse_warnings([BASE, missing]) == []
    zero_base = {**BASE, "posed_similarity": 0.0, "distinct_1": 0.0}
    assert collapse_warnings([zero_base, {**zero_base, "posed_similarity": 0.9}]) == []
    assert len(collapse_warnings([BASE, ok], min_fraction=0.8)) == 3
    with pytest.raises(ValueError):
        collapse_warnings([BASE, ok], min_fraction=0.0)
