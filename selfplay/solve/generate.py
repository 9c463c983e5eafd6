"""Solve + verify stage: k reasoning paths per problem, each labelled by the math verifier, or for
program-of-thought paths (solve.mode "pot"/"mixed") by running the program in the code sandbox and
verifying its last printed line.

On a backend with continuous generation (vLLM) every problem goes to the engine at once and a
problem is verified as soon as all its paths have finished, while the engine decodes the rest. On
the hf backend, generation of batch i+1 runs in a background thread while batch i is verified
(math verifier worker processes, sandbox servers). Either way a round's throughput approaches the
engine's (torch and vLLM release the GIL while they compute), and results stream out so the
caller can persist each finished problem at once.
"""
from __future__ import annotations

import queue
import threading
import time
from collections import defaultdict, deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Iterator, Sequence

from selfplay.backends import problems_per_call
from selfplay.backends.base import Backend, Completion, SamplingParams
from selfplay.core.records import Problem, Rollout
from selfplay.core.rng import derive_seed
from selfplay.prompts import solve_messages
from selfplay.verify.label import label_paths


def sample_seeds(seed: int, round_idx: int, problem_id: str, n: int, start: int = 0) -> list[int]:
    """Per-sample seeds from (run seed, round, problem id, sample index start..start+n-1)."""
    return [derive_seed(seed, round_idx, problem_id, j) for j in range(start, start + n)]


