"""The Ray side of the executor seam (selfplay/run/executor.py): a pool of actors, each holding one
generation backend and one math-verifier pool (+ a code sandbox for pot paths).

solve: the problems still to solve are cut into shards of whole generation batches (the batches
the local path would make, so every row of a batch sees the same neighbours and the hf backend
gives the same bits); each shard is solved and verified on one worker. The driver writes each
finished shard to OUT/round_K/shards/solve-<settings>/<shard>.jsonl, then a `.done` marker, and
hands the shards back in problem order, so the stage appends them to rollouts.jsonl exactly as
the local path would. A resumed run reuses every shard with a marker and solves only the rest;
the shard directory is removed once all its shards are in rollouts.jsonl.

Faults: a worker that dies mid-shard (killed, out of memory, node lost) is replaced by a new
actor and its shard re-queued (at most MAX_TRIES times per shard): a shard's rows count only when
its whole result came back, so nothing is lost or written twice. A problem whose generation or
verification raises one of ROW_ERRORS on a worker is recorded as its k paths with label
"unknown", reason "error" and the error text (Rollout.error), logged, and counted in the round's
stats (verdict_reasons.error); the rest of its shard is solved as usual. Any other exception is a
bug and stops the run.

pose: the posing prompts are spread over the workers (chunks of whole backend calls); the posed
programs are checked in this process, in attempt order (duplicate checks are sequential).
"""
from __future__ import annotations

import math
import os
import shutil
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from selfplay.core import faults, io
from selfplay.core.log import log
from selfplay.backends.resources import Resources
from selfplay.backends.base import Completion, SamplingParams
from selfplay.core.records import Problem, Rollout

if TYPE_CHECKING:
    from selfplay.run.context import RoundContext

NAMESPACE = "selfplay"  # actors are named "<NAMESPACE>-<driver pid>-w<i>.<incarnation>" in it
MAX_TRIES = 3  # workers a shard may lose before the run stops
# What one bad row (a prompt, a program) may raise inside a backend or the verifier: recorded in
# its rows, never the end of the job. Anything else (TypeError, KeyError...) is a bug: it stops.
ROW_ERRORS = (ValueError, RuntimeError, IndexError, OSError)
# Tests only: problem ids (comma-separated) whose solving raises ValueError on a worker, so the
# bad-row path runs on the real backend (tests/test_ray.py).
FAIL_ENV = "SELFPLAY_FAIL_PROBLEMS"


def connect(address: str) -> None:
    """Join the cluster at `address` ("auto", HOST:PORT) or, for "", start Ray in this process."""
    import ray

    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, namespace=NAMESPACE, log_to_driver=True)
    else:
        ray.init(namespace=NAMESPACE, include_dashboard=False, log_to_driver=True)


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

        from selfplay.backends import rows_per_call

        return {"pid": os.getpid(), "node": ray.get_runtime_context().get_node_id(), "busy": self.busy,
                "rows_per_call": rows_per_call(self.backend), "stream": hasattr(self.backend, "generate_stream")}

    def verifier(self) -> Any:
        return self.resources.verifier()

    def sandbox(self) -> Any:
        return self.resources.sandbox()

    def _solve(self, problems: list[Problem], params: SamplingParams, kw: dict[str, Any],
               timing: dict[str, Any]) -> list[Rollout]:
        from selfplay.solve.generate import solve_and_verify

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
        from selfplay.solve.generate import path_mode, sample_seeds

        self.busy = key
        t0 = time.perf_counter()
        probs = [Problem.from_dict(d) for d in problems]
        timing: dict[str, Any] = {}
        errors: list[dict[str, str]] = []
        try:
            try:
                rows = self._solve(probs, params, kw, timing)
            except ROW_ERRORS:  # one bad problem must not cost the shard: each alone, record the bad
                rows = []
                for p in probs:
                    try:
                        rows += self._solve([p], params, kw, timing)
                    except ROW_ERRORS as e:
                        text = f"{type(e).__name__}: {e}"
                        errors.append({"problem_id": p.id, "error": text})
                        modes, n = kw["modes"], params.n
                        seeds = sample_seeds(kw["seed"], kw["round_idx"], p.id, n * len(modes))
                        rows += [Rollout(problem_id=p.id, sample_index=j, completion="", finish_reason="error",
                                         n_tokens=0, seed=s, label="unknown", reason="error", extracted=None,
                                         verify_seconds=0.0, logprob_mean=None, mode=path_mode(j, n, modes),
                                         error=text) for j, s in enumerate(seeds)]
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
        try:
            try:
                outs = self.backend.generate(prompts, params, seeds)
            except ROW_ERRORS:
                outs = []
                for i, (prompt, row) in enumerate(zip(prompts, seeds)):
                    try:
                        outs += self.backend.generate([prompt], params, [row])
                    except ROW_ERRORS as e:
                        errors.append({"index": i, "error": f"{type(e).__name__}: {e}"})
                        outs.append([Completion("", "error", 0, int(s)) for s in row[:max(1, params.n)]])
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


