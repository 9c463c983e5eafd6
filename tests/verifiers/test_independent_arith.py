"""The independent arithmetic checker (tests/independent_arith.py): what it reads, what it skips, and
what it reports."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.independent_arith import audit_pairs, false_statements, main, statements, unevaluated_answer

ROOT = Path(__file__).resolve().parents[2]

TRUE = [
    "3 + 4 = 7",
    "So 25 + 18 = 43 apples.",
    "1 - 8 = -7",
    "6 + 6 + 6 = 18",
    "2 + 3 * 4 = 14",            # * before +
    "20 - 8 / 2 = 16",
    "12 / 4 * 3 = 9",            # left to right within * and /
    "3 x 4 = 12",
    "3 × 4 = 12 and 12 ÷ 4 = 3",
    "10 / 3 = 3.33",             # right side rounded at its places
    "2 / 3 = 0.67",
    "10 / 4 = 2.5",
    "2.5 + 4 = 6.5",
    "$1,200 + $300 = $1,500.",
    "$4.50 * 2 = $9.00",
    "He pays 3 * $2 = $6 in total.",
    "(3 + 4 = 7)",
    "Step 1: 7 + 5 = 12",
]

FALSE = [
    ("2 + 6 = 7", ["2 + 6 = 7"]),
    ("25 + 18 = 33", ["25 + 18 = 33"]),
    ("6 + 6 + 6 = 12", ["6 + 6 + 6 = 12"]),
    ("1 - 8 = 8", ["1 - 8 = 8"]),
    ("2 + 3 * 4 = 20", ["2 + 3 * 4 = 20"]),       # read with precedence, not left to right
    ("10 / 3 = 3.34", ["10 / 3 = 3.34"]),
    ("10 / 3 = 3", ["10 / 3 = 3"]),
    ("1.5 + 1.5 = 2.5", ["1.5 + 1.5 = 2.5"]),
    ("$1,200 + $300 = $1,400", ["$1,200 + $300 = $1,400"]),
    ("First 2 + 6 = 7. Then 2 + 6 = 8.", ["2 + 6 = 7"]),
    ("12 + 3 + 5 = 12 + 6 + 7 = 20", ["12 + 6 + 7 = 20"]),   # the first is partial; the second is read
    ("x=3+4=8", ["3+4=8"]),
    ("Ben has 2 x 3 + 3 = 6 cards.", ["2 x 3 + 3 = 6"]),
]

# partial expressions and other text that is not a plain statement: nothing is read
NOT_READ = [
    "3 times 4 = 12",
    "3 times 4 = 7",              # would be "4 = 7" if read from the middle
    "the sum of 3 and 4 = 7",
    "the sum of 3 and 4 + 1 = 8",
    "half of 10 + 2 = 7",
    "twice 3 + 1 = 7",
    "5 more than 2 + 1 = 8",
    "3 plus 4 - 1 = 6",
    "2:30 + 1 = 4",
    "2:30 + 1 = 3:30",
    "1/2 + 1/4 = 3/4",            # right side followed by '/'
    "3 + 4 = 7/2",
    "50 + 25 = 75%",
    "2 + 3 = 5 hundred",
    "1 + 1 = 2 thousand",
    "1 + 1 = 2 dozen",
    "2 + 3 = 5 + 1",              # right side continues
    "2 + 3 = 5 x 2",
    "3^2 + 4 = 6",                # operand glued to '^'
    "v1.2 + 3 = 4",
    "a3 + 4 = 9",
    "-3 + 5 = 8",                 # a leading sign is not read
    "(2 + 3) * 4 + 1 = 9",
    "3 1/2 + 1 = 4 1/2",
    "Step 2 3 + 4 = 9",
    "2 + 3 = 5,5",
    "4 + 4 &= 9",
    "x 2 + 3 = 9",
    "3 \\times 4 + 1 = 9",
    "3 \\cdot 4 + 1 = 9",
]


@pytest.mark.parametrize("text", TRUE)
def test_true_statements_are_read_and_hold(text):
    found = statements(text)
    assert found, f"nothing read in {text!r}"
    assert all(ok for _, ok in found), found
    assert false_statements(text) == []


@pytest.mark.parametrize("text,expected", FALSE)
def test_false_statements_are_reported(text, expected):
    assert false_statements(text) == expected


@pytest.mark.parametrize("text", NOT_READ)
def test_partial_and_non_statements_are_not_read(text):
    assert statements(text) == [], statements(text)


def test_glued_decimal_is_one_operand():
    # "1.3" is one number, never "3 + 4 = 5" with a stray "1." before it
    assert false_statements("1.3 + 4 = 5") == ["1.3 + 4 = 5"]
    assert false_statements("1.3 + 4 = 5.3") == []
    # but a sentence's full stop then a space starts a new statement
    assert false_statements("Step 1. 3 + 4 = 8") == ["3 + 4 = 8"]


def test_partial_words_do_not_hide_a_later_full_statement():
    text = "the sum of 3 and 4 = 7. Then 7 + 2 = 10."
    assert false_statements(text) == ["7 + 2 = 10"]


def test_statements_across_lines():
    text = "Step 1: 7 + 5 = 12\nStep 2: 12 - 5 = 5\n3 + 4 = 7\n2 * 3 = 7"
    assert false_statements(text) == ["12 - 5 = 5", "2 * 3 = 7"]


def test_division_by_zero_is_skipped():
    assert false_statements("5 / 0 = 0") == []


@pytest.mark.parametrize("extracted,gold,expected", [
    ("3 + 7", "10", True),
    ("10", "10", False),
    ("3/4", "0.75", False),
    ("3/4", "3/4", False),
    ("-7", "-7", False),
    ("10.", "10", False),
    ("$1,000", "1000", False),
    ("\\boxed{3 + 7}", "10", True),
    ("$\\boxed{3 + 7}$.", "10", True),
    ("So 3 + 7.", "10", False),     # words: not an expression of numbers
    ("3 + 7.", "10", True),
    ("2 * 5", "10", True),
    ("2 x 5", "10", True),
    ("20 ÷ 2", "10", True),
    ("(4 + 6)", "10", True),
    ("12 - 2", "10", True),
    ("6/8", "0.75", True),          # an unreduced fraction is an unevaluated division
    ("20/2", "10", True),
    ("1 + 9 = 10.", "10", False),  # a statement, not an expression
    ("3 + 7", "x + 1", False),      # gold not a plain number
    ("3 +", "10", False),
    ("", "10", False),
    (None, "10", False),
])
def test_unevaluated_answer(extracted, gold, expected):
    assert unevaluated_answer(extracted, gold) is expected


def _pair(chosen: str, rejected: str, extracted: str, gold: str = "10", mode: str = "cot") -> dict:
    return {
        "prompt": [{"role": "user", "content": "What is 3 + 7?"}],
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
        "metadata": {"gold": gold, "chosen_extracted": extracted, "mode": mode, "problem_id": "p"},
    }


def _write(path: Path, pairs: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    return path


def test_audit_pairs_counts_cot_only(tmp_path):
    pairs = [
        _pair("3 + 7 = 10. The answer is \\boxed{10}.", "3 + 7 = 11", "10"),
        _pair("3 + 7 = 9 ... 3 + 7 = 10. \\boxed{10}", "3 times 4 = 7", "10"),
        _pair("So the answer is 3 + 7.", "3 + 7 = 12", "3 + 7"),
        _pair("print(3 + 7 = 11)", "3 + 7 = 11", "3 + 7", mode="pot"),
    ]
    result = audit_pairs(_write(tmp_path / "pairs.jsonl", pairs))
    assert {k: result[k] for k in ("pairs", "chosen_false", "chosen_unevaluated", "rejected_false")} == {
        "pairs": 3, "chosen_false": 1, "chosen_unevaluated": 1, "rejected_false": 2}
    assert result["examples"]["chosen_false"][0]["false"] == ["3 + 7 = 9"]
    assert result["examples"]["chosen_unevaluated"][0]["extracted"] == "3 + 7"


def test_audit_pairs_keeps_at_most_ten_examples(tmp_path):
    pairs = [_pair("1 + 1 = 3", "1 + 1 = 3", "2", gold="2")] * 12
    result = audit_pairs([_write(tmp_path / "a.jsonl", pairs[:6]), _write(tmp_path / "b.jsonl", pairs[6:])])
    assert result["pairs"] == 12 and result["chosen_false"] == 12 and result["rejected_false"] == 12
    assert len(result["examples"]["chosen_false"]) == 10
    assert len(result["examples"]["rejected_false"]) == 10


def test_main_prints_counts_per_run(tmp_path, capsys):
    run = tmp_path / "run"
    _write(run / "round_0" / "pairs.jsonl", [_pair("1 + 1 = 3", "1 + 1 = 2", "2", gold="2")])
    _write(run / "round_1" / "pairs.jsonl", [_pair("So 2 + 2.", "2 + 2 = 5", "2 + 2", gold="4")])
    assert main([str(run)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {str(run): {"pairs": 2, "chosen_false": 1, "chosen_unevaluated": 1, "rejected_false": 1}}
    assert main([str(tmp_path / "missing")]) == 2


def test_module_runs_as_script(tmp_path):
    run = tmp_path / "run"
    _write(run / "round_0" / "pairs.jsonl", [_pair("3 + 7 = 10", "3 + 7 = 11", "10")])
    proc = subprocess.run([sys.executable, "-m", "tests.independent_arith", str(run)], check=False, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[str(run)]["rejected_false"] == 1
