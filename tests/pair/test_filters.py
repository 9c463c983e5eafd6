"""Filters on crafted inputs: every count and every kept id is asserted."""
from __future__ import annotations

import math

import pytest

from selfplay.core.metrics import pass_counts, pass_rates
from selfplay.core.records import Pair, Problem, Rollout
from selfplay.pair.filters import (QUALITY_WEIGHTS, FilterResult, completion_hygiene, dedup_problems, has_repetition,
                                   keep_best, majority_pseudo_labels, perplexity_filter, quality_components,
                                   quality_score, solve_rate_band)

LONG = ("A farmer has 48 sheep in the north field and 36 goats in the south field. Every morning "
        "he moves 5 sheep to the barn and feeds each goat two bundles of hay. After a week he "
        "sells one third of the remaining sheep at the market. How many animals are left?")


def prob(pid: str, question: str, answer: str = "1", origin: str = "posed", **meta) -> Problem:
    return Problem(id=pid, question=question, answer=answer, origin=origin, source="t", meta=meta)


def roll(pid: str, i: int = 0, completion: str = "So 3 + 4 = 7. The answer is \\boxed{7}.", *,
         label: str | None = "correct", extracted: str | None = "7", reason: str | None = "ok",
         finish: str = "stop", n_tokens: int = 20, logprob: float | None = None) -> Rollout:
    return Rollout(problem_id=pid, sample_index=i, completion=completion, finish_reason=finish,
                   n_tokens=n_tokens, seed=0, label=label, reason=reason, extracted=extracted,
                   logprob_mean=logprob)


def ids(records) -> list[str]:
    return [getattr(r, "id", None) or f"{r.problem_id}/{r.sample_index}" for r in records]


# ---------------------------------------------------------------- FilterResult

def test_filter_result_unpacks_as_pair_and_carries_info():
    res = FilterResult([1, 2], {"x": 1}, {"note": 3})
    kept, dropped = res
    assert kept == [1, 2] and dropped == {"x": 1}
    assert res.kept is kept and res.dropped is dropped and res.info == {"note": 3}
    assert len(res) == 2


# ---------------------------------------------------------------- dedup

def test_dedup_exact_near_heldout_and_reference():
    problems = [
        prob("a", LONG),
        prob("b", "  " + LONG.upper().replace(".", " !") + "  "),   # exact after normalisation
        prob("c", LONG.replace("barn", "stable")),                   # one word changed
        prob("d", LONG.replace("48 sheep", "50 sheep")),             # one number changed
        prob("e", "What is 12 + 35?"),
        prob("f", "What is 12 + 36?"),                               # short: a different problem
        prob("g", "Seed question about trains leaving a station at noon, at 60 km/h."),
        prob("h", "Held-out: Janet's ducks lay 16 eggs per day. She eats three for breakfast "
                  "every morning and bakes muffins for her friends every day with four. She "
                  "sells the remainder at the farmers' market daily for $2 per fresh duck egg."),
        prob("i", "?!? ..."),
        prob("j", "what is 12 + 35"),                                # duplicate of e
    ]
    against = ["seed question about trains leaving a station at noon at 60 km / h"]  # "/" is a token
    heldout = ["Janet's ducks lay 16 eggs per day. She eats three for breakfast every morning "
               "and bakes muffins for her friends every day with four. She sells the remainder "
               "at the farmers' market daily for $3 per fresh duck egg."]
    kept, dropped = dedup_problems(problems, against, heldout=heldout)
    assert ids(kept) == ["a", "e", "f"]
    assert dropped == {"empty": 1, "heldout_near_duplicate": 1, "duplicate": 3,
                       "near_duplicate": 2}


def test_dedup_threshold_and_exact_heldout():
    near = LONG.replace("barn", "stable")
    kept, dropped = dedup_problems([prob("a", LONG), prob("c", near)], near_threshold=0.95)
    assert ids(kept) == ["a", "c"] and dropped["near_duplicate"] == 0
    kept, dropped = dedup_problems([prob("x", "How many? 7")], heldout=["how many 7"])
    assert kept == [] and dropped["heldout_near_duplicate"] == 1


