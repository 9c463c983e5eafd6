"""Seed and held-out JSONL lines (issue 24): every documented format loads with its gold; a seed
question with no answer-like field at all is pseudo-labelled; a line whose gold sits under an
unknown answer-like name, or that has no question, is refused in one line naming file:line and
the fields found, and `selfplay problems` / `selfplay run` stop (exit 2) before writing problems."""
import subprocess
import sys
from pathlib import Path

import pytest

from selfplay.core import io
from selfplay_seeds.loaders import answer_like, load_jsonl_problems, problems_from_records
from tests.conftest import one_line_error

ROOT = Path(__file__).resolve().parents[2]
NO_GOLD = ("no gold answer: found fields {found}; expected one of 'answer' (with 'question' or 'problem'), "
           "'Answer' (SVAMP), 'target' (MAWPS, with 'input')")
SEED_HINT = ", or no answer-like field (here {odd}) for a majority-vote label"
NO_QUESTION = ("no question: found fields {found}; expected one of 'question', 'problem' (MATH-style), "
               "'Body' + 'Question' (SVAMP), 'input' (MAWPS)")
GOOD = {"question": "What is 1+1?", "answer": "2"}


def _file(tmp_path, *lines, name="seeds.jsonl"):
    f = tmp_path / name
    io.write_jsonl(f, list(lines))
    return f


@pytest.mark.parametrize("line,question,answer,fmt,pid", [
    ({"id": "own-7", "question": "What is 2+2?", "answer": 4}, "What is 2+2?", "4", "generic", "own-7"),
    ({"question": "Tom has 3 bags.", "answer": "3 * 6 = 18\n#### 1,018"}, "Tom has 3 bags.", "1018", "gsm8k",
     "seeds-1"),
    ({"Body": "Ann has 12 pens", "Question": "How many?", "Answer": 12.0}, "Ann has 12 pens. How many?", "12",
     "svamp", "seeds-1"),
    ({"input": "Bo has 4 cats. How many?", "target": "4.50"}, "Bo has 4 cats. How many?", "4.5", "mawps", "seeds-1"),
    ({"problem": "What is $1+1$?", "answer": "2"}, "What is $1+1$?", "2", "math", "seeds-1"),
])
@pytest.mark.parametrize("seed", [True, False])
def test_documented_format_loads_with_its_gold(tmp_path, line, question, answer, fmt, pid, seed):
    ps = load_jsonl_problems(_file(tmp_path, GOOD, line), unlabelled=seed)
    p = ps[1]
    assert (p.question, p.answer, p.meta["format"], p.id, p.meta["line"]) == (question, answer, fmt, pid, 2)
    assert "gold_trusted" not in p.meta


@pytest.mark.parametrize("line", [
    {"question": "What is 2+2?"},
    {"question": "What is 2+2?", "answer": None},  # null counts as absent
    {"id": "q9", "question": "What is 2+2?", "source": "forum", "level": 2},  # metadata is not an answer
])
def test_seed_question_without_any_answer_is_pseudo_labelled(tmp_path, line):
    f = _file(tmp_path, GOOD, line)
    p = load_jsonl_problems(f, unlabelled=True)[1]
    assert (p.question, p.answer, p.meta["format"], p.meta["gold_trusted"]) == ("What is 2+2?", "", "generic", False)
    assert p.id == line.get("id", "seeds-1")
    with pytest.raises(ValueError) as e:  # held-out and eval files always need their gold
        load_jsonl_problems(f)
    assert str(e.value) == f"{f}:2: missing field 'answer'"


@pytest.mark.parametrize("line,found,odd", [
    ({"question": "What is 2+2?", "solution": "4"}, ["question", "solution"], ["solution"]),
    ({"question": "q?", "label": 4}, ["question", "label"], ["label"]),
    ({"question": "q?", "target": 4}, ["question", "target"], ["target"]),  # MAWPS needs its "input"
    ({"question": "q?", "gold": "4", "id": 3}, ["question", "gold", "id"], ["gold"]),
    ({"question": "q?", "final_answer": "4"}, ["question", "final_answer"], ["final_answer"]),
    ({"question": "q?", "result": 4, "answer": None}, ["question", "result"], ["result"]),
    ({"question": "q?", "Answer": 4}, ["question", "Answer"], ["Answer"]),  # SVAMP's key without Body/Question
    ({"question": "q?", "groundTruth": 4}, ["question", "groundTruth"], ["groundTruth"]),
])
def test_seed_answer_under_an_unknown_name_is_refused(tmp_path, line, found, odd):
    f = _file(tmp_path, GOOD, line)
    with pytest.raises(ValueError) as e:
        load_jsonl_problems(f, unlabelled=True)
    assert str(e.value) == f"{f}:2: " + NO_GOLD.format(found=found) + SEED_HINT.format(odd=odd)
    with pytest.raises(ValueError) as e:  # an eval file says the same, without the pseudo-label hint
        load_jsonl_problems(f)
    assert str(e.value) == f"{f}:2: " + NO_GOLD.format(found=found)


