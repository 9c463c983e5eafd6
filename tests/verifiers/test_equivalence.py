"""Equivalence policies (docs/verifiers.md), one table row per rule, gold first."""
from __future__ import annotations

import pytest

from selfplay_verifiers import Gold, check, equivalent, parse_gold
from selfplay_verifiers.mathcheck import fast_verdict
from selfplay_verifiers.numbers import Num, numbers_match, parse_number, screen

C, I, U = "correct", "incorrect", "unknown"

NUMBERS = [  # decided by the exact fast path, no sympy
    ("72", "72", C), ("72", "72.0", C), ("72", "73", I), ("72", "-72", I),
    ("-3", "-3", C), ("1000", "1,000", C), ("1000", "1000.00", C),
    ("\\frac{1}{2}", "0.5", C), ("0.5", "\\frac12", C), ("1/2", "\\dfrac{1}{2}", C),
    ("\\frac{1}{2}", "2/4", C), ("-\\frac{1}{2}", "-0.5", C), ("-\\frac{1}{2}", "\\frac{-1}{2}", C),
    ("-\\frac{1}{2}", "\\frac{1}{2}", I), ("3", "\\frac{9}{3}", C), ("0.1", "1/10", C),
    # decimal precision: round-match the stated digits, >= 4 significant digits
    ("1/3", "0.333", I), ("1/3", "0.3333", C), ("\\frac{1}{3}", "0.3333333", C),
    ("1/3", "0.3334", I), ("2/3", "0.6667", C), ("2/3", "0.6666", I), ("2/3", "0.67", I),
    ("200/3", "66.67", C), ("1/8", "0.13", I), ("1/8", "0.125", C), ("18", "18.0001", I),
    ("0.3333", "1/3", I),  # the gold is exact: an exact prediction must equal it
    ("2.5", "2 1/2", C), ("5/2", "2\\frac{1}{2}", C), ("-2.5", "-2 1/2", C),  # mixed numbers
    ("1000", "1\\,000", C), ("1000", "1{,}000", C), ("1000", "1 000", C),
    # percent: the sign is dropped, never a x100 conversion
    ("50", "50\\%", C), ("50\\%", "50", C), ("0.5", "50\\%", I), ("50\\%", "0.5", I),
    # units, currency, assignments
    ("18", "18 dollars", C), ("18", "\\$18", C), ("18", "$18", C), ("5", "x = 5", C),
    ("x = 5", "5", C), ("90", "90^\\circ", C), ("18", "18 \\text{ apples}", C),
]

SHAPES = [
    ("(1,2]", "(1, 2]", C), ("(1,2]", "[1,2]", I), ("(1,2]", "(1,2)", I), ("[1,2)", "[1,2)", C),
    ("(-\\infty, 3)", "x < 3", C), ("(3, \\infty)", "x > 3", C), ("[3, \\infty)", "x \\geq 3", C),
    ("(1, 2]", "1 < x \\leq 2", C), ("(3, \\infty)", "x \\geq 3", I),
    ("(1,2)", "(1,2)", C), ("(1,2)", "(2,1)", I), ("(1,2,3)", "(1,2)", I),
    ("2, 3", "3, 2", C), ("2, 3", "2, 3, 4", I), ("\\{1,2\\}", "\\{2,1\\}", C),
    ("\\{1,2\\}", "1, 2", C), ("2, 3", "x = 2 \\text{ or } x = 3", C),
    ("10, 4, 2", "4, 12, 2", I), ("5", "\\{5\\}", I), ("(1,2)", "\\{1,2\\}", I),
    ("(-\\infty, 1) \\cup (2, \\infty)", "(2, \\infty) \\cup (-\\infty, 1)", C),
    ("Monday", "monday", C), ("yes", "no", I), ("no solution", "No Solution", C),
    ("\\{1,3\\}", "{1, 3}", C), ("12:00", "1:00", I), ("7:32", "7:32", C),
    ("-12;-11;-10", "\\{-12, -11, -10\\}", C), ("p=5,q=2;p=7,q=2", "(5,2),(7,2)", C),
    ("(11,7)or(7,11)", "(7,11), (11,7)", C), ("\\pm 2021", "2021", I),
    ("x < 1", "-x > -1", C), ("x < 1", "x > -1", I), ("[-2, 7]", "-2 \\le x \\le 7", C),
    ("0<f(x)<1", "(0,1)", C), ("|x| < 2", "(-2, 2)", C), ("|x| < 2", "(-\\infty, 2)", I),
    ("5", "5 or more", I), ("2", "AZYUK2A", I), ("1", "-[0,1)", I),
]