def batches(items: Sequence[Problem], size: int) -> Iterator[Sequence[Problem]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def generate_batches(backend: Backend, problems: Sequence[Problem], params: SamplingParams, *,
                     seed: int, round_idx: int, batch_problems: int, modes: Sequence[str] = ("cot",),
                     ) -> Iterator[tuple[Sequence[Problem], list[list[Completion]], float]]:
    """Yield (problems, completions, seconds) per batch, generating one batch ahead in a thread.

    Each problem gets params.n paths of each of `modes`, in that order: sample index
    m * n + j is path j of modes[m] (its seed follows from that index).
    batch_problems <= 0: as many problems as fill one call of the backend (rows_per_call / n)."""
    n, modes = params.n, tuple(modes)
    if batch_problems <= 0:

        batch_problems = max(1, problems_per_call(backend, n) // len(modes))
    q: queue.Queue[Any] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def produce() -> None:
        try:
            for batch in batches(problems, batch_problems):
                if stop.is_set():
                    return
                t0 = time.perf_counter()
                seeds = [sample_seeds(seed, round_idx, p.id, n, m * n) for p in batch for m in range(len(modes))]
                rows = backend.generate([solve_messages(p.question, mode) for p in batch for mode in modes],
                                        params, seeds)
                outs = [[c for row in rows[i * len(modes):(i + 1) * len(modes)] for c in row]
                        for i in range(len(batch))]
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


def path_mode(sample_index: int, n: int, modes: Sequence[str]) -> str:
    """The kind of path (cot | pot) of a sample index, for n paths of each of `modes`."""
    return modes[sample_index // n]


def to_rollouts(problem: Problem, comps: Sequence[Completion], verdicts: Sequence[Any],
                modes: Sequence[str] = ("cot",)) -> list[Rollout]:
    n = len(comps) // len(modes)
    return [Rollout(problem_id=problem.id, sample_index=j, completion=c.text, finish_reason=c.finish_reason,
                    n_tokens=c.n_tokens, seed=c.seed, label=v.label, reason=v.reason, extracted=v.extracted,
                    verify_seconds=round(v.seconds, 6), logprob_mean=c.logprob_mean, mode=path_mode(j, n, modes))
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

    verifier: a `verifiers.MathVerifier`; sandbox: a `verifiers.sandbox.Sandbox` (pot paths).
    modes: the kinds of path, params.n of each per problem (see generate_batches).
    progress: an optional tqdm bar advanced by samples, with tokens/s in its postfix.
    timing: when given, "verify_seconds" (time spent labelling, programs included, while the
    engine generates) and "programs" (pot paths) are added up in it.
    """
    tokens, correct, t_start = 0, 0, time.perf_counter()
    timing = {} if timing is None else timing
    if hasattr(backend, "generate_stream"):
        groups = _stream_groups(backend, problems, params, verifier, seed=seed, round_idx=round_idx,
                                window=batch_problems, modes=modes, sandbox=sandbox, timing=timing)
    else:
        groups = _batch_groups(backend, problems, params, verifier, seed=seed, round_idx=round_idx,
                               batch_problems=batch_problems, modes=modes, sandbox=sandbox, timing=timing)
    for rollouts in groups:
        tokens += sum(r.n_tokens for r in rollouts)
        correct += sum(r.label == "correct" for r in rollouts)
        if progress is not None:
            progress.update(len(rollouts))
            progress.set_postfix(tok_s=f"{tokens / max(time.perf_counter() - t_start, 1e-9):.0f}",
                                 correct=f"{correct}/{progress.n}")
        yield rollouts


def _label(verifier: Any, sandbox: Any, group: Sequence[tuple[Problem, Sequence[Completion]]],
           modes: Sequence[str], n: int, timing: dict[str, Any]) -> list[Rollout]:
    """The rollouts of (problem, its paths) groups, labelled (time and programs added to timing)."""
    t0 = time.perf_counter()
    items = [(p.answer, c.text, path_mode(j, n, modes)) for p, comps in group for j, c in enumerate(comps)]
    verdicts = label_paths(verifier, sandbox, items)
    timing["verify_seconds"] = timing.get("verify_seconds", 0.0) + time.perf_counter() - t0
    timing["programs"] = timing.get("programs", 0) + sum(m == "pot" for _, _, m in items)
    rollouts: list[Rollout] = []
    k = 0
    for p, comps in group:
        rollouts.extend(to_rollouts(p, comps, verdicts[k:k + len(comps)], modes))
        k += len(comps)
    return rollouts


def _batch_groups(backend: Backend, problems: Sequence[Problem], params: SamplingParams, verifier: Any, *,
                  seed: int, round_idx: int, batch_problems: int, modes: Sequence[str], sandbox: Any,
                  timing: dict[str, Any]) -> Iterator[list[Rollout]]:
    for batch, outs, _secs in generate_batches(backend, problems, params, seed=seed, round_idx=round_idx,
                                               batch_problems=batch_problems, modes=modes):
        yield _label(verifier, sandbox, list(zip(batch, outs)), modes, params.n, timing)


def _stream_groups(backend: Any, problems: Sequence[Problem], params: SamplingParams, verifier: Any, *,
                   seed: int, round_idx: int, window: int, modes: Sequence[str], sandbox: Any,
                   timing: dict[str, Any]) -> Iterator[list[Rollout]]:
    """Continuous generation: every problem's prompts (one per mode) go to the engine; a problem
    whose prompts have all finished is labelled in a background thread (the math verifier's and
    sandbox's workers do the work) while the engine goes on; labelled problems are yielded in
    the order they finished."""
    n, modes = params.n, tuple(modes)
    prompts = [solve_messages(p.question, mode) for p in problems for mode in modes]
    seeds = [sample_seeds(seed, round_idx, p.id, n, m * n) for p in problems for m in range(len(modes))]
    parts: dict[int, dict[int, list[Completion]]] = defaultdict(dict)
    labelling: deque[Future] = deque()
    pool = ThreadPoolExecutor(1, thread_name_prefix="selfplay-label")  # one: the sandbox is used serially
    try:
        for (_, row), comps in backend.generate_stream([(prompts, params, seeds)],
                                                       window=window * len(modes) if window > 0 else 0):
            i, m = divmod(row, len(modes))
            parts[i][m] = comps
            if len(parts[i]) == len(modes):
                got = parts.pop(i)
                paths = [c for mm in range(len(modes)) for c in got[mm]]
                labelling.append(pool.submit(_label, verifier, sandbox, [(problems[i], paths)], modes, n, timing))
            done: list[Rollout] = []
            while labelling and labelling[0].done():
                done.extend(labelling.popleft().result())
            if done:
                yield done
        while labelling:
            yield labelling.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
