"""The one generate-and-label loop. Every problem gets one or more kinds of path (PathKind: a
prompt, sampling params, per-problem seeds and how its paths are labelled); the loop generates
them on the backend and labels them (selfplay.verify.label.label_paths) while generation goes on.
Solving (selfplay/solve/generate.py: k paths of each solve mode) and evaluation
(selfplay/evaluate/driver.py: a greedy path and k sampled paths) are this loop with their own
kinds, so both generate, batch, stream and verify the same way.

On a backend with continuous generation (vLLM, `generate_stream`) every problem goes to the engine
at once (at most `batch_problems` in flight when > 0) and a problem is labelled as soon as all its
paths have finished, while the engine decodes the rest. On other backends (hf) batches of
`batch_problems` problems are generated one batch ahead in a thread while the previous batch is
labelled. Kinds that share sampling params go to the backend as one job (one call per batch).
"""
from __future__ import annotations

import queue
import threading
import time
from collections import defaultdict, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

from selfplay.backends import generate_many, problems_per_call
from selfplay.backends.base import Backend, Completion, Messages, SamplingParams
from selfplay.core.records import Problem
from selfplay.verify.label import label_paths


@dataclass(frozen=True)
class PathKind:
    """One kind of path asked of every problem. mode: how its paths are labelled (cot: the math
    verifier reads the final answer; pot: its program runs in the sandbox); seeds: one per path
    (params.n of them; one for a greedy path)."""

    mode: str
    params: SamplingParams
    seeds: Callable[[Problem], list[int]]
    messages: Callable[[Problem], Messages]


@dataclass(frozen=True)
class Labelled:
    """A problem's paths, kinds in order and each kind's paths in seed order, with their verdicts;
    `index` is the problem's position in the list given to the loop."""

    index: int
    problem: Problem
    completions: list[Completion]
    verdicts: list[Any]