SYMBOLIC = [
    ("x^2-1", "(x-1)(x+1)", C), ("x^2-1", "x^2+1", I), ("x^2-1", "(x+1)(x-1)", C),
    ("2x+2", "2(x+1)", C), ("\\frac{x}{2}", "0.5x", C), ("x", "y", I),
    ("\\sqrt{8}", "2\\sqrt{2}", C), ("\\sqrt{2}", "1.41", I), ("\\sqrt{2}", "1.414", C), ("\\sqrt{2}", "1.415", I),
    ("2\\pi", "\\pi \\cdot 2", C), ("\\pi", "3.1416", C), ("\\pi", "3.14", I),
    ("\\frac{\\sqrt{3}}{2}", "\\frac{1}{2}\\sqrt{3}", C), ("\\frac{\\sqrt{3}}{2}", "\\sqrt{3}", I),
    ("18", "9*2", C), ("18", "\\frac{36}{2}", C), ("\\sqrt{2}", "sqrt(2)", C),
    ("x+y=1", "2x+2y=2", C), ("x+y=1", "x-y=1", I), ("e^{x}", "\\exp(x)", C),
    ("\\log_2 8", "3", C), ("(x-1)^2", "x^2-2x+1", C), ("(\\sqrt{2}, 1)", "(\\sqrt{2}, 1)", C),
    ("(\\sqrt{2}, 1)", "(1, \\sqrt{2})", I), ("\\sin(x)", "\\cos(x)", I),
    # relative tolerance: tiny nonzero numbers are not zero, 1 + 10^-45 is not 1
    ("2", "2ab", I), ("0", "10^{-50}", I), ("1", "1 + 10^{-45}", I), ("\\sqrt{3}", "\\sqrt3", C),
    ("\\sqrt{2}+\\sqrt{5}", "\\sqrt 2+\\sqrt 5", C), ("x \\geq 5", "x >= 5", C),
    ("2x+4y-3=0", "y=-\\frac{1}{2}x+\\frac{3}{4}", C), ("x+2n+1", "x+1", I),
    ("\\pm 2021", "\\{-2021, 2021\\}", C),
    ("\\begin{pmatrix}1 & 2 \\\\ 3 & 4\\end{pmatrix}", "\\begin{bmatrix}1 & 2 \\\\ 3 & 4\\end{bmatrix}", C),
    ("\\begin{pmatrix}1 & 2 \\\\ 3 & 4\\end{pmatrix}", "\\begin{bmatrix}1 & 2 \\\\ 3 & 5\\end{bmatrix}", I),
]


@pytest.mark.parametrize("gold,pred,label", NUMBERS + SHAPES + SYMBOLIC)
def test_policy_table(gold: str, pred: str, label: str) -> None:
    v = equivalent(gold, pred)
    assert v.label == label, v
    assert v.reason == {"correct": "ok", "incorrect": "wrong"}[label]


@pytest.mark.parametrize("gold,pred,label", NUMBERS + SHAPES)
def test_numbers_and_shapes_need_no_sympy(gold: str, pred: str, label: str) -> None:
    v, rest = fast_verdict(parse_gold(gold), pred)
    assert rest is None and v is not None and v.label == label