@pytest.mark.parametrize("line,found", [
    ({"problem": "What is $1+1$?", "solution": "So $\\boxed{2}$.", "level": "Level 1"},
     ["problem", "solution", "level"]),  # the MATH dataset's own rows: no bare "answer"
    ({"Body": "Ann has 3 pens.", "Question": "How many?", "answer": 3}, ["Body", "Question", "answer"]),
    ({"input": "Bo has 4 cats.", "output": "4"}, ["input", "output"]),
])
@pytest.mark.parametrize("seed", [True, False])
def test_other_formats_with_an_unknown_answer_field_are_refused(tmp_path, line, found, seed):
    f = _file(tmp_path, GOOD, line)
    with pytest.raises(ValueError) as e:
        load_jsonl_problems(f, unlabelled=seed)
    assert str(e.value) == f"{f}:2: " + NO_GOLD.format(found=found)  # only question lines are pseudo-labelled


@pytest.mark.parametrize("line,found", [
    ({"solution": "4"}, ["solution"]),
    ({"prompt": "What is 2+2?", "answer": "4"}, ["prompt", "answer"]),
    ({"id": 5, "question": None, "answer": "4"}, ["id", "answer"]),
    ({}, []),
])
@pytest.mark.parametrize("seed", [True, False])
def test_line_without_a_question_is_refused(tmp_path, line, found, seed):
    f = _file(tmp_path, GOOD, line)
    with pytest.raises(ValueError) as e:
        load_jsonl_problems(f, unlabelled=seed)
    assert str(e.value) == f"{f}:2: " + NO_QUESTION.format(found=found)


def test_hf_rows_are_refused_the_same_way():
    with pytest.raises(ValueError) as e:
        problems_from_records([GOOD, {"question": "q?", "solution": "4"}], source="me/set")
    assert str(e.value) == "me/set[1]: " + NO_GOLD.format(found=["question", "solution"])
    with pytest.raises(ValueError) as e:
        problems_from_records([{"text": "q?"}], source="me/set")
    assert str(e.value) == "me/set[0]: " + NO_QUESTION.format(found=["text"])


@pytest.mark.parametrize("name", ["answer", "Answer", "answers", "solution", "label", "labels", "gold",
                                  "gold_answer", "target", "final_answer", "finalAnswer", "result", "ground_truth",
                                  "GT", "expected_output", "output", "correct", "rationale", "answer2"])
def test_answer_like_names(name):
    assert answer_like(name)


@pytest.mark.parametrize("name", ["question", "id", "ID", "source", "level", "type", "Type", "Equation", "idx",
                                  "problem", "Body", "topic", "difficulty", "meta", "options", "category"])
def test_not_answer_like_names(name):
    assert not answer_like(name)


# ---------------------------------------------------------------- the CLI stops before solving

TOML = """
[run]
seed = 3
out = "{out}"
[model]
backend = "scripted"
name = "scripted-model"
[seeds]
problems = 2
files = ["{seeds}"]
file_problems = 2
[pose]
enabled = false
[solve]
samples = 2
[train]
enabled = false
[eval]
enabled = false
"""


def sp(*args):
    return subprocess.run([sys.executable, "-m", "selfplay", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, check=False)


def test_cli_problems_refuses_a_seed_file_without_gold(tmp_path):
    seeds = _file(tmp_path, GOOD, {"question": "What is 2+2?", "solution": "4"})
    cfg = tmp_path / "c.toml"
    cfg.write_text(TOML.format(out=tmp_path / "out", seeds=seeds))
    line = one_line_error(sp("problems", "--round", "0", "--config", cfg), f"{seeds}:2: no gold answer")
    assert line == "selfplay: error: config: seeds.files: " + f"{seeds}:2: " + NO_GOLD.format(found=["question", "solution"]) \
        + SEED_HINT.format(odd=["solution"])
    assert not list(tmp_path.rglob("problems.jsonl"))


def test_cli_run_stops_before_solving(tmp_path):
    """`selfplay run` stops with the same error line when it reads its config: OUT is not even made."""
    seeds = _file(tmp_path, GOOD, {"question": "What is 2+2?", "target": 4})
    cfg = tmp_path / "c.toml"
    cfg.write_text(TOML.format(out=tmp_path / "out", seeds=seeds))
    r = sp("run", "--config", cfg)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    errors = [x for x in r.stderr.splitlines() if x.startswith("selfplay: error:")]
    assert errors == r.stderr.strip().splitlines(), r.stderr  # one line, nothing before it
    assert not (tmp_path / "out").exists()
    assert errors[0].startswith(f"selfplay: error: config: seeds.files: {seeds}:2: no gold answer: "
                                f"found fields ['question', 'target']")  # refused with the config, before OUT exists
    assert not [f.name for f in tmp_path.rglob("*.jsonl") if f != seeds]  # no problems, rollouts or pairs


def test_cli_pseudo_labels_a_seed_question_without_answer(tmp_path):
    """The same run with the answer-like field dropped: the question loads without a gold."""
    seeds = _file(tmp_path, GOOD, {"question": "What is 2+2?"})
    out = tmp_path / "out"
    cfg = tmp_path / "c.toml"
    cfg.write_text(TOML.format(out=out, seeds=seeds))
    r = sp("problems", "--round", "0", "--config", cfg)
    assert r.returncode == 0, r.stderr[-2000:]
    by_q = {p["question"]: p for p in io.iter_jsonl(out / "round_0" / "problems.jsonl")}
    assert by_q["What is 2+2?"]["answer"] == "" and by_q["What is 2+2?"]["meta"]["gold_trusted"] is False
    assert by_q["What is 1+1?"]["answer"] == "2"