def test_dedup_no_false_positive_on_unrelated_long_texts():
    other = ("A train leaves the station at 9 am travelling at 80 km per hour toward a city 320 "
             "km away. A second train leaves the city at 10 am at 60 km per hour. When do the "
             "trains meet and how far from the station are they at that moment?")
    kept, dropped = dedup_problems([prob("a", LONG), prob("b", other)], against=[LONG[:40]])
    assert ids(kept) == ["a", "b"] and sum(dropped.values()) == 0


# ---------------------------------------------------------------- solve-rate band

def _labels(pid: str, labels: str) -> list[Rollout]:
    name = {"c": "correct", "i": "incorrect", "u": "unknown"}
    return [roll(pid, k, label=name[ch]) for k, ch in enumerate(labels)]


def test_solve_rate_band_reasons_and_origin_passthrough():
    problems = [prob("easy", "q1"), prob("hard", "q2"), prob("mid", "q3"), prob("none", "q4"),
                prob("edge", "q5"), prob("seed", "q6", origin="procedural"), prob("absent", "q7")]
    rollouts = (_labels("easy", "cccc") + _labels("hard", "iiii") + _labels("mid", "ciuu")
                + _labels("none", "uu") + _labels("edge", "ciiiiiii") + _labels("seed", "cccc"))
    assert pass_counts(r.label for r in rollouts if r.problem_id == "mid") == (1, 2)
    assert pass_rates(rollouts)["mid"] == 1 / 2 and pass_rates(rollouts)["none"] is None
    kept, dropped = solve_rate_band(problems, rollouts)
    assert ids(kept) == ["mid", "edge", "seed"]  # edge: 1/8 == low is inside (inclusive)
    assert dropped == {"too_easy": 1, "too_hard": 1, "no_verdicts": 2}
    kept, _ = solve_rate_band(problems, rollouts, low=0.2, origins=("posed", "procedural"))
    assert ids(kept) == ["mid"]


def test_solve_rate_band_rejects_bad_band():
    with pytest.raises(ValueError, match="low"):
        solve_rate_band([], [], low=0.9, high=0.1)


# ---------------------------------------------------------------- completion hygiene

GOOD = ("Natalia sold 48 clips in April. In May she sold half as many, 48 / 2 = 24 clips.\n"
        "Altogether she sold 48 + 24 = 72 clips in April and May.\n"
        "Weng earns 12 / 60 = 0.2 dollars per minute. For 50 minutes she earned 0.2 x 50 = 10.\n"
        "Betty has 100 / 2 = 50 dollars. Her parents give 15 and her grandparents 15 x 2 = 30.\n"
        "She still needs 100 - 50 - 15 - 30 = 5 dollars. The answer is \\boxed{72}.")


def test_has_repetition_detectors():
    assert not has_repetition(GOOD)
    loop = "Let me compute 3 + 4 again carefully. " * 8
    assert has_repetition(loop)
    assert not has_repetition(loop, substring_count=100, line_count=100, min_distinct_ngram=0.0)
    assert has_repetition("7 + " * 50)                 # period 4 < 30: overlapping windows
    assert not has_repetition("Total: " + "=" * 40 + " 12")  # a lone run is not a loop
    assert not has_repetition("abcdefghij" * 3 + " end " + "abcdefghij" * 3, line_count=99)
    lines = "\n".join(["x = 7", "so"] * 5)   # a short line repeated 5 times
    assert has_repetition(lines) and not has_repetition(lines, line_count=6)
    # Low distinct-4gram ratio only (substring and line rules switched off).
    cycle = " ".join(["one two three four five six"] * 12)
    assert has_repetition(cycle, substring_count=10**6, line_count=10**6)
    assert not has_repetition(cycle, substring_count=10**6, line_count=10**6, min_words=100)


