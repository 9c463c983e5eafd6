import pytest

from selfplay.backends.base import SamplingParams
from selfplay.backends.scripted import ScriptedBackend
from selfplay.core.records import Problem
from selfplay.pose.checks import canonical_answer, check_posed, clean_question
from selfplay.pose.posing import pose_problems
from tests.conftest import FakeSandbox, needs_bwrap


def test_clean_question():
    assert clean_question(" Ann has 3 cats and 2 dogs. How many pets?") == "Ann has 3 cats and 2 dogs. How many pets?"
    assert clean_question("  ") is None and clean_question("**What is 2 + 2?**") == "What is 2 + 2?"


@pytest.mark.parametrize("out,expected", [
    ("12\n", "12"), ("12.0", "12"), ("2.50", "2.5"), ("6/4", "\\frac{3}{2}"), ("-3", "-3"),
    ("1\n2\n", None), ("", None), ("twelve", None), ("1/0", None),
])
def test_canonical_answer(out, expected):
    assert canonical_answer(out) == expected




@pytest.mark.parametrize("outputs,reason", [
    (["5\n", "5\n"], "ok"), (["5\n", "6\n"], "nondeterministic"), ([None], "program_runtime_error"),
    (["1\n2\n"], "unparseable_output"), (["\n"], "no_output"),
])
def test_check_posed_reasons(outputs, reason):
    ans, why = check_posed("Ann has 3 cats and 2 dogs. How many?", "print(3 + 2)", FakeSandbox(outputs), set())
    assert why == reason and (ans == "5") == (reason == "ok")


def test_check_posed_rejects_duplicates_and_missing_parts():
    sb = FakeSandbox([])
    assert check_posed("Ann has 3 cats and 2 dogs. How many?", "print(3 + 2)", sb, {"ann has 3 cats and 2 dogs how many"})[1] == "duplicate"
    assert check_posed(None, "print(5)", sb, set())[1] == "no_question"
    assert check_posed("Ann has 3 cats and 2 dogs. How many?", None, sb, set())[1] == "no_program"


@needs_bwrap
def test_pose_with_real_sandbox_counts_and_dedups():
    from selfplay_verifiers.sandbox import Sandbox

    ex = [Problem(id="e", question="What is 1 + 2?", answer="3", origin="procedural", source="add", program="print(1 + 2)")]
    with Sandbox(timeout=3) as sb:
        kept, stats = pose_problems(ScriptedBackend(), sb, ex, attempts=6, shots=1, params=SamplingParams(n=1),
                                    seed=0, round_idx=0, model="scripted")
    assert stats["attempted"] == 6 and stats["kept"] == len(kept) == 6 - sum(stats["rejected"].values())
    for p in kept:
        a, b = [int(x) for x in p.question.split() if x.isdigit()]
        assert p.answer == str(a + b) and p.origin == "posed"


@pytest.mark.parametrize("text,question", [  # seen from the embedded model
    ("Question: What is 7 + 13?", "What is 7 + 13?"),
    ("What is 5 - 4? Python Code:", "What is 5 - 4?"),
    ("The new example is:  Problem: What is 5 - 1? Python: 7.  Also, I will write a program", "What is 5 - 1?"),
    ("A new math word problem is:", "A new math word problem is:"),
])
def test_clean_question_keeps_only_the_question(text, question):
    assert clean_question(text) == question


@pytest.mark.parametrize("question,program,reason", [
    # seen from the embedded model: a preamble instead of a question, a program that ignores it
    ("A new math word problem is:", "print(3 * 4 - 24)", "not_a_question"),
    ("The new math word problem: 1 + 11 = 2", "print(1 + 11)", "not_a_question"),
    ("What is 5 - 1 in total?", "print(7)", "program_ignores_question"),
    ("Ann has 3 cats. How many legs do they have?", "print(3 * 4)", "program_ignores_question"),
    ("What is 5 - 1 in total?", "print(5 -", "program_ignores_question"),  # does not tokenize
    ("Ann has three cats and 1,200 fish. How many pets?", "print(3 + 1200)", "ok"),
    ("Tom has 7 apples and eats 2. What percent is left?", "print(round((7 - 2) / 7 * 100, 2))", "ok"),
    ("Ann's x1 is 4. What is 4 + 4?", "x1 = 4\nprint(x1 + 4)  # 8", "ok"),
])
def test_check_posed_question_and_program_consistency(question, program, reason):
    ans, why = check_posed(question, program, FakeSandbox(["8\n", "8\n"]), set())
    assert why == reason


def test_program_must_use_a_number_of_the_question():
    q = "Tom has 6 coins, gets 7 and then 6 more. How many coins is Tom having now?"  # seen: gold 90 from nowhere
    assert check_posed(q, "print(sum(2 * x for x in range(10)))", FakeSandbox(["90\n"] * 2), set())[1] == \
        "program_ignores_question"
    assert check_posed("Tom has 7 coins and gets 6 more. How many coins?", "print(7 + 6)",
                       FakeSandbox(["13\n"] * 2), set()) == ("13", "ok")
