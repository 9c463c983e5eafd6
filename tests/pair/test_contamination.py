"""Held-out contamination before solving: the matcher (exact after the one normaliser, MinHash
near-duplicates), and a round that drops and counts a file seed copying a held-out question
before any problem is solved."""
from __future__ import annotations

import pytest

from selfplay.config import load_config
from selfplay.core import io
from selfplay.core.records import Problem
from selfplay.pair.contamination import HeldoutGate, HeldoutMatcher

HELD = ("Janet's ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes "
        "muffins for her friends every day with four. She sells the remainder at the farmers' market "
        "daily for $2 per fresh duck egg. How much in dollars does she make every day at the market?")
NEAR = HELD.replace("muffins", "cakes").upper().replace(". ", " ; ")  # case, punctuation, one word
OTHER = ("A robe takes 2 bolts of blue fiber and half that much white fiber. How many bolts in total "
         "does it take?")


def prob(pid: str, q: str, origin: str = "file") -> Problem:
    return Problem(id=pid, question=q, answer="1", origin=origin, source="t")


@pytest.mark.parametrize("question,expected", [
    (HELD, "exact"),
    ("  " + HELD.lower().replace(",", "").replace("?", " ?") + "\n", "exact"),
    (NEAR, "near"),
    (OTHER, None),
    ("What is 7 + 4?", "exact"),
    ("what is 7+4", "exact"),
    ("What is 7 - 4?", None),  # an operator is part of the question
    ("What is 7 + 5?", None),  # short: one number changed is a different problem
])
def test_matcher(question, expected):
    m = HeldoutMatcher([HELD, "What is 7 + 4?"], 0.8)
    assert m.match(question) == expected


def test_empty_heldout_matches_nothing():
    assert HeldoutMatcher([], 0.8).match(HELD) is None


def test_gate_counts_by_origin_and_kind():
    gate = HeldoutGate(HeldoutMatcher([HELD], 0.8))
    kept = gate.keep([prob("a", HELD), prob("b", NEAR, "posed"), prob("c", OTHER), prob("d", NEAR)])
    assert [p.id for p in kept] == ["c"]
    s = gate.summary()
    assert s["checked"] == {"file": 3, "posed": 1} and s["dropped_total"] == 3
    assert s["dropped"] == {"file": {"exact": 1, "near": 1}, "posed": {"near": 1}}
    assert [e["id"] for e in s["examples"]] == ["a", "b", "d"]


def _never(model: str):
    raise AssertionError("a backend was started: problems must be checked before any solve")


def test_file_seed_near_copy_of_heldout_is_dropped_before_solving(tmp_path):
    from selfplay.run.context import make_context
    from selfplay.run.round import contamination_dropped, round_stats, stage_problems

    held = tmp_path / "heldout.jsonl"
    io.write_jsonl(held, [{"question": HELD, "answer": "18"}, {"question": "What is 7 + 4?", "answer": "11"}])
    seeds = tmp_path / "seeds.jsonl"
    io.write_jsonl(seeds, [{"question": NEAR, "answer": "18"}, {"question": OTHER, "answer": "3"},
                           {"question": "What is 7 - 4?", "answer": "3"},
                           {"question": "WHAT IS 7+4 ?", "answer": "11"}])
    cfg = load_config(None, {"run.out": str(tmp_path / "out"), "model.backend": "scripted", "model.name": "m",
                             "seeds.problems": 0, "seeds.files": [str(seeds)], "seeds.file_problems": 4,
                             "pose.attempts": 0, "eval.heldout_problems": 0, "eval.files": [str(held)],
                             "eval.ood": False})
    ctx = make_context(cfg, tmp_path / "out", 0, backend_factory=_never)
    ctx.dir.mkdir(parents=True)
    problems = stage_problems(ctx)
    assert sorted(p.question for p in problems) == sorted([OTHER, "What is 7 - 4?"])
    pre = io.read_json(ctx.dir / "contamination_pre.json")
    assert pre["dropped"] == {"file": {"exact": 1, "near": 1}} and pre["checked"] == {"file": 4}
    assert pre["heldout"] == 2 and pre["dropped_total"] == 2 == contamination_dropped(ctx.dir)
    assert not (ctx.dir / "rollouts.jsonl").exists()
    assert round_stats(ctx, problems, {}, [], {})["contamination_dropped"] == 2