def test_completion_hygiene_reasons():
    rollouts = [
        roll("ok", completion=GOOD),
        roll("trunc", completion="So 3 + 4 = ", finish="length", extracted=None),
        roll("noans", completion="I think it is big.", extracted=None, label="unknown",
             reason="no_answer"),
        roll("noans2", completion="Hmm.", extracted="  ", label="incorrect", reason="wrong"),
        roll("unverified", completion="I think it is big.", extracted=None, label=None,
             reason=None),
        roll("loop", completion="The answer is 7 and then " * 10 + "\\boxed{7}"),
        roll("chars", completion="x" * 4001),
        roll("toks", completion=GOOD, n_tokens=600),
    ]
    kept, dropped = completion_hygiene(rollouts, max_tokens=512)
    assert ids(kept) == ["ok/0", "unverified/0"]
    assert dropped == {"unfinished": 1, "too_long": 2, "copies_example": 0, "no_answer": 2, "repetition": 1}
    kept, dropped = completion_hygiene(rollouts, max_tokens=None, max_chars=None)
    assert dropped["too_long"] == 0 and dropped["repetition"] == 2  # "x" * 4001 is a loop too


# ---------------------------------------------------------------- perplexity

def test_perplexity_filter_bounds_and_missing():
    rollouts = [roll("low", logprob=-5.0), roll("high", logprob=-0.01), roll("mid", logprob=-1.0),
                roll("none", logprob=None), roll("nan", logprob=math.nan),
                roll("lo_edge", logprob=-3.0), roll("hi_edge", logprob=-0.05)]
    res = perplexity_filter(rollouts)
    assert ids(res.kept) == ["mid/0", "none/0", "nan/0", "lo_edge/0", "hi_edge/0"]
    assert res.dropped == {"low_logprob": 1, "high_logprob": 1}
    assert res.info == {"no_logprob": 2}
    kept, dropped = perplexity_filter(rollouts, min_logprob=-0.5, max_logprob=0.0)
    assert ids(kept) == ["high/0", "none/0", "nan/0", "hi_edge/0"]
    assert dropped == {"low_logprob": 3, "high_logprob": 0}
    with pytest.raises(ValueError):
        perplexity_filter(rollouts, min_logprob=0.0, max_logprob=-1.0)


# ---------------------------------------------------------------- majority pseudo-labels

def _votes(pid: str, answers: list[str | None]) -> list[Rollout]:
    return [roll(pid, k, extracted=a, label="unknown") for k, a in enumerate(answers)]


def test_majority_pseudo_labels_vote_tie_low_and_gold():
    problems = [prob("maj", "q", answer="", gold_trusted=False),
                prob("tie", "q", answer=""),
                prob("low", "q", answer=""),
                prob("few", "q", answer=""),
                prob("wrong", "q", answer="5", gold_trusted=False),
                prob("gold", "q", answer="9", origin="file")]
    rollouts = (_votes("maj", ["7", "7.0", " 7 ", "8", None])
                + _votes("tie", ["3", "4", "4", "3"])
                + _votes("low", ["1", "2", "3", "4", "4"])
                + _votes("few", ["2", None])
                + _votes("wrong", ["1,000", "1000", "999"])
                + _votes("gold", ["1", "2", "3"]))
    res = majority_pseudo_labels(problems, rollouts)
    assert ids(res.kept) == ["maj", "wrong", "gold"]
    assert res.dropped == {"no_answers": 1, "tie": 1, "low_agreement": 1}
    assert res.info == {"relabelled": 2, "changed_answer": 1, "has_gold": 1}
    maj, wrong, gold = res.kept
    assert maj.answer == "7" and maj.meta["agreement"] == 0.75 and maj.meta["votes"] == 4
    assert maj.meta["gold_source"] == "majority" and maj.meta["gold_trusted"] is False
    assert wrong.answer == "1000" and wrong.meta["previous_answer"] == "5"
    assert wrong.meta["agreement"] == pytest.approx(2 / 3)
    assert gold is problems[-1]  # trusted gold untouched by default


