from fractions import Fraction

import pytest

from seeds import GENERATORS, generate, load_jsonl_problems, procedural_problems
from selfplay.io import write_jsonl

from tests.conftest import SHARED_DATA, needs_shared

DATA = str(SHARED_DATA)


@pytest.mark.parametrize("name", sorted(GENERATORS))
@pytest.mark.parametrize("level", [1, 2, 3])
def test_program_prints_gold(name, level, capsys):
    for i in range(5):
        p = generate(name, level, i, seed=7)
        exec(p.program, {})  # trusted: our own generator's program
        printed = capsys.readouterr().out.strip()
        gold = p.answer.replace("\\frac{", "").replace("}{", "/").replace("}", "")
        assert Fraction(printed) == Fraction(gold), (p.question, printed, p.answer)


def test_reproducible_from_seed_and_index():
    a = generate("word_add", 2, 17, seed=3)
    assert a == generate("word_add", 2, 17, seed=3)
    assert a != generate("word_add", 2, 18, seed=3)
    assert generate("add", 1, 0, seed=0).id == "train-add-L1-000000"


def test_procedural_distinct_and_exclude():
    ps = procedural_problems(40, ["add", "sub"], [1], seed=1)
    assert len({p.question for p in ps}) == 40
    held = frozenset(p.question for p in procedural_problems(30, ["add", "sub"], [1], seed=1, split="heldout"))
    train = procedural_problems(40, ["add", "sub"], [1], seed=1, exclude=held)
    assert not held & {p.question for p in train}


def test_unknown_generator_and_level():
    with pytest.raises(ValueError, match="seeds.generators"):
        generate("nope", 1, 0)
    with pytest.raises(ValueError, match="seeds.level"):
        generate("add", 0, 0)


@needs_shared
def test_shared_data_formats():
    g = load_jsonl_problems(f"{DATA}/gsm8k_test.jsonl", limit=3)
    assert g[0].answer == "18" and g[0].origin == "file" and g[0].id == "gsm8k_test-0"
    s = load_jsonl_problems(f"{DATA}/svamp_test.jsonl", limit=1)
    assert s[0].answer == "145" and "How big is each group" in s[0].question
    m = load_jsonl_problems(f"{DATA}/mawps_test.jsonl", limit=1)
    assert m[0].answer == "43"


def test_gsm8k_thousands_separator(tmp_path):
    f = tmp_path / "g.jsonl"
    write_jsonl(f, [{"question": "How many?", "answer": "so\n#### 1,800"}, {"question": "q2?", "answer": 2.0}])
    ps = load_jsonl_problems(f)
    assert [p.answer for p in ps] == ["1800", "2"]


def test_bad_line_names_file_and_line(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"question": "a?", "answer": "1"}\n{"question": "b?"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: missing field"):
        load_jsonl_problems(f)
    f.write_text('{"question": "a?", "answer": "1"}\nnot json\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: invalid JSON"):
        load_jsonl_problems(f)
