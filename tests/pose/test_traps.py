"""Labels that hold: the solve prompt's example cannot be a right answer, generation stops at a
new "Problem:" (cut from the text), copies of the example are dropped, posed programs' float
artefacts never become golds."""
from fractions import Fraction

import pytest

from selfplay.backends.base import SamplingParams, cut_at_stop
from selfplay.backends.scripted import ScriptedBackend
from selfplay.core.records import Problem, Rollout
from selfplay.pair.filters import completion_hygiene
from selfplay.pose.checks import check_posed, posed_answer
from selfplay.prompts import (
    SOLVE_EXAMPLE_ANSWER,
    SOLVE_EXAMPLE_QUESTION,
    SOLVE_EXAMPLE_SOLUTION,
    SOLVE_STOP,
    SOLVE_TEMPLATE,
    copies_example,
    solve_messages,
)
from selfplay_seeds.procedural import GENERATORS, generate
from tests.conftest import FakeSandbox


def _gold_value(gold: str) -> Fraction:
    if gold.startswith("\\frac{"):
        num, den = gold[6:-1].split("}{")
        return Fraction(int(num), int(den))
    return Fraction(gold)


# ---------------------------------------------------------------- the worked example


def test_example_answer_is_shown_boxed_and_no_default_generator_produces_it():
    assert f"\\boxed{{{SOLVE_EXAMPLE_ANSWER}}}" in SOLVE_TEMPLATE.format(question="q")
    assert SOLVE_EXAMPLE_SOLUTION.endswith(f"\\boxed{{{SOLVE_EXAMPLE_ANSWER}}}.")
    example = Fraction(SOLVE_EXAMPLE_ANSWER)
    golds = {generate(g, level, i, seed=seed, split=split).answer
             for g in GENERATORS for level in (1, 2, 3) for seed, split in ((0, "train"), (7, "heldout"))
             for i in range(600)}
    assert len(golds) > 300  # the sample spans the generators' answer space
    assert example not in {_gold_value(g) for g in golds}


def test_copying_the_example_is_never_labelled_correct():
    from selfplay_verifiers import check

    golds = {generate(g, 1, i, seed=1).answer for g in GENERATORS for i in range(200)}
    labels = {check(g, SOLVE_EXAMPLE_SOLUTION).label for g in golds}
    assert labels == {"incorrect"}


# ---------------------------------------------------------------- stop strings

def test_cut_at_stop_keeps_the_text_before_the_first_stop():
    assert cut_at_stop("x = 8.\n\nProblem: What is 1?", SOLVE_STOP) == "x = 8.\n\n"
    assert cut_at_stop("Problem: What is 1?", SOLVE_STOP) == ""
    assert cut_at_stop("no stop here", SOLVE_STOP) == "no stop here"
    assert cut_at_stop("a B c A", ("A", "B")) == "a "  # the earliest of several
    assert cut_at_stop("abc", ()) == "abc"


def test_scripted_backend_cuts_at_a_new_problem():
    backend = ScriptedBackend(ramble_every=3)
    prompts = [solve_messages("What is 3 + 5?")]
    seeds = [list(range(12))]
    loose = backend.generate(prompts, SamplingParams(n=12, stop=()), seeds)[0]
    cut = backend.generate(prompts, SamplingParams(n=12, stop=SOLVE_STOP), seeds)[0]
    rambling = [j for j, c in enumerate(loose) if "Problem:" in c.text]
    assert rambling == [j for j in range(12) if j % 3 == 1]
    for j, (a, b) in enumerate(zip(loose, cut)):
        assert "Problem:" not in b.text and b.finish_reason == "stop" and b.n_tokens == a.n_tokens
        assert b.text == (a.text[:a.text.index("Problem:")] if j in rambling else a.text)


def test_solving_and_evaluation_use_the_shared_stop(tmp_path):
    from selfplay.config import Config
    from selfplay.core import io
    from selfplay.evaluate.driver import evaluate
    from selfplay.run.context import RoundContext
    from selfplay.run.round import stage_solve

    cfg = Config()
    cfg.solve.samples, cfg.solve.batch_problems = 6, 2
    probs = [Problem(id=f"p{i}", question=f"What is {i} + 2?", answer=str(i + 2), origin="procedural",
                     source="add") for i in range(3)]
    calls: list = []
    ctx = RoundContext(cfg=cfg, out=tmp_path, round_idx=0, model="scripted",
                       backend_factory=lambda m: ScriptedBackend(m, ramble_every=2, calls=calls))
    (tmp_path / "round_0").mkdir()
    io.write_jsonl(tmp_path / "round_0" / "problems.jsonl", probs)  # the solve stage's input
    try:
        rollouts, _ = stage_solve(ctx, probs)
    finally:
        ctx.close()
    flat = [r for rs in rollouts.values() for r in rs]
    assert len(flat) == 18 and not any("Problem:" in r.completion for r in flat)
    assert any(r.seed % 2 == 1 for r in flat)  # some samples did ramble on
    # without the cut, the invented problem's \boxed{2} would be the extracted answer
    assert all(r.extracted != "2" for r in flat if r.seed % 2 == 1 and r.problem_id != "p0")
    from selfplay_verifiers import MathVerifier

    with MathVerifier(workers=1) as verifier:
        result = evaluate(ScriptedBackend(ramble_every=2), probs, verifier, samples=4, progress=False,
                          keep_completions=True)
    texts = [rec["greedy"]["completion"] for rec in result["problems"]]
    texts += [s["completion"] for rec in result["problems"] for s in rec["samples"]]
    assert len(texts) == 15 and not any("Problem:" in t for t in texts)


