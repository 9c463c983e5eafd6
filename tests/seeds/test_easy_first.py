"""The shipped GSM8K train split and easy-first seed files (seeds.file_order = easy_first): a
problem's level ranks its worked solution's steps, the seed stream draws only the levels the
curriculum allows, and the curriculum widens a file like a generator on the measured solve rate."""
from __future__ import annotations

from pathlib import Path

import pytest

from selfplay.config import Config, load_config
from selfplay.core import io
from selfplay.core.records import Problem, Rollout
from selfplay.pair.contamination import HeldoutGate, HeldoutMatcher
from selfplay.run.curriculum import curriculum_sources, seed_levels
from selfplay.run.round import by_source, seed_problems
from selfplay_seeds import SHIPPED, easy_first_levels, load_jsonl_problems, seed_file
from selfplay_seeds.loaders import solution_steps

ROOT = Path(__file__).resolve().parents[2]
GSM = "gsm8k_train.jsonl"


def test_the_shipped_train_split_loads_whole_with_its_licence_and_steps():
    path = seed_file("gsm8k_train")
    assert path == SHIPPED["gsm8k_train"] and path.is_file() and (path.parent / "LICENSE-GSM8K.md").is_file()
    probs = load_jsonl_problems(path, unlabelled=True)
    assert len(probs) == 7473 and all(p.meta["format"] == "gsm8k" and p.answer for p in probs)
    first = probs[0]  # Natalia's clips: two lines of work, then "#### 72"
    assert first.answer == "72" and first.meta["steps"] == 2
    assert {p.meta["steps"] for p in probs} == set(range(2, 10))
    assert seed_file("no/such/file.jsonl") == Path("no/such/file.jsonl")  # a path stays a path


def test_solution_steps_counts_the_lines_of_work_before_the_answer():
    assert solution_steps("a = <<1+2=3>>3\n\nb = 3 * 2 = <<3*2=6>>6\n#### 6") == 2
    assert solution_steps("Tom has 3 bags.\n#### 3") == 1


def _p(pid, steps, source="a.jsonl", fmt="gsm8k"):
    meta = {"format": fmt, "line": 1} | ({"steps": steps} if steps is not None else {})
    return Problem(id=pid, question=f"q{pid}", answer="1", origin="file", source=source, meta=meta)


def test_levels_rank_the_step_counts_of_each_file_fewest_first():
    ps = easy_first_levels([_p("a", 4), _p("b", 2), _p("c", 7), _p("d", 4), _p("e", 3, source="b.jsonl"),
                            _p("f", 5, source="b.jsonl")])
    assert [(p.id, p.level) for p in ps] == [("a", 2), ("b", 1), ("c", 3), ("d", 2), ("e", 1), ("f", 2)]
    with pytest.raises(ValueError, match=r"^b.jsonl:1: seeds.file_order = easy_first needs GSM8K worked solutions.* "
                                         r"this line is generic$"):
        easy_first_levels([_p("a", 2), _p("x", None, source="b.jsonl", fmt="generic")])


def _cfg(**seeds) -> Config:
    return load_config(None, {"seeds.problems": 4, "seeds.files": ["gsm8k_train"], "seeds.file_problems": 12,
                              "seeds.file_order": "easy_first", **{f"seeds.{k}": v for k, v in seeds.items()}})


def test_the_seed_stream_draws_only_the_levels_the_curriculum_allows():
    gate = HeldoutGate(HeldoutMatcher(set(), 0.8))
    cfg = _cfg()
    assert curriculum_sources(cfg) == cfg.seeds.generators + [GSM]
    easy = [p for p in seed_problems(cfg, 0, gate) if p.origin == "file"]
    assert len(easy) == 12 and {p.meta["steps"] for p in easy} == {2} and {p.level for p in easy} == {1}
    levels = {g: [1] for g in cfg.seeds.generators} | {GSM: [1, 2, 3]}
    wider = [p for p in seed_problems(cfg, 0, gate, levels) if p.origin == "file"]
    assert len(wider) == 12 and {p.meta["steps"] for p in wider} <= {2, 3, 4} and len({p.level for p in wider}) > 1
    rand = load_config(None, {"seeds.files": ["gsm8k_train"], "seeds.file_problems": 40})
    drawn = [p for p in seed_problems(rand, 0, gate) if p.origin == "file"]
    assert curriculum_sources(rand) == rand.seeds.generators and {p.level for p in drawn} == {None}
    assert max(p.meta["steps"] for p in drawn) > 3  # random order: any step count


def _file_round(out: Path, k: int, good: int, bad: int, level: int) -> None:
    rdir = out / f"round_{k}"
    rdir.mkdir(parents=True)
    p = Problem(id="gsm-1", question="q", answer="1", origin="file", source=GSM, level=level, meta={"steps": 2})
    io.write_jsonl(rdir / "problems.jsonl", [p])
    io.write_jsonl(rdir / "rollouts.jsonl", [Rollout(problem_id=p.id, sample_index=j, completion="",
                                                     finish_reason="stop", n_tokens=1, seed=j, label=lab)
                                             for j, lab in enumerate(["correct"] * good + ["incorrect"] * bad)])
    assert by_source([p], {}, [])[f"file {GSM} L{level}"]["problems"] == 1


def test_the_curriculum_widens_a_file_on_its_measured_solve_rate(tmp_path):
    cfg = _cfg(widen_at=0.5)
    assert seed_levels(cfg, tmp_path, 0)["generators"][GSM] == {
        "levels": [1], "widened": False, "solve_rate": None, "paths": 0, "why": "start"}
    _file_round(tmp_path / "hi", 0, good=5, bad=3, level=1)
    up = seed_levels(cfg, tmp_path / "hi", 1)["generators"][GSM]
    assert up["levels"] == [1, 2] and up["widened"] and up["solve_rate"] == 0.625
    _file_round(tmp_path / "lo", 0, good=1, bad=7, level=1)
    assert seed_levels(cfg, tmp_path / "lo", 1)["generators"][GSM]["levels"] == [1]


@pytest.mark.parametrize("settings,needle", [
    ({"seeds.file_order": "easy_first"}, "seeds.file_order: easy_first orders seeds.files"),
    ({"seeds.file_order": "hardest"}, "seeds.file_order: must be one of ['random', 'easy_first']"),
    ({"seeds.files": ["svamp"], "seeds.file_problems": 4, "seeds.file_order": "easy_first"}, "svamp not found"),
])
def test_bad_easy_first_settings_name_the_field(settings, needle):
    with pytest.raises(ValueError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        load_config(None, settings)


def test_easy_first_refuses_a_file_without_worked_steps_before_the_run(tmp_path):
    f = tmp_path / "plain.jsonl"
    io.write_jsonl(f, [{"question": "What is 2+2?", "answer": "4"}])
    with pytest.raises(ValueError, match=r"config: seeds.files: plain.jsonl:1: seeds.file_order = easy_first"):
        load_config(None, {"seeds.files": [str(f)], "seeds.file_problems": 1, "seeds.file_order": "easy_first"})
    load_config(None, {"seeds.files": [str(f)], "seeds.file_problems": 1})  # random order takes it