def test_majority_pseudo_labels_on_gold_problems_and_threshold():
    problems = [prob("gold", "q", answer="9", origin="file"),
                prob("gold2", "q", answer="9", origin="file")]
    rollouts = _votes("gold", ["1", "2", "3"]) + _votes("gold2", ["9", "9", "8"])
    kept, dropped = majority_pseudo_labels(problems, rollouts, only_without_gold=False)
    assert ids(kept) == ["gold2"] and dropped["tie"] == 1  # 1/2/3 is a three-way tie
    assert kept[0].answer == "9" and kept[0].meta["majority_answer"] == "9"
    kept, dropped = majority_pseudo_labels(problems, rollouts, min_agreement=0.7,
                                           only_without_gold=False)
    assert kept == [] and dropped == {"no_answers": 0, "tie": 1, "low_agreement": 1}


# ---------------------------------------------------------------- quality score / keep_best

def pair(pid: str, *, rate=0.5, ct=50, rt=100, lp=-0.5, extracted="7", idx=0,
         chosen="So 3 + 4 = 7. The answer is \\boxed{7}.", rejected="It is 8.") -> Pair:
    return Pair(prompt=[{"role": "user", "content": "q"}],
                chosen=[{"role": "assistant", "content": chosen}],
                rejected=[{"role": "assistant", "content": rejected}],
                metadata={"problem_id": pid, "origin": "posed", "pass_rate": rate,
                          "chosen_tokens": ct, "rejected_tokens": rt, "chosen_logprob": lp,
                          "chosen_extracted": extracted, "pair_index": idx})


def test_quality_score_hand_computed():
    assert sum(QUALITY_WEIGHTS.values()) == pytest.approx(1.0)
    # I = 1, B = 0.5 + 0.5 * 50/100 = 0.75, L = 1, F = 1 -> 0.4 + 0.15 + 0.2 + 0.2
    assert quality_score(pair("a")) == pytest.approx(0.95)
    comps = quality_components(pair("b", rate=0.875, ct=100, rt=50, lp=-4.0,
                                    chosen="7 is \\boxed{7} or \\boxed{7}" + " tail" * 40))
    assert comps == {"informativeness": pytest.approx(0.25), "brevity": 0.25, "logprob": 0.0,
                     "format": 0.5}
    neutral = pair("c", rate=None, ct=None, rt=None, lp=None, extracted=None,
                   chosen="abcd", rejected="abcd")
    assert quality_components(neutral) == {"informativeness": 0.5, "brevity": 0.5,
                                           "logprob": 0.5, "format": 0.0}
    assert quality_score(neutral, {"format": 1.0}) == 0.0


def test_keep_best_ranks_caps_and_is_deterministic():
    pairs = [pair("p2", rate=1.0, idx=0),   # 0.55
             pair("p1", idx=0),             # 0.95
             pair("p1", idx=1),             # 0.95, tie broken by pair_index
             pair("p3", idx=0),             # 0.95, tie: problem id p3 after p1
             pair("p4", rate=0.75, idx=0)]  # 0.75
    res = keep_best(pairs, keep_fraction=0.6)
    assert [(p.metadata["problem_id"], p.metadata["pair_index"]) for p in res.kept] == [
        ("p1", 0), ("p1", 1), ("p3", 0)]
    assert res.dropped == {"per_problem_cap": 0, "low_quality": 2}
    assert res.kept[0].metadata["quality_score"] == pytest.approx(0.95)
    assert "quality_score" not in pairs[1].metadata  # inputs are not mutated
    kept, dropped = keep_best(pairs, keep_fraction=0.6, max_per_problem=1)
    assert [p.metadata["problem_id"] for p in kept] == ["p1", "p3", "p4"]
    assert dropped == {"per_problem_cap": 1, "low_quality": 1}
    rev, _ = keep_best(list(reversed(pairs)), keep_fraction=0.6)
    assert sorted((p.metadata["problem_id"], p.metadata["pair_index"]) for p in rev) == [
        ("p1", 0), ("p1", 1), ("p3", 0)]
    assert len(keep_best(pairs).kept) == 5 and keep_best([], 0.5).kept == []
    with pytest.raises(ValueError):
        keep_best(pairs, keep_fraction=1.5)
