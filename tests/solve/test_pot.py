"""Program-of-thought solving (solve.mode pot | mixed): programs run in the real sandbox, their last
printed line is verified, failures are labelled and never chosen, pairs compare like with like.

Every chosen program is re-run in a fresh sandbox and its output re-verified against the gold,
independently of the pipeline (so the check can fail, and never passes on zero pairs)."""
import pytest

from selfplay.config import load_config
from selfplay.core import io
from selfplay.prompts import extract_program, solve_messages
from selfplay.run.loop import run_loop
from selfplay.verify.label import PROGRAM_FAILURES, label_paths, program_answer
from tests.conftest import needs_bwrap

TOML = """
[run]
seed = 5
rounds = 1
out = "{out}"
[model]
backend = "{backend}"
name = "{model}"
[seeds]
problems = {problems}
[pose]
enabled = false
[solve]
samples = {samples}
mode = "{mode}"
max_new_tokens = {tokens}
[train]
enabled = false
[eval]
enabled = false
"""


def run(tmp_path, mode, *, backend="scripted", model="scripted-model", problems=8, samples=6, tokens=96):
    f = tmp_path / f"{mode}.toml"
    out = tmp_path / mode
    f.write_text(TOML.format(out=out, backend=backend, model=model, problems=problems, samples=samples,
                             mode=mode, tokens=tokens))
    [stats] = run_loop(load_config(f))
    rd = out / "round_0"
    return (stats, list(io.iter_jsonl(rd / "problems.jsonl")), list(io.iter_jsonl(rd / "rollouts.jsonl")),
            list(io.iter_jsonl(rd / "pairs.jsonl")))


def rerun_chosen(pairs):
    """Each chosen pot program, run again in a fresh sandbox, and its output checked against the
    gold by a fresh verifier: the list of pairs for which that fails."""
    from selfplay_verifiers import MathVerifier
    from selfplay_verifiers.sandbox import Sandbox

    pot = [p for p in pairs if p["metadata"]["mode"] == "pot"]
    bad = []
    with Sandbox(timeout=5.0, workers=1) as sb, MathVerifier(workers=1) as v:
        for p in pot:
            code = extract_program(p["chosen"][0]["content"])
            res = sb.run(code) if code is not None else None
            ans = program_answer(res.stdout) if res is not None else None
            if ans is None or not v.verify(p["metadata"]["gold"], ans, extract=False).is_correct:
                bad.append(p)
    return pot, bad


def test_extract_program_and_answer():
    assert extract_program("Here:\n```python\nx = 2\nprint(x)\n```\nDone.") == "x = 2\nprint(x)\n"
    assert extract_program("```\nprint(1)") == "print(1)"  # unclosed fence: to the end
    assert extract_program("print(3)") == "print(3)"  # bare code
    assert extract_program("The answer is 3.") is None
    assert program_answer("work\n42\n\n") == "42" and program_answer("  \n") is None
    assert solve_messages("Q?", "pot") != solve_messages("Q?", "cot")
    with pytest.raises(ValueError, match="solve mode"):
        solve_messages("Q?", "mixed")


@needs_bwrap
def test_label_paths_runs_programs_and_names_failures():
    from selfplay_verifiers import MathVerifier
    from selfplay_verifiers.sandbox import Sandbox

    items = [("6", "```python\nprint(2 * 3)\n```", "pot"),
             ("6", "```python\nprint(7)\n```", "pot"),
             ("6", "```python\nimport sympy\nx = sympy.Symbol('x')\nprint(sympy.solve(x - 6, x)[0])\n```", "pot"),
             ("6", "```python\nraise SystemExit(int('x'))\n```", "pot"),
             ("6", "```python\nwhile True: pass\n```", "pot"),
             ("6", "```python\nx = 6\n```", "pot"),
             ("6", "```python\nprint(6\n```", "pot"),
             ("6", "no code at all", "pot"),
             ("6", "So 2 * 3 = 6. The answer is \\boxed{6}.", "cot")]
    with Sandbox(timeout=1.0, workers=2) as sb, MathVerifier(workers=1) as v:
        got = [(x.label, x.reason) for x in label_paths(v, sb, items)]
    assert got == [("correct", "ok"), ("incorrect", "wrong"), ("correct", "ok"),
                   ("incorrect", "runtime_error"), ("incorrect", "timeout"), ("incorrect", "no_output"),
                   ("incorrect", "syntax_error"), ("incorrect", "no_program"), ("correct", "ok")]


