"""Ray actors for the Ray executor (selfplay/run/ray_executor.py): a Worker holds one model's
backend, verifier pool and sandbox (selfplay.backends.resources.Resources); a Pool starts one
worker per GPU or per run.worker_cpus CPUs, hands out work items and survives workers that die.
One bad row (a prompt, a problem) is recorded with its error instead of ending the stage."""
from __future__ import annotations

import os
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence, TypeVar

from selfplay.backends import rows_per_call
from selfplay.backends.base import Completion, SamplingParams
from selfplay.backends.resources import Resources
from selfplay.core import console
from selfplay.core.log import log
from selfplay.core.records import Problem, Rollout
from selfplay.solve.generate import path_mode, sample_seeds, solve_and_verify

if TYPE_CHECKING:
    from selfplay.run.context import RoundContext

NAMESPACE = "selfplay"  # actors are named "<NAMESPACE>-<driver pid>-w<i>.<incarnation>" in it
MAX_TRIES = 3  # workers a shard may lose before the run stops
# What one bad row (a prompt, a program) may raise inside a backend or the verifier: recorded in
# its rows, never the end of the job. Anything else (TypeError, KeyError...) is a bug: it stops.
ROW_ERRORS = (ValueError, RuntimeError, IndexError, OSError)
# Tests only: problem ids (comma-separated) whose solving raises ValueError on a worker, so the
# bad-row path runs on the real backend (tests/run/test_ray.py).
FAIL_ENV = "SELFPLAY_FAIL_PROBLEMS"
T = TypeVar("T")
R = TypeVar("R")


def connect(address: str) -> None:
    """Join the cluster at `address` ("auto", HOST:PORT) or, for "", start Ray in this process."""
    import ray

    if ray.is_initialized():
        return
    # without --verbose, what the workers print stays out of the console: their engines write to
    # OUT/engine.log ($SELFPLAY_ENGINE_LOG, inherited) and the rest to Ray's session logs
    to_driver = not console.quiet()
    console.quiet_libraries()  # Ray's own logger (its start-up lines) into the engine log too
    if address:
        ray.init(address=address, namespace=NAMESPACE, log_to_driver=to_driver)
    else:
        ray.init(namespace=NAMESPACE, include_dashboard=False, log_to_driver=to_driver)
    if not to_driver:
        log("Ray workers' own output -> Ray's session logs (/tmp/ray/session_latest/logs; --verbose shows it here)")


def each_alone(items: Sequence[T], run: Callable[[Sequence[T]], list[R]],
               failed: Callable[[int, T, BaseException], list[R]]) -> list[R]:
    """run(items); when one bad row makes it raise one of ROW_ERRORS, each item alone, so only the
    bad ones are lost: failed(index, item, error) gives what stands in for each of them."""
    try:
        return run(items)
    except ROW_ERRORS:
        out: list[R] = []
        for i, item in enumerate(items):
            try:
                out += run([item])
            except ROW_ERRORS as e:
                out += failed(i, item, e)
        return out


def _worker_env() -> dict[str, str]:
    """SELFPLAY_* settings of this process that a worker must see too (never a kill point: a
    worker's faults are tested by killing it from outside)."""
    return {k: v for k, v in os.environ.items() if k.startswith("SELFPLAY_") and k != "SELFPLAY_KILL_AT"}


class Worker:
    """One Ray actor: a generation backend, and (lazily) a verifier pool and a sandbox."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.resources = Resources(spec["cfg"], spec["model"], verify_workers=spec["verify_workers"])
        self.backend = self.resources.backend()
        self.busy: str | None = None

    def info(self) -> dict[str, Any]:
        import ray


        return {"pid": os.getpid(), "node": ray.get_runtime_context().get_node_id(), "busy": self.busy,
                "rows_per_call": rows_per_call(self.backend), "stream": hasattr(self.backend, "generate_stream")}

    def verifier(self) -> Any:
        return self.resources.verifier()

    def sandbox(self) -> Any:
        return self.resources.sandbox()

    def _solve(self, problems: list[Problem], params: SamplingParams, kw: dict[str, Any],
               timing: dict[str, Any]) -> list[Rollout]:
        failing = set(filter(None, os.environ.get(FAIL_ENV, "").split(",")))
        for p in problems:
            if p.id in failing:
                raise ValueError(f"{p.id}: failed on purpose ({FAIL_ENV})")
        modes = kw["modes"]
        return [r for group in solve_and_verify(self.backend, problems, params, self.verifier(),
                                                sandbox=self.sandbox() if "pot" in modes else None,
                                                timing=timing, **kw) for r in group]

    def solve_shard(self, key: str, problems: list[dict[str, Any]], params: SamplingParams,
                    kw: dict[str, Any]) -> dict[str, Any]:
        """The shard's rollouts (as dicts, problem order), its row errors and timing."""
        self.busy = key
        t0 = time.perf_counter()
        probs = [Problem.from_dict(d) for d in problems]
        timing: dict[str, Any] = {}
        errors: list[dict[str, str]] = []

        def failed(_i: int, p: Problem, e: BaseException) -> list[Rollout]:
            text = f"{type(e).__name__}: {e}"
            errors.append({"problem_id": p.id, "error": text})
            modes, n = kw["modes"], params.n
            seeds = sample_seeds(kw["seed"], kw["round_idx"], p.id, n * len(modes))
            return [Rollout(problem_id=p.id, sample_index=j, completion="", finish_reason="error", n_tokens=0,
                            seed=s, label="unknown", reason="error", extracted=None, verify_seconds=0.0,
                            logprob_mean=None, mode=path_mode(j, n, modes), error=text) for j, s in enumerate(seeds)]

        try:
            rows = each_alone(probs, lambda ps: self._solve(ps, params, kw, timing), failed)
        finally:
            self.busy = None
        return {"rows": [r.to_dict() for r in rows], "errors": errors, "pid": os.getpid(),
                "seconds": time.perf_counter() - t0, "verify_seconds": timing.get("verify_seconds", 0.0),
                "programs": timing.get("programs", 0)}

    def generate(self, key: str, prompts: list[Any], params: SamplingParams,
                 seeds: list[list[int]]) -> dict[str, Any]:
        """backend.generate on a chunk of prompts; a prompt that raises one of ROW_ERRORS gets
        empty completions (finish_reason "error") and its error text."""
        self.busy = key
        errors: list[dict[str, Any]] = []

        def failed(i: int, item: tuple[Any, list[int]], e: BaseException) -> list[list[Completion]]:
            errors.append({"index": i, "error": f"{type(e).__name__}: {e}"})
            return [[Completion("", "error", 0, int(s)) for s in item[1][:max(1, params.n)]]]

        try:
            outs = each_alone(list(zip(prompts, seeds)), lambda its: self.backend.generate(
                [p for p, _ in its], params, [list(s) for _, s in its]), failed)
        finally:
            self.busy = None
        return {"outs": [[c.__dict__ for c in row] for row in outs], "errors": errors}

    def close(self) -> None:
        self.resources.close()


