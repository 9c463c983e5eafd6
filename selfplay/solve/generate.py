"""Solve + verify stage: k reasoning paths per problem, each labelled by the math verifier, or for
program-of-thought paths (solve.mode "pot"/"mixed") by running the program in the code sandbox and
verifying its last printed line.

The paths are generated and labelled by the one generate-and-label loop (selfplay/solve/paths.py,
shared with evaluation): on vLLM every problem goes to the engine at once and a problem is
verified as soon as all its paths have finished; on the hf backend batch i+1 generates in a thread
while batch i is verified. Either way a round's throughput approaches the engine's, and results
stream out so the caller can persist each finished problem at once.
"""
from __future__ import annotations

import time
from typing import Any, Iterator, Sequence

from selfplay.backends.base import Backend, Completion, SamplingParams
from selfplay.core.console import counting_paths
from selfplay.core.records import Problem, Rollout
from selfplay.core.rng import derive_seed
from selfplay.prompts import solve_messages
from selfplay.solve.paths import Labelled, PathKind, generate_labelled


def sample_seeds(seed: int, round_idx: int, problem_id: str, n: int, start: int = 0) -> list[int]:
    """Per-sample seeds from (run seed, round, problem id, sample index start..start+n-1)."""
    return [derive_seed(seed, round_idx, problem_id, j) for j in range(start, start + n)]


def path_mode(sample_index: int, n: int, modes: Sequence[str]) -> str:
    """The kind of path (cot | pot) of a sample index, for n paths of each of `modes`."""
    return modes[sample_index // n]


def solve_kinds(params: SamplingParams, modes: Sequence[str], *, seed: int, round_idx: int) -> list[PathKind]:
    """params.n paths of each of `modes` per problem: sample index m * n + j is path j of
    modes[m] (its seed follows from that index)."""
    n = params.n
    return [PathKind(mode, params, seeds=lambda p, m=m: sample_seeds(seed, round_idx, p.id, n, m * n),
                     messages=lambda p, mode=mode: solve_messages(p.question, mode)) for m, mode in enumerate(modes)]


def to_problem_rollouts(done: Sequence[Labelled], modes: Sequence[str]) -> list[Rollout]:
    return [r for d in done for r in to_rollouts(d.problem, d.completions, d.verdicts, modes)]


def to_rollouts(problem: Problem, comps: Sequence[Completion], verdicts: Sequence[Any],
                modes: Sequence[str] = ("cot",)) -> list[Rollout]:
    n = len(comps) // len(modes)
    return [Rollout(problem_id=problem.id, sample_index=j, completion=c.text, finish_reason=c.finish_reason,
                    n_tokens=c.n_tokens, seed=c.seed, label=v.label, reason=v.reason, extracted=v.extracted,
                    verify_seconds=round(v.seconds, 6), logprob_mean=c.logprob_mean, mode=path_mode(j, n, modes),
                    ref_logprob=c.ref_logprob, ref_key=c.ref_key)
            for j, (c, v) in enumerate(zip(comps, verdicts))]


def solve_and_verify(backend: Backend, problems: Sequence[Problem], params: SamplingParams, verifier: Any,
                     *, seed: int, round_idx: int, batch_problems: int = 8, progress: Any = None,
                     modes: Sequence[str] = ("cot",), sandbox: Any = None, timing: dict[str, Any] | None = None,
                     ) -> Iterator[list[Rollout]]:
    """Yield verified rollouts, all paths of a problem together, as soon as problems are done.

    A backend with continuous generation (`generate_stream`, vLLM) gets every problem at once
    (at most batch_problems in flight when > 0) and each problem is verified as soon as all its
    paths have finished, while the engine decodes the rest: no batch waits for its longest
    sequence. Other backends (hf) generate batches of batch_problems problems, one batch ahead
    in a thread while the previous batch is verified; the batch is the unit yielded.

    verifier: a `selfplay_verifiers.MathVerifier`; sandbox: a `selfplay_verifiers.sandbox.Sandbox` (pot paths).
    modes: the kinds of path, params.n of each per problem (see solve_kinds).
    progress: an optional progress display (selfplay.core.console.Progress, or anything with tqdm's
    update / set_postfix / n) advanced by verified samples, with tokens/s in its postfix; a
    Progress also counts the paths the backend finishes before they are verified (its ETA).
    timing: when given, "verify_seconds" (time spent labelling, programs included, while the
    engine generates) and "programs" (pot paths) are added up in it.
    """
    tokens, correct, t_start = 0, 0, time.perf_counter()
    modes = tuple(modes)
    groups = (to_problem_rollouts(done, modes) for done in generate_labelled(
        backend, problems, solve_kinds(params, modes, seed=seed, round_idx=round_idx), verifier,
        batch_problems=batch_problems, sandbox=sandbox, timing=timing))
    with counting_paths(progress):
        for rollouts in groups:
            tokens += sum(r.n_tokens for r in rollouts)
            correct += sum(r.label == "correct" for r in rollouts)
            if progress is not None:
                progress.set_postfix(tok_s=f"{tokens / max(time.perf_counter() - t_start, 1e-9):.0f}",
                                     correct=f"{correct}/{progress.n + len(rollouts)}", refresh=False)
                progress.update(len(rollouts))
            yield rollouts
