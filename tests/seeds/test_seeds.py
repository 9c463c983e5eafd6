from fractions import Fraction

import pytest

from selfplay.core.io import write_jsonl
from selfplay.evaluate import driver as evaluate
from selfplay.pair import contamination, diversity, filters
from selfplay.pose import posing as pose
from selfplay_seeds import GENERATORS, generate, load_jsonl_problems, procedural_problems
from selfplay_seeds.loaders import parse_hf_spec, problems_from_records
from selfplay_seeds.text import normalize_question
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


def test_loader_errors_name_file_and_line(tmp_path):
    f = tmp_path / "odd.jsonl"
    for text, needle in [('[1, 2]\n', "odd.jsonl:1: expected a JSON object"),
                         ('\n{"Body": "A has 3.", "Question": "How many?"}\n', "odd.jsonl:2: missing field 'Answer'"),
                         ('{"question": "q?", "answer": "so #### "}\n', "odd.jsonl:1: field 'answer' has nothing"),
                         ('{"question": " ", "answer": 1}\n', "odd.jsonl:1: field 'question' must be a non-empty"),
                         ('{"id": 7, "question": "a?", "answer": 1}\n{"id": 7, "question": "b?", "answer": 2}\n',
                          "odd.jsonl:2: field 'id': duplicate id '7'")]:
        f.write_text(text)
        with pytest.raises(ValueError) as e:
            load_jsonl_problems(f)
        assert str(e.value).startswith(str(f)) and needle in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ValueError, match="missing.jsonl: file not found"):
        load_jsonl_problems(tmp_path / "missing.jsonl")


def test_loader_formats_and_limit(tmp_path):
    f = tmp_path / "mix.jsonl"
    write_jsonl(f, [{"Body": "A has 3 pens", "Question": "How many?", "Answer": 3.0},
                    {"input": "B has 4.", "target": "4"}, {"problem": "What is $1+1$?", "answer": "2"},
                    {"id": "own", "question": "q?", "answer": 5}])
    ps = load_jsonl_problems(f)
    assert [p.meta["format"] for p in ps] == ["svamp", "mawps", "math", "generic"]
    assert ps[0].question == "A has 3 pens. How many?" and ps[0].answer == "3" and ps[3].id == "own"
    assert [p.id for p in load_jsonl_problems(f, limit=2)] == ["mix-0", "mix-1"]


def test_hf_rows_parse_like_file_lines():
    ps = problems_from_records([{"question": "q?", "answer": "x\n#### 1,200"}], source="openai/gsm8k")
    assert ps[0].answer == "1200" and ps[0].origin == "hf" and ps[0].id == "openai_gsm8k-0"
    with pytest.raises(ValueError, match=r"^openai/gsm8k\[0\]: missing field 'answer'"):
        problems_from_records([{"question": "q?"}], source="openai/gsm8k")


@pytest.mark.parametrize("spec,parsed", [("openai/gsm8k:main:train", ("openai/gsm8k", "main", "train")),
                                         ("gsm8k", ("gsm8k", None, "train")), ("x/y::test", ("x/y", None, "test"))])
def test_hf_spec(spec, parsed):
    assert parse_hf_spec(spec) == parsed


@pytest.mark.parametrize("spec", ["not a spec", "", "a:b:c:d", "a:b c", ":main"])
def test_bad_hf_spec(spec):
    with pytest.raises(ValueError, match="is not name\\[:config\\[:split\\]\\]"):
        parse_hf_spec(spec)


# ---------------------------------------------------------------- the one normaliser

@pytest.mark.parametrize("a,b", [
    ("What is 7 + 4?", "what is 7+4"),
    ("  What IS 7 - 4?\n", "what is 7-4 ?"),
    ("Tom has 1,000 apples; he ate 3.5!", "tom has 1000 apples he ate 3.5"),
    ("He paid $12.", "He paid 12"),
    ("What is 7 × 4?", "What is 7 * 4?"),
    ("What is 8 ÷ 2?", "What is 8 / 2?"),
    ("A two-step problem.", "a two step problem"),
    ("**Problem:** What is 2+2?", "Problem: What is 2 + 2?"),
])
def test_normaliser_matches_variants(a, b):
    assert normalize_question(a) == normalize_question(b)


@pytest.mark.parametrize("a,b", [
    ("What is 7 - 4?", "What is 7 + 4?"),
    ("What is 7 * 4?", "What is 7 / 4?"),
    ("What is 2^3?", "What is 2 3?"),
    ("Is x = 4?", "Is x 4?"),
    ("What is 7 - 4?", "What is 7 - 5?"),
    ("What is 3.5 + 1?", "What is 35 + 1?"),
    ("What is (7 - 4) * 2?", "What is 7 - 4 * 2?"),
])
def test_normaliser_keeps_operators_apart(a, b):
    assert normalize_question(a) != normalize_question(b)


def test_one_normaliser_everywhere():
    """pose dedup, the dedup filter, diversity, contamination and eval --exclude share it."""
    assert pose.normalize_question is diversity.normalize_text is filters.normalize_text \
        is contamination.normalize_text is evaluate.normalize_question is normalize_question


def test_seeds_imports_no_pipeline_stage():
    """seeds/ sits below selfplay/: it may use the leaf record, seed and JSONL-reader modules only (none
    imports anything else of the project), never a stage such as selfplay.evaluate.driver."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    allowed = {"selfplay.core.records", "selfplay.core.rng", "selfplay.core.io"}
    for path in sorted((root / "seeds").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            bad = [n for n in names if n.split(".")[0] == "selfplay" and n not in allowed]
            assert not bad, f"{path.name} imports {bad}"
    for leaf in allowed:
        tree = ast.parse((root / (leaf.replace(".", "/") + ".py")).read_text())
        mods = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        mods += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        assert not [m for m in mods if m.split(".")[0] in ("selfplay", "selfplay_seeds")], leaf