class Pool:
    """Actors for one stage; `run` hands out work items and survives workers that die."""

    def __init__(self, ctx: RoundContext, want: int) -> None:
        import ray

        cfg = ctx.cfg
        connect(cfg.run.ray_address)
        res = ray.cluster_resources()
        gpus = int(res.get("GPU", 0))
        on_gpu = gpus > 0 and cfg.model.backend != "scripted"  # one engine per GPU (data parallel)
        per_gpu = max(1, cfg.vllm.tensor_parallel_size) if on_gpu else 0
        auto = gpus // per_gpu if on_gpu else int(res.get("CPU", 1)) // cfg.run.worker_cpus
        self.n = max(1, min(want, cfg.run.workers or max(1, auto)))
        need, have, unit = (self.n * per_gpu, gpus, "GPU") if on_gpu else \
            (self.n * cfg.run.worker_cpus, int(res.get("CPU", 0)), "CPU")
        if need > have:  # the actors would wait for resources forever
            raise ValueError(f"run.workers: {self.n} worker(s) need {need} {unit}s, the Ray cluster has {have}; "
                             f"lower run.workers / run.worker_cpus or add nodes")
        self.spec = {"cfg": cfg, "model": ctx.model, "verify_workers": cfg.run.worker_cpus}
        env = _worker_env()
        self.options: dict[str, Any] = {"num_cpus": cfg.run.worker_cpus, "num_gpus": per_gpu, "max_restarts": 0,
                                        "max_concurrency": 2,  # info() answers while a shard runs
                                        "namespace": NAMESPACE, "scheduling_strategy": "SPREAD"}
        if env:
            self.options["runtime_env"] = {"env_vars": env}
        self._cls = ray.remote(Worker)
        self._tag = f"{NAMESPACE}-{os.getpid()}"
        self._incarnation = 0
        log(f"ray: starting {self.n} worker(s) ({cfg.run.worker_cpus} CPU{f', {per_gpu} GPU' if per_gpu else ''} "
             f"each) for model {ctx.model} on backend {cfg.model.backend}; cluster {dict(sorted(res.items()))}")
        self.actors = [self._start(i) for i in range(self.n)]
        try:  # a worker that cannot even start (model, backend) stops the stage with its error
            self.info = ray.get([a.info.remote() for a in self.actors])
        except ray.exceptions.RayActorError as e:
            self.close()
            raise RuntimeError(f"ray: a worker failed to start: {_first_line(e)}") from None

    def _start(self, i: int) -> Any:
        self._incarnation += 1
        return self._cls.options(name=f"{self._tag}-w{i}.{self._incarnation}", **self.options).remote(self.spec)

    def run(self, items: Sequence[tuple[str, str, tuple]]) -> Iterator[tuple[str, dict[str, Any]]]:
        """(key, result) of each (key, method, args) item, in the order they finish."""
        import ray

        todo = deque(items)
        tries: dict[str, int] = {}
        free = list(range(self.n))
        running: dict[Any, tuple[int, tuple[str, str, tuple]]] = {}
        while todo or running:
            while todo and free:
                i, item = free.pop(0), todo.popleft()
                running[getattr(self.actors[i], item[1]).remote(item[0], *item[2])] = (i, item)
            [ref], _ = ray.wait(list(running), num_returns=1)
            i, item = running.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayActorError as e:  # the worker died: a new one, the item again
                key = item[0]
                tries[key] = tries.get(key, 0) + 1
                if tries[key] >= MAX_TRIES:
                    raise RuntimeError(f"ray: {key} lost its worker {tries[key]} times; last: {_first_line(e)}") \
                        from None
                log(f"ray: worker {i} died during {key} ({_first_line(e)}); restarting it, {key} re-queued "
                     f"(try {tries[key] + 1} of {MAX_TRIES})")
                ray.kill(self.actors[i], no_restart=True)
                self.actors[i] = self._start(i)
                todo.appendleft(item)
                free.append(i)
                continue
            free.append(i)
            yield item[0], result

    def close(self) -> None:
        """Each worker stops its backend, verifier pool and sandbox, then its actor is ended."""
        import ray

        actors, self.actors = self.actors, []
        closing = [a.close.remote() for a in actors]
        for a, ref in zip(actors, closing):
            try:
                ray.get(ref, timeout=60)
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as e:  # gone already
                log(f"ray: a worker did not close cleanly ({_first_line(e)}); ending it")
            ray.kill(a, no_restart=True)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"
