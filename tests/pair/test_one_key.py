"""One answer key for every vote: evaluation's maj@k (selfplay.core.metrics.majority_vote), the pair
stage's pseudo-label vote (selfplay.pair.filters.majority_pseudo_labels) and answer diversity
(selfplay.pair.diversity) all group extracted answers by selfplay_verifiers.answer_key, the verifier's normal
form. There used to be two keys (metrics.normalize_answer and diversity.answer_key), so training
and evaluation voted differently."""
from __future__ import annotations

import re
from concurrent.futures import Future
from dataclasses import dataclass

import pytest

import selfplay_verifiers
from selfplay.backends.scripted import ScriptedBackend
from selfplay.core import metrics
from selfplay.core.records import Problem, Rollout
from selfplay.evaluate.driver import evaluate
from selfplay.pair import diversity, filters
from selfplay.pair.diversity import diversity_metrics
from selfplay.pair.filters import majority_pseudo_labels
from selfplay_verifiers import answer_key, extract_answer

# (answers that are one vote, their key). The comment gives what the two old keys made of the
# first answer where they split it: old eval key (maj@k) / old pair key (pseudo-labels, diversity).
GROUPS = [
    (["X = 4.", "x=4", "4"], "4"),                                 # "x=4" / "X = 4"
    (["\\boxed{7}", "7", "7."], "7"),                              # "7" / "\\boxed{7}"
    (["\\dfrac{1}{2}", "\\frac{1}{2}", "1/2", "0.5"], "0.5"),      # "\\frac{1}{2}" / "\\dfrac{1}{2}"
    (["2,  3", "2,3", "3, 2"], "2,3"),                             # "2,3" / "2, 3"
    (["18 dollars", "$18$", "18"], "18"),                          # "18dollars" / "18 dollars"
    (["\\left(1, 2\\right)", "(1, 2)", "(1,2)"], "(1,2)"),         # "(1,2)" / "\\left(1, 2\\right)"
    (["10\\,000", "10,000", "10000.0"], "10000"),                  # "10000" / "10\\,000"
    (["12345678901234567890.0", "12345678901234567890"],           # exact / "1.2345678901234567e+19"
     "12345678901234567890"),
    (["x + 1", "X+1"], "x+1"),                                     # "x+1" / "x + 1"
    (["2 1/2", "5/2", "2.5"], "2.5"),                              # "21/2" / "2 1/2"
    (["\\text{Evelyn}", "Evelyn", "evelyn"], "evelyn"),            # "\\text{evelyn}" / "\\text{Evelyn}"
    (["50\\%", "50"], "50"),                                       # "50\\%" / "50\\%"
    (["1,000", "1000", "1000.0", "+1000"], "1000"),                # both "1000": still one vote
]


@pytest.mark.parametrize("answers,key", GROUPS)
def test_one_key_per_answer(answers, key):
    assert [answer_key(a) for a in answers] == [key] * len(answers)


def test_no_answer_no_vote():
    assert answer_key(None) is None and answer_key("") is None and answer_key("  $ $ ") is None
    assert metrics.majority_vote([None, "", "5"], ["unknown", "unknown", "correct"])["votes"] == 1


def test_there_is_one_key():
    assert not hasattr(metrics, "normalize_answer")
    assert metrics.answer_key is diversity.answer_key is filters.answer_key is selfplay_verifiers.answer_key


def _rollouts(pid: str, answers: list[str | None]) -> list[Rollout]:
    return [Rollout(problem_id=pid, sample_index=i, completion="", finish_reason="stop", n_tokens=1, seed=i,
                    label="unknown", extracted=a) for i, a in enumerate(answers)]


@pytest.mark.parametrize("answers,key", GROUPS)
def test_eval_and_pair_votes_group_alike(answers, key):
    """The group outvotes two other answers in maj@k, in the pseudo-label vote and in diversity."""
    votes = answers + ["-17", "-18"] if len(answers) > 2 else answers + ["-17"]
    maj = metrics.majority_vote(votes, ["unknown"] * len(votes))
    assert maj["answer"] == key and maj["votes"] == len(answers)
    p = Problem(id="q", question="q?", answer="", origin="file", source="t")
    kept, dropped = majority_pseudo_labels([p], _rollouts("q", votes), min_agreement=0.0)
    assert [k.answer for k in kept] == [key] and kept[0].meta["votes"] == len(votes)
    one = diversity_metrics([p], _rollouts("q", answers))
    assert one["answer_entropy"] == 0.0 and one["n_answers"] == len(answers)