COMPLETIONS = [  # realistic small-model outputs, with the gold they are checked against
    ("18", "Janet has 16 - 3 - 4 = 9 eggs. 9 * 2 = 18. So the answer is 18.", C, "ok"),
    ("18", "She makes 9 * 2 = $18 a day.\n\\boxed{18}", C, "ok"),
    ("18", "9 eggs * $2 = $18\n#### 18", C, "ok"),
    ("18", "The answer is $18.", C, "ok"),
    ("18", "The answer is 16.", I, "wrong"),
    ("18", "16 - 3 = 13, 13 - 4 = 9, and 9 * 2 = 18 dollars per day at the market I think",
     I, "no_answer"),
    ("18", "Let's think step by step. She has 16 eggs and uses 7, so", I, "no_answer"),
    ("3", "The answer is 2. Wait, let me recount. The answer is 3.", U, "ambiguous"),
    ("3", "The answer is 3. Let me double-check: yes, the answer is 3.", C, "ok"),
    ("\\frac{1}{2}", "The probability is $\\boxed{\\dfrac{1}{2}}$.", C, "ok"),
    ("(1,2]", "So the solution set is $\\boxed{(1, 2]}$.", C, "ok"),
    ("x^2-1", "Expanding, \\boxed{(x-1)(x+1)}", C, "ok"),
    ("18", "The final answer is: the total number of dollars", U, "parse_error"),
    ("18", "The answer is 18 because 9 * 2 = 18.", C, "ok"),
    ("18", "18", C, "ok"),
]


@pytest.mark.parametrize("gold,completion,label,reason", COMPLETIONS)
def test_check_completions(gold: str, completion: str, label: str, reason: str) -> None:
    v = check(gold, completion)
    assert (v.label, v.reason) == (label, reason), v


@pytest.mark.parametrize("pred", ["10 00", "2 3"])
def test_digits_separated_by_spaces_are_ambiguous(pred: str) -> None:
    v = equivalent("1000" if pred == "10 00" else "6", pred)
    assert (v.label, v.reason) == (U, "parse_error")


def test_list_over_max_items_is_too_large_not_a_prefix_match() -> None:
    gold = ", ".join(str(i) for i in range(64))
    v = equivalent(gold, ", ".join(str(i) for i in range(65)))
    assert (v.label, v.reason) == (U, "too_large")
    assert equivalent(gold, ", ".join(str(i) for i in range(64))).is_correct


def test_check_extract_false_takes_the_text_as_the_answer() -> None:
    assert check("18", "So the answer is 18.", extract=False).label == U  # prose, not an answer
    assert check("18", "18", extract=False).is_correct


def test_no_answer_reports_nothing_extracted() -> None:
    v = check("5", "no numbers here at all, sorry about that friend")
    assert (v.label, v.reason, v.extracted) == (I, "no_answer", None)


def test_gold_is_parsed_once_and_reused() -> None:
    g = parse_gold("\\boxed{x^2-1}")
    assert isinstance(g, Gold) and g.norm == "x^2-1" and g.error is None
    assert equivalent(g, "(x-1)(x+1)").is_correct
    assert g.cache, "the sympy parse of the gold should be cached on the Gold"
    cached = dict(g.cache)
    assert equivalent(g, "x^2+1").is_incorrect
    assert all(g.cache[k] is v for k, v in cached.items())


def test_gsm8k_style_gold_solution() -> None:
    g = parse_gold("Janet sells 16 - 3 - 4 = 9 eggs.\n9 * 2 = <<9*2=18>>18\n#### 18")
    assert g.norm == "18"
    assert check(g, "\\boxed{18}").is_correct


@pytest.mark.parametrize("gold", ["", "   ", None, 18])
def test_unusable_gold_is_unknown(gold) -> None:
    v = check(gold, "\\boxed{18}")
    assert (v.label, v.reason) == (U, "parse_error")


PATHOLOGICAL = [
    "100000000!", "9^{9^{9^{9}}}", "9^9^9^9", "\\sum_{i=1}^{10^{12}} i", "1" * 100_000,
    "2^{1000000}", "1e999999", "\\binom{1000000000}{500000000}", "(10^{10})!",
    "{" * 200 + "1" + "}" * 200, "x" * 5000,
]


@pytest.mark.parametrize("pred", PATHOLOGICAL, ids=lambda s: s[:20])
def test_screen_rejects_before_sympy(pred: str) -> None:
    v, rest = fast_verdict(parse_gold("18"), pred)
    assert rest is None and (v.label, v.reason) == (U, "too_large")


