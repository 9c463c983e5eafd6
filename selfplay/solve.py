"""Solve + verify stage: k reasoning paths per problem, each labelled by the math verifier.

Generation of batch i+1 runs in a background thread while batch i is verified in the verifier's
worker processes, so a round's throughput approaches the engine's (torch and vLLM release the
GIL while they compute). Results stream out per batch so the caller can persist them at once.
"""
from __future__ import annotations

import queue
import threading
import time
from typing import Any, Iterator, Sequence

from selfplay.backends.base import Backend, Completion, SamplingParams
from selfplay.prompts import solve_messages
from selfplay.records import Problem, Rollout
from selfplay.rng import derive_seed


def sample_seeds(seed: int, round_idx: int, problem_id: str, n: int) -> list[int]:
    """Per-sample seeds from (run seed, round, problem id, sample index)."""
    return [derive_seed(seed, round_idx, problem_id, j) for j in range(n)]


def _batches(items: Sequence[Problem], size: int) -> Iterator[Sequence[Problem]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def generate_batches(backend: Backend, problems: Sequence[Problem], params: SamplingParams, *,
                     seed: int, round_idx: int, batch_problems: int,
                     ) -> Iterator[tuple[Sequence[Problem], list[list[Completion]], float]]:
    """Yield (problems, completions, seconds) per batch, generating one batch ahead in a thread.

    batch_problems <= 0: as many problems as fill one call of the backend (rows_per_call / n)."""
    if batch_problems <= 0:
        from selfplay.backends import problems_per_call

        batch_problems = problems_per_call(backend, params.n)
    q: queue.Queue[Any] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def produce() -> None:
        try:
            for batch in _batches(problems, batch_problems):
                if stop.is_set():
                    return
                t0 = time.perf_counter()
                seeds = [sample_seeds(seed, round_idx, p.id, params.n) for p in batch]
                outs = backend.generate([solve_messages(p.question) for p in batch], params, seeds)
                q.put((batch, outs, time.perf_counter() - t0))
            q.put(None)
        except BaseException as e:  # surfaced in the consumer, never swallowed
            q.put(e)

    thread = threading.Thread(target=produce, name="selfplay-generate", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get(timeout=0.1)
            except queue.Empty:
                pass


def to_rollouts(problem: Problem, comps: Sequence[Completion], verdicts: Sequence[Any]) -> list[Rollout]:
    return [Rollout(problem_id=problem.id, sample_index=j, completion=c.text, finish_reason=c.finish_reason,
                    n_tokens=c.n_tokens, seed=c.seed, label=v.label, reason=v.reason, extracted=v.extracted,
                    verify_seconds=round(v.seconds, 6), logprob_mean=c.logprob_mean)
            for j, (c, v) in enumerate(zip(comps, verdicts))]


def solve_and_verify(backend: Backend, problems: Sequence[Problem], params: SamplingParams, verifier: Any,
                     *, seed: int, round_idx: int, batch_problems: int = 8, progress: Any = None,
                     ) -> Iterator[list[Rollout]]:
    """Yield the verified rollouts of each batch of problems (all k paths of a problem together).

    verifier: a `verifiers.MathVerifier` (verify_many(items) -> verdicts in order).
    progress: an optional tqdm bar advanced by samples, with tokens/s in its postfix.
    """
    tokens, t_start = 0, time.perf_counter()
    for batch, outs, _secs in generate_batches(backend, problems, params, seed=seed, round_idx=round_idx,
                                               batch_problems=batch_problems):
        items = [(p.answer, c.text) for p, comps in zip(batch, outs) for c in comps]
        verdicts = list(verifier.verify_many(items))
        rollouts: list[Rollout] = []
        k = 0
        for p, comps in zip(batch, outs):
            rollouts.extend(to_rollouts(p, comps, verdicts[k:k + len(comps)]))
            k += len(comps)
        tokens += sum(c.n_tokens for comps in outs for c in comps)
        if progress is not None:
            progress.update(len(items))
            progress.set_postfix(tok_s=f"{tokens / max(time.perf_counter() - t_start, 1e-9):.0f}",
                                 correct=f"{sum(r.label == 'correct' for r in rollouts)}/{len(rollouts)}")
        yield rollouts