@needs_bwrap
@pytest.mark.parametrize("mode", ["pot", "mixed"])
def test_scripted_round(tmp_path, mode):
    stats, problems, rollouts, pairs = run(tmp_path, mode)
    per = 6 * (2 if mode == "mixed" else 1)
    assert len(rollouts) == per * len(problems) == stats["samples"]
    modes = {r["mode"] for r in rollouts}
    assert modes == ({"cot", "pot"} if mode == "mixed" else {"pot"})
    assert set(stats["by_mode"]) == modes and stats["timing"]["programs_run"] == 6 * len(problems)
    reasons = stats["by_mode"]["pot"]["reasons"]
    assert reasons.get("no_program", 0) > 0 and reasons.get("runtime_error", 0) > 0  # the scripted model's failures
    by_key = {(r["problem_id"], r["sample_index"]): r for r in rollouts}
    assert pairs
    for p in pairs:
        m = p["metadata"]
        c, r = by_key[(m["problem_id"], m["chosen_index"])], by_key[(m["problem_id"], m["rejected_index"])]
        assert c["mode"] == r["mode"] == m["mode"]  # like with like
        assert p["prompt"] == solve_messages(m["question"], m["mode"])
        assert c["label"] == "correct" and c["reason"] not in PROGRAM_FAILURES
    if mode == "mixed":
        assert {p["metadata"]["mode"] for p in pairs} == {"cot", "pot"}
    assert any(by_key[(p["metadata"]["problem_id"], p["metadata"]["rejected_index"])]["reason"] in PROGRAM_FAILURES
               for p in pairs if p["metadata"]["mode"] == "pot")  # failed programs are fair rejects
    pot, bad = rerun_chosen(pairs)
    assert pot and not bad


@needs_bwrap
@pytest.mark.model
@pytest.mark.parametrize("mode", ["pot", "mixed"])
def test_real_model_round(tmp_path, mode):
    """The embedded model writes programs; the real sandbox runs them; at least one pair forms."""
    # the same number of paths for both (96): 12 problems x 8 pot paths, 8 x (6 cot + 6 pot)
    problems_n, samples = (12, 8) if mode == "pot" else (8, 6)
    stats, problems, rollouts, pairs = run(tmp_path, mode, backend="hf", model="default", problems=problems_n,
                                           samples=samples, tokens=96)
    assert stats["by_mode"]["pot"]["samples"] == samples * len(problems)
    assert stats["by_mode"]["pot"]["correct"] > 0
    pot, bad = rerun_chosen(pairs)
    assert pot, f"no pot pair; by_mode={stats['by_mode']}"
    assert not bad


@needs_bwrap
def test_pot_rollouts_record_the_sandbox_that_labelled_them(tmp_path, monkeypatch):
    """A pot label is what the sandbox ran: rollouts made by another sandbox version are refused,
    not reused (cot rollouts do not depend on it)."""
    from selfplay.core import provenance

    run(tmp_path, "pot", problems=2, samples=2)
    entry = provenance.read(tmp_path / "pot" / "round_0")["rollouts.jsonl"]
    assert entry["sandbox"] == provenance.sandbox_version()
    monkeypatch.setattr(provenance, "sandbox_version", lambda: "another-sandbox")
    with pytest.raises(provenance.StaleOutput, match="sandbox='?[0-9a-f]+'?, now 'another-sandbox'"):
        run(tmp_path, "pot", problems=2, samples=2)
    run(tmp_path, "cot", problems=2, samples=2)
    assert "sandbox" not in provenance.read(tmp_path / "cot" / "round_0")["rollouts.jsonl"]