@pytest.mark.model
def test_hf_backend_cuts_the_stop_string_from_the_text():
    from selfplay.backends import get_backend

    backend = get_backend("hf", "default", batch_size=4)
    try:
        prompt = [solve_messages("What is 12 + 7?")]
        full = backend.generate(prompt, SamplingParams(n=1, temperature=0.0, max_new_tokens=24), [[0]])[0][0]
        assert len(full.text) > 12
        stop = full.text[len(full.text) // 2:][:4]  # a piece of what greedy decoding will write
        cut = backend.generate(prompt, SamplingParams(n=1, temperature=0.0, max_new_tokens=24, stop=(stop,)),
                               [[0]])[0][0]
    finally:
        backend.close()
    assert cut.finish_reason == "stop" and stop not in cut.text
    assert full.text.startswith(cut.text) and full.text[len(cut.text):].startswith(stop)
    assert cut.n_tokens <= full.n_tokens


# ---------------------------------------------------------------- hygiene: copies of the example

def _roll(completion: str, extracted: str | None, label: str = "correct") -> Rollout:
    return Rollout(problem_id="p", sample_index=0, completion=completion, finish_reason="stop", n_tokens=20,
                   seed=0, label=label, reason="ok" if label == "correct" else "wrong", extracted=extracted)


def test_hygiene_drops_copies_of_the_worked_example():
    honest = "Tom starts with 3 apples and buys 4 more, so 3 + 4 = 7. The answer is \\boxed{7}."
    rollouts = [
        _roll(SOLVE_EXAMPLE_SOLUTION, "6.5", "incorrect"),                          # verbatim copy
        _roll(f"Problem: {SOLVE_EXAMPLE_QUESTION} So 3 + 5 = 8. \\boxed{{8}}", "8"),  # restates it
        _roll("I get \\boxed{\\frac{13}{2}}.", "\\frac{13}{2}", "incorrect"),     # its answer
        _roll(honest, "7"),
        _roll("Ana has 9 liters of milk and drinks 2. So 9 - 2 = 7. \\boxed{7}", "7"),
        _roll("How many liters of water does he have? 3 + 4 = 7 liters. \\boxed{7}", "7"),  # a real question's words
    ]
    kept, dropped = completion_hygiene(rollouts)
    assert dropped["copies_example"] == 3 and kept == rollouts[3:]


def test_honest_solutions_of_generated_problems_are_not_copies():
    for g in GENERATORS:
        for i in range(50):
            p = generate(g, 2, i, seed=3)
            text = f"{p.question} We work it out step by step. The answer is \\boxed{{{p.answer}}}."
            assert not copies_example(text, p.answer), (g, text)


# ---------------------------------------------------------------- posed programs: exact output

@pytest.mark.parametrize("out,expected", [
    ("3.3333333333333335", ("\\frac{10}{3}", "ok")),
    ("-3.3333333333333335", ("-\\frac{10}{3}", "ok")),
    ("0.14285714285714285", ("\\frac{1}{7}", "ok")),
    ("0.1", ("0.1", "ok")), ("2.50", ("2.5", "ok")), ("12.0", ("12", "ok")), ("6/4", ("\\frac{3}{2}", "ok")),
    ("0.30000000000000004", (None, "inexact_output")),
    ("1.4142135623730951", (None, "inexact_output")),
    ("2.9999999999999996", (None, "inexact_output")),
    ("", (None, "no_output")), ("1\n2", (None, "unparseable_output")), ("ten", (None, "unparseable_output")),
])
def test_posed_answer_is_exact_or_rejected(out, expected):
    assert posed_answer(out) == expected


def test_check_posed_rejects_inexact_output_and_accepts_exact_fractions():
    q = "Ann shares 1 cake among 3 friends and then 9 more cakes among them. How much does each get?"
    prog = "print(1 / 3 + 9 / 3)"
    assert check_posed(q, prog, FakeSandbox(["3.3333333333333335\n"] * 2), set()) == ("\\frac{10}{3}", "ok")
    q2 = "A pen costs 0.1 dollars and a pencil 0.2 dollars. What do both cost together?"
    assert check_posed(q2, "print(0.1 + 0.2)", FakeSandbox(["0.30000000000000004\n"] * 2), set()) == (
        None, "inexact_output")
