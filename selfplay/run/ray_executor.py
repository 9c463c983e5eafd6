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
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from selfplay.backends.base import Completion, SamplingParams
from selfplay.core import faults, io
from selfplay.core.log import log
from selfplay.core.provenance import content_hash
from selfplay.core.records import Problem, Rollout
from selfplay.pose.posing import pose_problems
from selfplay.run.context import solve_entry
from selfplay.run.ray_pool import Pool
from selfplay.run.shards import ShardStore, cut, shard_key

if TYPE_CHECKING:
    from selfplay.run.context import RoundContext

def _rows_per_call(cfg: Any) -> int | None:
    """A worker backend's rows per call as far as the config tells (hf: model.batch_size), to start
    no more workers than there are shards; None for an engine that decides itself (vLLM)."""
    return {"hf": cfg.model.batch_size, "scripted": 64}.get(cfg.model.backend)


def shard_store(ctx: RoundContext) -> ShardStore[Rollout]:
    """Shards of this round's solve stage, per solve settings (a changed setting never reuses them)."""
    return ShardStore(ctx.dir / "shards" / f"solve-{content_hash(io.dumps(solve_entry(ctx)))}", Rollout.from_dict)


def batch_size(info: dict[str, Any], batch_problems: int, n: int, n_modes: int) -> int:
    """Problems per shard: the local path's batch (selfplay.solve.paths.generate_batches), so rows share their batch
    with the same neighbours on either executor; a streaming backend (vLLM) takes batch_problems
    or, for 0, a backend call's worth."""
    if batch_problems > 0:
        return batch_problems
    return max(1, max(1, int(info["rows_per_call"]) // max(1, n)) // n_modes)


def ray_solve(ctx: RoundContext, problems: Sequence[Problem], params: SamplingParams, *, seed: int,
              round_idx: int, batch_problems: int, progress: Any, modes: Sequence[str],
              timing: dict[str, Any]) -> Iterator[list[Rollout]]:
    """solve_and_verify's contract on a Ray pool: lists of complete problems, in problem order.
    Each shard is solved and verified on one worker and kept in the shard store until the caller
    has appended it to rollouts.jsonl, so a restart redoes only unfinished shards."""
    store = shard_store(ctx)
    per_call = _rows_per_call(ctx.cfg)
    pool = Pool(ctx, want=math.ceil(len(problems) / batch_size({"rows_per_call": per_call}, batch_problems, params.n,
                                                                len(modes))) if per_call else len(problems))
    try:
        size = batch_size(pool.info[0], batch_problems, params.n, len(modes))
        shards = cut(problems, size)
        keys = [shard_key([p.id for p in s]) for s in shards]
        todo = [(k, s) for k, s in zip(keys, shards) if store.done(k) is None]
        log(f"ray: {len(shards)} shard(s) of <= {size} problems over {pool.n} worker(s); "
            f"{len(shards) - len(todo)} already done in {store.dir}")
        kw = {"seed": seed, "round_idx": round_idx, "batch_problems": size, "modes": tuple(modes)}
        items = [(k, "solve_shard", ([p.to_dict() for p in s], params, kw)) for k, s in todo]
        errors = 0
        pids: set[int] = set()

        def finished() -> Iterator[tuple[str, list[Rollout]]]:
            nonlocal errors
            for key, res in pool.run(items):
                rows = [Rollout.from_dict(d) for d in res["rows"]]
                store.write(key, rows, errors=res["errors"], pid=res["pid"], seconds=round(res["seconds"], 3))
                faults.point("ray:shard_done")  # crash tests: a shard marked done, not yet in rollouts.jsonl
                for err in res["errors"]:
                    log(f"ray: ERROR in problem {err['problem_id']} (recorded as its {params.n * len(modes)} "
                        f"paths, label unknown, reason error): {err['error']}")
                errors += len(res["errors"])
                pids.add(res["pid"])
                timing["verify_seconds"] = timing.get("verify_seconds", 0.0) + res["verify_seconds"]
                timing["programs"] = timing.get("programs", 0) + res["programs"]
                yield key, rows

        for rows in store.results(keys, finished()):
            if progress is not None:
                progress.update(len(rows))
            yield rows
        if errors:
            timing["row_errors"] = timing.get("row_errors", 0) + errors
            log(f"ray: {errors} problem(s) failed and were recorded with their error (verdict_reasons.error)")
        log(f"ray: {len(items)} shard(s) solved by {len(pids)} worker process(es)")
    finally:
        pool.close()
    store.remove()  # every shard is in rollouts.jsonl now (the caller appended each one)


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

    attempts, per_call = max(1, kw.get("attempts", 1)), _rows_per_call(ctx.cfg)
    gen = RayGenerator(Pool(ctx, want=math.ceil(attempts / per_call) if per_call else attempts), ctx.model)
    try:
        posed, stats = pose_problems(gen, ctx.sandbox(), examples, **kw)
    finally:
        gen.close()
    if gen.errors:
        stats["generation_errors"] = gen.errors
    return posed, stats