@pytest.mark.parametrize("ok", ["2^{10}", "10^{100}", "5!", "\\frac{1}{2}", "x^2 + 2^{3}",
                                "\\sum_{i=1}^{10} i", "e^{x}"])
def test_screen_accepts_ordinary_answers(ok: str) -> None:
    assert screen(ok) is None


def test_sympy_garbage_is_parse_error_not_a_crash() -> None:
    v = equivalent("x^2", "\\frac{{")
    assert v.label == U and v.reason in ("parse_error", "error")


def test_numbers_match_rule_directly() -> None:
    third = Num(parse_number("1/3").value)
    assert not numbers_match(third, parse_number("0.333"))
    assert numbers_match(third, parse_number("0.33333"))
    assert parse_number("0.50").sig == 2 and parse_number("0.50").decimals == 2
    assert parse_number("\\infty").inf == 1 and parse_number("-\\infty").inf == -1
    assert parse_number("1/0") is None and parse_number("abc") is None


FAST_PARSER_CORPUS = [
    "1/2x", "2^3x", "x^2y", "\\sqrt{2}x", "-x^2", "2(x+1)", "(x+1)(x-1)", "e^2", "\\sqrt[3]{8}",
    "\\frac{1}{2}x", "x^{-1}", "X+1", "ab", "2.5x", "\\pi r^2", "e", "E", "2e", "x/2/3", "-2^2",
    "\\frac{x}{y}z", "2\\cdot 3", "2\\times 3", "0.1+0.2", "-\\frac{1}{2}", "\\frac{-1}{2}",
    "2^{10}", "a^{b+c}", "1-\\frac{1}{e}", "-(x-1)", "\\sqrt{x^2+1}", "x^{1/2}",
]


@pytest.mark.parametrize("tex", FAST_PARSER_CORPUS)
def test_fast_parser_reads_like_latex2sympy(tex: str) -> None:
    # a gold may take one parser and its prediction the other: they must agree exactly
    import sympy
    from latex2sympy2_extended import latex2sympy

    from selfplay_verifiers.symbolic import _exact
    from selfplay_verifiers.texparse import parse_simple
    assert sympy.simplify(parse_simple(tex) - _exact(latex2sympy(tex))) == 0


@pytest.mark.parametrize("tex", ["\\sin x", "x^23", "2 3", "|x|", "x!", "\\infty", "x_1", "2^-1"])
def test_fast_parser_declines_what_it_does_not_know(tex: str) -> None:
    from selfplay_verifiers.texparse import Unsupported, parse_simple
    with pytest.raises(Unsupported):
        parse_simple(tex)


def test_garbage_never_raises() -> None:
    import random
    rng = random.Random(7)
    alphabet = ["\\frac", "{", "}", "(", ")", "[", "]", "1", "23", ".", ",", "x", "^", "-", "+",
                "\\sqrt", "=", "<", "\\{", "\\}", " ", "!", "/", "\\pi", "e", "%", "$", "\\boxed"]
    for _ in range(150):
        gold = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 8)))
        pred = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        v = check(gold, pred)
        assert v.label in (C, I, U) and isinstance(v.reason, str)


# Arithmetic chains (verifiers/chains.py): the value counts only when every side agrees.
@pytest.mark.parametrize("gold,completion,label", [
    ("7", "\\boxed{6 + 1 = 7}", "correct"),
    ("7", "So 6+1=7. The answer is 6+1=7", "correct"),
    ("7", "\\boxed{7 = 6+1}", "correct"),
    ("12", "\\boxed{3 \\times 4 = 12}", "correct"),
    ("\\frac{3}{2}", "\\boxed{\\frac{6}{4} = 1.5}", "correct"),
    ("19", "\\boxed{12 + 7 = 9}", "incorrect"),   # wrong claim inside the chain
    ("9", "\\boxed{12 + 7 = 9}", "incorrect"),    # the last side alone is not enough
    ("7", "\\boxed{8 = 3+4}", "incorrect"),
    ("8", "\\boxed{6 + 1 = 7}", "incorrect"),
])
def test_arithmetic_chains(gold, completion, label):
    from selfplay_verifiers import check

    assert check(gold, completion).label == label