def _rows_per_call(cfg: Any) -> int | None:
    """A worker backend's rows per call as far as the config tells (hf: model.batch_size), to start
    no more workers than there are shards; None for an engine that decides itself (vLLM)."""
    return {"hf": cfg.model.batch_size, "scripted": 64}.get(cfg.model.backend)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"


def shard_dir(ctx: RoundContext) -> Path:
    """Shards of this round's solve stage, per solve settings (a changed setting never reuses them)."""
    from selfplay.core.provenance import _sha
    from selfplay.run.round import solve_entry

    return ctx.dir / "shards" / f"solve-{_sha(io.dumps(solve_entry(ctx)))}"


def batch_size(info: dict[str, Any], batch_problems: int, n: int, n_modes: int) -> int:
    """Problems per shard: the local path's batch (generate_batches), so rows share their batch
    with the same neighbours on either executor; a streaming backend (vLLM) takes batch_problems
    or, for 0, a backend call's worth."""
    if batch_problems > 0:
        return batch_problems
    return max(1, max(1, int(info["rows_per_call"]) // max(1, n)) // n_modes)


def _read_shard(path: Path) -> list[Rollout] | None:
    """A finished shard's rollouts (its `.done` marker names the row count), else None."""
    done = path.with_suffix(".done")
    if not done.exists() or not path.exists():
        return None
    rows = io.read_records(path, Rollout.from_dict)
    return rows if len(rows) == int(io.read_json(done)["rows"]) else None


def ray_solve(ctx: RoundContext, problems: Sequence[Problem], params: SamplingParams, *, seed: int,
              round_idx: int, batch_problems: int, progress: Any, modes: Sequence[str],
              timing: dict[str, Any]) -> Iterator[list[Rollout]]:
    """solve_and_verify's contract on a Ray pool: lists of complete problems, in problem order."""
    from selfplay.core.provenance import _sha

    sdir = shard_dir(ctx)
    sdir.mkdir(parents=True, exist_ok=True)
    per_call = _rows_per_call(ctx.cfg)
    pool = Pool(ctx, want=math.ceil(len(problems) / batch_size({"rows_per_call": per_call}, batch_problems, params.n,
                                                                len(modes))) if per_call else len(problems))
    try:
        size = batch_size(pool.info[0], batch_problems, params.n, len(modes))
        shards = [list(problems[i:i + size]) for i in range(0, len(problems), size)]
        keys = [f"{_sha(io.dumps([p.id for p in s]))}" for s in shards]
        results: dict[str, list[Rollout]] = {}
        for k in keys:
            rows = _read_shard(sdir / f"{k}.jsonl")
            if rows is not None:
                results[k] = rows
        log(f"ray: {len(shards)} shard(s) of <= {size} problems over {pool.n} worker(s); "
             f"{len(results)} already done in {sdir}")
        kw = {"seed": seed, "round_idx": round_idx, "batch_problems": size, "modes": tuple(modes)}
        items = [(k, "solve_shard", ([p.to_dict() for p in s], params, kw))
                 for k, s in zip(keys, shards) if k not in results]
        next_out = 0
        errors = 0
        pids: set[int] = set()

        def ready() -> Iterator[list[Rollout]]:
            nonlocal next_out
            while next_out < len(keys) and keys[next_out] in results:
                yield results.pop(keys[next_out])
                next_out += 1

        for rows in ready():  # shards finished before a restart: handed on at once
            if progress is not None:
                progress.update(len(rows))
            yield rows
        for key, res in pool.run(items):
            rows = [Rollout.from_dict(d) for d in res["rows"]]
            io.write_jsonl(sdir / f"{key}.jsonl", rows)
            io.write_json(sdir / f"{key}.done", {"rows": len(rows), "errors": res["errors"], "pid": res["pid"],
                                                 "seconds": round(res["seconds"], 3)})
            faults.point("ray:shard_done")  # crash tests: a shard marked done, not yet in rollouts.jsonl
            for err in res["errors"]:
                log(f"ray: ERROR in problem {err['problem_id']} (recorded as its {params.n * len(modes)} paths, "
                     f"label unknown, reason error): {err['error']}")
            errors += len(res["errors"])
            pids.add(res["pid"])
            timing["verify_seconds"] = timing.get("verify_seconds", 0.0) + res["verify_seconds"]
            timing["programs"] = timing.get("programs", 0) + res["programs"]
            results[key] = rows
            if progress is not None:
                progress.update(len(rows))
            yield from ready()
        if errors:
            timing["row_errors"] = timing.get("row_errors", 0) + errors
            log(f"ray: {errors} problem(s) failed and were recorded with their error (verdict_reasons.error)")
        log(f"ray: {len(items)} shard(s) solved by {len(pids)} worker process(es)")
    finally:
        pool.close()
    shutil.rmtree(sdir)  # every shard is in rollouts.jsonl now (the caller appended each one)
    if not any(sdir.parent.iterdir()):
        sdir.parent.rmdir()


class RayGenerator:
    """A Backend whose generate() spreads the prompts over a pool's workers."""

    name = "ray"

    def __init__(self, pool: Pool, model: str) -> None:
        self.pool, self.model = pool, model
        self.errors: list[dict[str, Any]] = []

    def generate(self, prompts: Sequence[Any], params: SamplingParams,
                 seeds: Sequence[Sequence[int]]) -> list[list[Completion]]:
        rows = 1 if params.temperature == 0 else params.n
        per_call = int(self.pool.info[0]["rows_per_call"])
        chunk = math.lcm(per_call, rows) // rows  # whole backend calls: the local path's batches
        starts = list(range(0, len(prompts), chunk))
        items = [(f"prompts {s}-{min(s + chunk, len(prompts)) - 1}", "generate",
                  (list(prompts[s:s + chunk]), params, [list(x) for x in seeds[s:s + chunk]])) for s in starts]
        got = dict(self.pool.run(items))
        out: list[list[Completion]] = []
        for s, (key, _, _) in zip(starts, items):
            for err in got[key]["errors"]:
                self.errors.append({"prompt": s + err["index"], "error": err["error"]})
                log(f"ray: ERROR in prompt {s + err['index']} (empty completion, finish_reason error): {err['error']}")
            out += [[Completion(**c) for c in row] for row in got[key]["outs"]]
        return out

    def close(self) -> None:
        self.pool.close()


def ray_pose(ctx: RoundContext, examples: Sequence[Problem], **kw: Any) -> tuple[list[Problem], dict[str, Any]]:
    """pose_problems with its generation on the Ray workers and its checks here."""
    from selfplay.pose.posing import pose_problems

    attempts, per_call = max(1, kw.get("attempts", 1)), _rows_per_call(ctx.cfg)
    gen = RayGenerator(Pool(ctx, want=math.ceil(attempts / per_call) if per_call else attempts), ctx.model)
    try:
        posed, stats = pose_problems(gen, ctx.sandbox(), examples, **kw)
    finally:
        gen.close()
    if gen.errors:
        stats["generation_errors"] = gen.errors
    return posed, stats
