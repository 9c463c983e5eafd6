"""Labelling paths: a cot path's final answer by the math verifier, a pot path's program by the
code sandbox (its last printed line then checked as a bare answer), and relabelling stored paths
against new golds. Used by solving, posing's checks, the pair stage's witnesses and
`selfplay verify`."""
from __future__ import annotations

from concurrent.futures import Future
from dataclasses import replace
from typing import Any, Sequence

from selfplay.core.records import Rollout
from selfplay.prompts import extract_program
from selfplay_verifiers.verdict import INCORRECT, UNKNOWN, Verdict

# Why a pot path has no answer: always labelled incorrect, so never a `chosen` (a program the
# sandbox itself failed on is unknown/sandbox_error instead, and never paired).
PROGRAM_FAILURES = ("no_program", "syntax_error", "runtime_error", "timeout", "memory", "output_limit",
                    "killed", "no_output")


def printed_lines(stdout: str) -> list[str]:
    """The lines a program printed, stripped, empty ones left out."""
    return [ln.strip() for ln in stdout.splitlines() if ln.strip()]


def program_answer(stdout: str) -> str | None:
    """The answer a program printed: its last non-empty line (stripped); None if it printed
    nothing. The one reading of a program's output: a pot path's answer here, and a posed
    program's gold (selfplay.pose.checks.posed_answer, which also demands that line be the only
    one and an exact number)."""
    lines = printed_lines(stdout)
    return lines[-1] if lines else None


def label_paths(verifier: Any, sandbox: Any, items: Sequence[tuple[str, str, str]]) -> list[Any]:
    """Verdicts, in order, for (gold, completion, mode) items. cot: the math verifier reads the
    completion's final answer. pot: the completion's program runs in `sandbox` (its worker
    servers in parallel, while the math verifier checks the cot paths), and its last printed line
    is checked as a bare answer; a program that is missing, does not compile, crashes, times out
    or prints nothing is incorrect with that reason (PROGRAM_FAILURES)."""
    futs: list[Future | Verdict | None] = [None] * len(items)
    for i, (gold, text, mode) in enumerate(items):
        if mode == "cot":
            futs[i] = verifier.submit(gold, text)
    pot = [(i, extract_program(text)) for i, (_, text, mode) in enumerate(items) if mode == "pot"]
    if any(code is not None for _, code in pot) and sandbox is None:
        raise ValueError("pot paths need a code sandbox (solve.mode pot/mixed)")
    runnable = [(i, code) for i, code in pot if code is not None]
    results = sandbox.run_many([code for _, code in runnable]) if runnable else []
    ran = dict(zip((i for i, _ in runnable), results))
    for i, code in pot:
        if code is None:
            futs[i] = Verdict(INCORRECT, "no_program")
            continue
        res = ran[i]
        answer = program_answer(res.stdout)
        if res.verdict.label == UNKNOWN:  # the sandbox failed, not the program
            futs[i] = replace(res.verdict, extracted=answer)
        elif res.verdict.reason != "ok":
            futs[i] = Verdict(INCORRECT, res.verdict.reason, answer, res.seconds)
        elif answer is None:
            futs[i] = Verdict(INCORRECT, "no_output", None, res.seconds)
        else:
            futs[i] = verifier.submit(items[i][0], answer, extract=False)
    out = [f.result() if isinstance(f, Future) else f for f in futs]
    for i, _ in runnable:  # the program's run time counts in the path's verification time
        out[i] = replace(out[i], seconds=out[i].seconds + ran[i].seconds)
    return out


def relabel(verifier: Any, items: Sequence[tuple[str, Rollout]]) -> list[Rollout]:
    """The rollouts judged against (new) golds, in order. A pot path's program is not run again:
    the answer it printed is judged; one that gave no answer keeps its failure label, and a path
    whose problem raised an error (no completion: `error`) stays unknown/error."""
    futs: list[Future | None] = []
    for gold, r in items:
        if r.error is not None:
            futs.append(None)
        elif r.mode == "pot":
            futs.append(None if r.reason in PROGRAM_FAILURES or r.extracted is None
                        else verifier.submit(gold, r.extracted, extract=False))
        else:
            futs.append(verifier.submit(gold, r.completion))
    out = []
    for (_, r), f in zip(items, futs):
        if f is None:
            out.append(r)
            continue
        v = f.result()
        out.append(replace(r, label=v.label, reason=v.reason, extracted=v.extracted,
                           verify_seconds=round(v.seconds, 6)))
    return out
