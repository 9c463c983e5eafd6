"""Answer extraction and normalization: tables from the documented rules and real outputs."""
from __future__ import annotations

import time

import pytest

from selfplay_verifiers.extract import extract_answer, find_answer, find_boxed, normalize_answer

EXTRACT = [
    # boxed: last one wins, braces matched, escaped braces skipped
    ("\\boxed{18}", "18"),
    ("So $\\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}"),
    ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
    ("\\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt{3}}{2}"),
    ("the result is \\fbox{7}", "7"),
    ("\\boxed 5 is it", "5"),
    # explicit phrases
    ("So the answer is 18.", "18"),
    ("Janet makes 9 * 2 = $18 per day.\nThe answer is $18.", "$18"),
    ("The final answer is $\\frac{1}{2}$.", "$\\frac{1}{2}$"),
    ("Final answer: 42", "42"),
    ("**Answer:** 7", "7"),
    ("The answer is 3.5.", "3.5"),
    ("The answer is 18 because 9 * 2 = 18.", "18"),
    ("She sells 9 eggs.\n#### 1,000", "1,000"),
    ("The answer is: 12 apples", "12"),
    # connected boxes are one list answer; identical repeats are fine
    ("The roots are \\boxed{-2} and \\boxed{1}.", "-2, 1"),
    ("$y_1 = \\boxed{3} \\quad \\text{and} \\quad y_2 = \\boxed{4}$", "3, 4"),
    ("\\boxed{7}. Checking: yes. Final answer: \\boxed{7}", "7"),
    ("The answer is 7 + 13, which is 18.", "18"),  # the value stated last wins
    ("Final Answer: The volume of $ABCD$ is 120. I hope it is correct.", "120"),
    ("Answer \\[ 9 \\]", "9"),
    ("Answer $$ \n 9 \n $$", "9"),
    ("Therefore $x \\geq 5$ is the solution.", "x \\geq 5"),
    ("We find x = 2. Therefore, the probability that Alice wins is 2/3.", "2/3"),
    ("The answer is [-3, 2].\nI apologize for the mistake in the previous solution. Let me "
     "correct it. The answer is (-3, 2).", "(-3, 2)"),  # an explicit retraction withdraws
    # bare answers
    ("72", "72"),
    ("  $\\frac{1}{2}$  ", "$\\frac{1}{2}$"),
    ("x = 5", "x = 5"),
    ("18 dollars", "18 dollars"),
    ("-\\dfrac{3}{4}", "-\\dfrac{3}{4}"),
]

NONE = [  # nothing stated, or different final answers stated (ambiguous)
    "First \\boxed{3}, then correcting myself: \\boxed{4}.",
    "The answer is 3. Final: \\boxed{5}",
    "The answer is 2. Wait, no. The answer is 3.",
    "",
    "   ",
    "First she has 16 eggs, eats 3 and bakes 4, so 9 are left and 2 each gives lots.",
    "Let me think about this step by step.\nWe have 5 apples and 3 pears.\nThen 8 fruits.",
    "I think it is 18",
    "\\boxed{}",
    "Earlier \\boxed{3}. Now the final \\boxed{4",  # truncated last box: do not guess
    "The answer is 8.\nHmm, 4 + 5 = 9. So, the answer is 9.",
    "Final answer: 9\n\nProblem: What is 3 + 4?\nFinal answer: 7",  # invented tail
    "Answer $ \n 9 \n $",  # inline math does not span lines
]


def test_ambiguous_is_reported_by_find_answer() -> None:
    assert find_answer("\\boxed{8} then \\boxed{9}") == ("9", "ambiguous")
    assert find_answer("The answer is 3. So the answer is 3.") == ("3", None)


@pytest.mark.parametrize("text,expected", EXTRACT)
def test_extract_table(text: str, expected: str) -> None:
    assert extract_answer(text) == expected


@pytest.mark.parametrize("text", NONE)
def test_extract_none(text: str) -> None:
    assert extract_answer(text) is None


def test_last_number_fallback_is_off_by_default() -> None:
    text = "We add 3 and 4 to get 7, then double it to 14 and we are done here."
    assert extract_answer(text) is None
    assert extract_answer(text, last_number=True) == "14"
    assert extract_answer("nothing numeric here at all friends", last_number=True) is None