def batches(items: Sequence[Problem], size: int) -> Iterator[Sequence[Problem]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _groups(kinds: Sequence[PathKind]) -> list[list[int]]:
    """Kinds that share sampling params, in order: each group is one job of a backend call."""
    groups: list[list[int]] = []
    for k, kind in enumerate(kinds):
        if groups and kinds[groups[-1][0]].params == kind.params:
            groups[-1].append(k)
        else:
            groups.append([k])
    return groups


def _jobs(batch: Sequence[Problem], kinds: Sequence[PathKind], groups: list[list[int]]) -> list[Any]:
    """(prompts, params, seeds) per group: problem-major, the group's kinds in order."""
    return [([kinds[k].messages(p) for p in batch for k in g], kinds[g[0]].params,
             [kinds[k].seeds(p) for p in batch for k in g]) for g in groups]


def _rows_per_problem(kinds: Sequence[PathKind]) -> int:
    return sum(max(1, k.params.n) for k in kinds)


def generate_batches(backend: Backend, problems: Sequence[Problem], kinds: Sequence[PathKind], *,
                     batch_problems: int) -> Iterator[tuple[int, Sequence[Problem], list[list[Completion]]]]:
    """Yield (index of the batch's first problem, the batch, each problem's paths in kinds order)
    per batch, generating one batch ahead in a thread. batch_problems <= 0: as many problems as
    fill one backend call."""
    groups = _groups(kinds)
    if batch_problems <= 0:
        batch_problems = max(1, problems_per_call(backend, _rows_per_problem(kinds)))
    q: queue.Queue[Any] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def produce() -> None:
        try:
            start = 0
            for batch in batches(problems, batch_problems):
                if stop.is_set():
                    return
                results = generate_many(backend, _jobs(batch, kinds, groups))
                got: dict[tuple[int, int], list[Completion]] = {}
                for g, rows in zip(groups, results):
                    for r, comps in enumerate(rows):
                        i, j = divmod(r, len(g))
                        got[(i, g[j])] = comps
                q.put((start, batch, [[c for k in range(len(kinds)) for c in got[(i, k)]]
                                      for i in range(len(batch))]))
                start += len(batch)
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


def _label(verifier: Any, sandbox: Any, group: Sequence[tuple[int, Problem, Sequence[Completion]]],
           kinds: Sequence[PathKind], timing: dict[str, Any]) -> list[Labelled]:
    """Label (index, problem, its paths) groups; labelling time and programs run go to timing."""
    t0 = time.perf_counter()
    modes = [k.mode for k in kinds for _ in range(max(1, k.params.n))]
    items = [(p.answer, c.text, modes[j]) for _, p, comps in group for j, c in enumerate(comps)]
    verdicts = label_paths(verifier, sandbox, items)
    timing["verify_seconds"] = timing.get("verify_seconds", 0.0) + time.perf_counter() - t0
    timing["programs"] = timing.get("programs", 0) + sum(m == "pot" for _, _, m in items)
    out, at = [], 0
    for i, p, comps in group:
        out.append(Labelled(i, p, list(comps), verdicts[at:at + len(comps)]))
        at += len(comps)
    return out


def _batched(backend: Backend, problems: Sequence[Problem], kinds: Sequence[PathKind], verifier: Any,
             sandbox: Any, batch_problems: int, timing: dict[str, Any]) -> Iterator[list[Labelled]]:
    for start, batch, outs in generate_batches(backend, problems, kinds, batch_problems=batch_problems):
        yield _label(verifier, sandbox, [(start + i, p, o) for i, (p, o) in enumerate(zip(batch, outs))],
                     kinds, timing)


def _streamed(backend: Any, problems: Sequence[Problem], kinds: Sequence[PathKind], verifier: Any,
              sandbox: Any, window: int, timing: dict[str, Any]) -> Iterator[list[Labelled]]:
    """Continuous generation: every problem's prompts go to the engine; a problem whose prompts have
    all finished is labelled in a background thread (the verifier's and sandbox's workers do the
    work) while the engine goes on; labelled problems are yielded in the order they finished."""
    groups = _groups(kinds)
    parts: dict[int, dict[int, list[Completion]]] = defaultdict(dict)
    labelling: deque[Future] = deque()
    pool = ThreadPoolExecutor(1, thread_name_prefix="selfplay-label")  # one: the sandbox is used serially
    try:
        for (job, row), comps in backend.generate_stream(_jobs(problems, kinds, groups),
                                                         window=window * len(kinds) if window > 0 else 0):
            i, j = divmod(row, len(groups[job]))
            parts[i][groups[job][j]] = comps
            if len(parts[i]) == len(kinds):
                got = parts.pop(i)
                paths = [c for k in range(len(kinds)) for c in got[k]]
                labelling.append(pool.submit(_label, verifier, sandbox, [(i, problems[i], paths)], kinds, timing))
            done: list[Labelled] = []
            while labelling and labelling[0].done():
                done.extend(labelling.popleft().result())
            if done:
                yield done
        while labelling:
            yield labelling.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def generate_labelled(backend: Backend, problems: Sequence[Problem], kinds: Sequence[PathKind], verifier: Any, *,
                      batch_problems: int = 0, sandbox: Any = None,
                      timing: dict[str, Any] | None = None) -> Iterator[list[Labelled]]:
    """Every problem's paths of every kind, labelled; lists of whole problems as soon as they are
    done (streaming backends: in finishing order; others: in order, a batch at a time).
    verifier: a `selfplay_verifiers.MathVerifier` (anything with submit(gold, text[, extract])); sandbox:
    a `selfplay_verifiers.sandbox.Sandbox`, needed for pot kinds. timing, when given, gets
    "verify_seconds" and "programs" added up in it."""
    timing = {} if timing is None else timing
    if hasattr(backend, "generate_stream"):
        return _streamed(backend, problems, kinds, verifier, sandbox, batch_problems, timing)
    return _batched(backend, problems, kinds, verifier, sandbox, batch_problems, timing)
