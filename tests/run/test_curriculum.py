"""The seed curriculum (selfplay/run/curriculum.py): levels widen per generator on measured solve
rates, and the seed stream follows them."""
from __future__ import annotations

from pathlib import Path

from selfplay.config import Config
from selfplay.core import io
from selfplay.core.records import Problem, Rollout
from selfplay.run.curriculum import FILE, curriculum_line, seed_levels
from selfplay.run.round import by_source
from selfplay_seeds import is_word_problem
from selfplay_seeds import procedural_problems


def _round(out: Path, k: int, rates: dict[tuple[str, int], tuple[int, int]], levels=None) -> None:
    """OUT/round_k with, per (generator, level), one problem and paths: (correct, incorrect)."""
    rdir = out / f"round_{k}"
    rdir.mkdir(parents=True)
    probs, rolls = [], []
    for (g, lv), (good, bad) in rates.items():
        p = Problem(id=f"{g}-{lv}", question=f"q {g} {lv}", answer="1", origin="procedural", source=g, level=lv)
        probs.append(p)
        labels = ["correct"] * good + ["incorrect"] * bad + ["unknown"] * 3  # unknown never counts
        rolls += [Rollout(problem_id=p.id, sample_index=j, completion="", finish_reason="stop", n_tokens=1,
                          seed=j, label=lab) for j, lab in enumerate(labels)]
    io.write_jsonl(rdir / "problems.jsonl", probs)
    io.write_jsonl(rdir / "rollouts.jsonl", rolls)
    if levels is not None:
        io.write_json(rdir / FILE, {"widen_at": 0.35, "generators": {
            g: {"levels": lv, "widened": False, "solve_rate": None, "paths": 0, "why": ""} for g, lv in levels.items()}})


def _cfg() -> Config:
    cfg = Config()
    cfg.seeds.generators = ["add", "sub", "word_add"]
    cfg.seeds.widen_at = 0.5
    cfg.seeds.max_level = 3
    return cfg


def test_round_zero_starts_at_the_configured_levels(tmp_path):
    cur = seed_levels(_cfg(), tmp_path, 0)
    assert {g: v["levels"] for g, v in cur["generators"].items()} == {"add": [1], "sub": [1], "word_add": [1]}
    assert {v["why"] for v in cur["generators"].values()} == {"start"}


def test_a_generator_solved_well_widens_and_the_others_stay(tmp_path):
    _round(tmp_path, 0, {("add", 1): (6, 2), ("sub", 1): (3, 5), ("word_add", 1): (4, 4)})
    cur = seed_levels(_cfg(), tmp_path, 1)["generators"]
    assert cur["add"]["levels"] == [1, 2] and cur["add"]["widened"] and cur["add"]["solve_rate"] == 0.75
    assert cur["sub"]["levels"] == [1] and not cur["sub"]["widened"] and cur["sub"]["paths"] == 8
    assert cur["word_add"]["levels"] == [1, 2]  # 0.5 >= widen_at 0.5
    assert "adds level 2" in cur["add"]["why"] and "< widen_at" in cur["sub"]["why"]
    assert curriculum_line({"generators": cur}) == "seed levels: add 1/2 (+), sub 1, word_add 1/2 (+)"


def test_widening_reads_the_top_level_and_stops_at_max_level(tmp_path):
    # round 1 ran add at 1/2 and sub at 1/2/3: add's level 2 is judged, not its easy level 1
    _round(tmp_path, 1, {("add", 1): (8, 0), ("add", 2): (1, 7), ("sub", 3): (8, 0)},
           levels={"add": [1, 2], "sub": [1, 2, 3], "word_add": [1]})
    cur = seed_levels(_cfg(), tmp_path, 2)["generators"]
    assert cur["add"]["levels"] == [1, 2] and cur["add"]["solve_rate"] == 0.125
    assert cur["sub"]["levels"] == [1, 2, 3] and "max_level 3" in cur["sub"]["why"]
    assert cur["word_add"]["levels"] == [1] and "no labelled paths" in cur["word_add"]["why"]


def test_off_keeps_the_configured_levels(tmp_path):
    _round(tmp_path, 0, {("add", 1): (8, 0)})
    cfg = _cfg()
    cfg.seeds.curriculum = False
    cur = seed_levels(cfg, tmp_path, 1)["generators"]
    assert cur["add"]["levels"] == [1] and cur["add"]["why"] == "off"


def test_the_seed_stream_follows_per_generator_levels():
    gens = ["add", "sub"]
    same = procedural_problems(20, gens, [1], seed=5, per_generator={"add": [1], "sub": [1]})
    assert [p.question for p in same] == [p.question for p in procedural_problems(20, gens, [1], seed=5)]
    wide = procedural_problems(30, gens, [1], seed=5, per_generator={"add": [1, 2], "sub": [1]})
    assert {(p.source, p.level) for p in wide} == {("add", 1), ("add", 2), ("sub", 1)}


def test_by_source_counts_generators_levels_and_posed_forms():
    probs = [Problem(id="a", question="What is 2 + 3?", answer="5", origin="procedural", source="add", level=1),
             Problem(id="b", question="What is 9 - 3?", answer="6", origin="posed", source="m"),
             Problem(id="c", question="Ana picked 4 pears and her brother picked 5 more pears. How many pears "
                                      "did they pick?", answer="9", origin="posed", source="m")]
    roll = {pid: [Rollout(problem_id=pid, sample_index=j, completion="", finish_reason="stop", n_tokens=1, seed=j,
                          label=lab) for j, lab in enumerate(labels)]
            for pid, labels in {"a": ["correct", "incorrect", "unknown"], "b": ["correct"] * 2,
                                "c": ["incorrect", "correct", "correct", "correct"]}.items()}

    class P:  # a pair's metadata is all by_source reads
        def __init__(self, pid):
            self.metadata = {"problem_id": pid}

    out = by_source(probs, roll, [P("a"), P("c"), P("c")])
    assert out["add L1"] == {"problems": 1, "paths": 2, "correct": 1, "with_pairs": 1, "pairs": 1, "solve_rate": 0.5}
    assert out["posed bare"]["with_pairs"] == 0 and out["posed bare"]["solve_rate"] == 1.0
    assert out["posed word"]["pairs"] == 2 and out["posed word"]["solve_rate"] == 0.75
    assert not is_word_problem("Compute 12 minus 5.") and is_word_problem(probs[2].question)


def test_no_previous_round_keeps_the_levels(tmp_path):
    cur = seed_levels(_cfg(), tmp_path, 3)["generators"]
    assert {g: v["levels"] for g, v in cur.items()} == {"add": [1], "sub": [1], "word_add": [1]}
    assert cur["add"]["why"] == "round 2 has no solved problems"