def test_bare_can_be_disabled() -> None:
    assert extract_answer("72", allow_bare=False) is None


@pytest.mark.parametrize("bad", [None, 18, b"\\boxed{1}", ["\\boxed{1}"]])
def test_extract_never_raises_on_non_strings(bad) -> None:
    assert extract_answer(bad) is None


def test_find_boxed_escaped_and_nested() -> None:
    assert find_boxed("\\boxed{a{b{c}}d}") == "a{b{c}}d"
    assert find_boxed("\\boxed{\\}}") == "\\}"
    assert find_boxed("no box") is None


NORMALIZE = [
    ("$18$", "18"),
    ("\\$18", "18"),
    ("$18", "18"),
    ("18 dollars", "18"),
    ("18 \\text{ dollars}", "18"),
    ("12.5 cm^2", "12.5"),
    ("2 pi", "2 pi"),  # a math word is not a unit
    ("1,000", "1000"),
    ("-12,345.5", "-12345.5"),
    ("1,000,000", "1000000"),
    ("2, 3", "2, 3"),  # a list
    ("2,3", "2,3"),  # a list: the group after the comma is not three digits
    ("1,00", "1,00"),
    ("(1,100)", "(1,100)"),  # an interval: commas are only thousands in a lone number
    ("50\\%", "50"),
    ("50%", "50"),
    ("90^\\circ", "90"),
    ("90^{\\circ}", "90"),
    ("\\dfrac12", "\\frac{1}{2}"),
    ("\\tfrac{3}{4}", "\\frac{3}{4}"),
    ("\\frac 1{2}", "\\frac{1}{2}"),
    ("x = 5", "5"),
    ("x_1 = -2", "-2"),
    ("x \\in (0, 1]", "(0, 1]"),
    ("y = 2x + 1", "2x + 1"),
    ("f(x) = x^2", "x^2"),
    ("x^2 + y^2 = 1", "x^2 + y^2 = 1"),  # a real equation stays
    ("18.", "18"),
    ("\\text{Monday}", "Monday"),
    ("\\left( 1, 2 \\right]", "( 1, 2 ]"),
    ("\\boxed{7}", "7"),
    ("\\(3\\)", "3"),
    ("**7**", "7"),
    ("\u22125", "-5"),
    ("17\\text{ any text}", "17"),  # text after a value drops out
    ("\\frac{1}{3} \\text{meters}", "\\frac{1}{3}"),
    ("125\\textnormal{ miles}", "125"),
    ("15\\mbox{ cm}^2", "15"),
    ("2ab", "2ab"),  # letters glued to a number are never a unit
    ("5 or more", "5 or more"),  # only known unit words are stripped
    ("18 apples", "18 apples"),
    ("\\sqrt3", "\\sqrt{3}"),
    ("\\sqrt 2+\\sqrt 5", "\\sqrt{2}+\\sqrt{5}"),
    ("x >= 5", "x \\geq 5"),
    ("x \\ne 3", "x \\neq 3"),
    ("(p,q) = (3,2)", "(3,2)"),
    ("7 = 11a+c", "7 = 11a+c"),  # not a name: an equation stays
    ("11,\\! 111,\\! 100", "11111100"),
    ("\\begin{bmatrix}1\\\\2\\end{bmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}"),
    ("x = 8/2 = 4", "4"),
]


@pytest.mark.parametrize("raw,expected", NORMALIZE)
def test_normalize_table(raw: str, expected: str) -> None:
    assert normalize_answer(raw) == expected


def test_one_megabyte_completion_is_linear() -> None:
    text = ("word 12 and more words 3.5, " * 40_000)[:1_000_000] + "\nThe answer is 5."
    t0 = time.perf_counter()
    assert extract_answer(text) == "5"
    assert extract_answer(text[:-17]) is None
    assert time.perf_counter() - t0 < 1.0


def test_deeply_nested_braces_do_not_recurse() -> None:
    text = "\\boxed{" + "{" * 50_000 + "1" + "}" * 50_000 + "}"
    assert extract_answer(text) == "{" * 50_000 + "1" + "}" * 50_000