# ---------------------------------------------------------------- eval maj@k == the pair-side vote

class NotationBackend(ScriptedBackend):
    """The scripted solver, writing each final answer in one of several notations."""

    def _solve(self, question: str, seed: int) -> str:
        ans = self._answer(question, seed)
        if seed % 7 == 3:
            return "I am not sure."  # no final answer: no vote
        form = [f"{ans:,}", f"{ans}.0", f"\\frac{{{2 * ans}}}{{2}}", f"${ans}$", f"x = {ans}"][seed % 5]
        return f"We add the numbers. The answer is \\boxed{{{form}}}."


@dataclass(frozen=True)
class Verdict:
    label: str
    reason: str
    extracted: str | None = None


class KeyVerifier:
    """Fake: the boxed answer is correct when its key is the gold's (the real checker runs sympy)."""

    def submit(self, gold, text, extract=True):  # the call the generate-and-label loop makes
        fut = Future()
        fut.set_result(next(iter(self.verify_many([(gold, text)]))))
        return fut

    def verify_many(self, items):
        for gold, text in items:
            ans = extract_answer(text)
            if ans is None:
                yield Verdict("unknown", "no_answer")
            else:
                ok = answer_key(ans) == answer_key(gold)
                yield Verdict("correct" if ok else "incorrect", "ok" if ok else "wrong", ans)


def _pair_side_maj(rec: dict) -> tuple[str | None, bool] | None:
    """maj@k of one eval record recomputed with the pair stage's vote (majority_pseudo_labels);
    None when that vote is a tie (the pair stage drops a tied problem)."""
    p = Problem(id=rec["id"], question="q?", answer=rec["answer"], origin="file", source="t")
    rs = [Rollout(problem_id=p.id, sample_index=j, completion="", finish_reason="stop", n_tokens=1, seed=s["seed"],
                  label=s["label"], extracted=s["extracted"]) for j, s in enumerate(rec["samples"])]
    res = majority_pseudo_labels([p], rs, min_agreement=0.0, only_without_gold=False, min_votes=1)
    if res.dropped["no_answers"]:
        return None, False
    if res.dropped["tie"]:
        return None
    winner = res.kept[0].meta["majority_answer"]
    return winner, any(r.label == "correct" for r in rs if answer_key(r.extracted) == winner)


def test_loop_eval_and_selfplay_eval_give_the_pair_sides_maj_at_k():
    """The loop's evaluation and `selfplay eval` both run selfplay.evaluate.driver.evaluate; its
    maj@k, recomputed from the per-problem sample records with metrics.majority_vote and with the
    pair stage's vote, is the same."""
    probs = [Problem(id=f"t-{i}", question=f"What is {1000 + 137 * i} + {2000 + 211 * i}?",
                     answer=f"{3000 + 348 * i:,}", origin="file", source="t") for i in range(12)]
    result = evaluate(NotationBackend(correct_every=3), probs, KeyVerifier(), samples=7, batch_size=5, seed=3,
                      progress=False)
    forms = {re.sub(r"\d", "", s["extracted"]) for rec in result["problems"] for s in rec["samples"] if s["extracted"]}
    assert len(forms) >= 4  # the answers really came in several notations
    majs, ties = [], 0
    for rec in result["problems"]:
        answers, labels = [s["extracted"] for s in rec["samples"]], [s["label"] for s in rec["samples"]]
        eval_side = metrics.majority_vote(answers, labels)
        assert eval_side == rec["maj"]
        majs.append(eval_side["correct"])
        pair_side = _pair_side_maj(rec)
        if pair_side is None:  # a tie: maj@k takes the tied answer seen first, one of the top ones
            ties += 1
            top = max(sum(answer_key(a) == k for a in answers) for k in {answer_key(a) for a in answers} - {None})
            assert eval_side["votes"] == top
            continue
        assert (eval_side["answer"], eval_side["correct"]) == pair_side
    assert ties < len(probs)
    assert result["maj@k"] == pytest.approx(sum(majs) / len(majs))
    assert 0 < result["maj@k"] < 1
