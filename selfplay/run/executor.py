"""Where a round's generation stages run: `run.executor = "local" | "ray"`.

The seam between the stages (selfplay/run/round.py) and the machines that do the work. A stage calls
`pose(ctx, ...)` or `solve(ctx, ...)` here and gets back exactly what `pose_problems` /
`solve_and_verify` return, whichever executor ran it:

  local  this process: the round's one backend, verifier pool and sandbox (ctx.backend() ...);
         the path every run took before there was a choice.
  ray    a pool of Ray actors (selfplay/run/ray_executor.py), each holding one generation backend and
         one verifier pool (+ sandbox for pot paths). solve: the problems are cut into shards of
         whole generation batches, each shard solved and verified on one worker, written to
         OUT/round_K/shards/ with a completion marker and handed back in problem order, so
         rollouts.jsonl stays the one file later stages read. pose: the posing prompts' generation
         is spread over the workers; the programs are checked here, in order (dedup is sequential).

Both paths use the same per-sample seeds, so on the hf backend (fp32, the same torch threads per
generation process) the files are identical whatever the executor and the number of workers
(tests/run/test_ray.py compares them).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator, Sequence

from selfplay.backends.base import SamplingParams
from selfplay.config.enums import Executor, names
from selfplay.core.records import Problem, Rollout
from selfplay.pose.posing import pose_problems
from selfplay.run.ray_executor import ray_pose, ray_solve
from selfplay.solve.generate import solve_and_verify

if TYPE_CHECKING:
    from selfplay.run.context import RoundContext

EXECUTORS = names(Executor)  # run.executor (selfplay/config/enums.py)


def pose(ctx: RoundContext, examples: Sequence[Problem], **kw: Any) -> tuple[list[Problem], dict[str, Any]]:
    """`selfplay.pose.posing.pose_problems(backend, sandbox, examples, **kw)` on the configured executor."""

    if ctx.cfg.run.executor == "local":
        return pose_problems(ctx.backend(), ctx.sandbox(), examples, **kw)

    return ray_pose(ctx, examples, **kw)


def solve(ctx: RoundContext, problems: Sequence[Problem], params: SamplingParams, *, seed: int, round_idx: int,
          batch_problems: int, progress: Any, modes: Sequence[str], timing: dict[str, Any]) -> Iterator[list[Rollout]]:
    """`selfplay.solve.generate.solve_and_verify` over `problems` on the configured executor: lists of
    complete problems' rollouts (all paths of a problem together)."""
    if ctx.cfg.run.executor == "local":

        return solve_and_verify(ctx.backend(), problems, params, ctx.verifier(), seed=seed, round_idx=round_idx,
                                batch_problems=batch_problems, progress=progress, modes=modes,
                                sandbox=ctx.sandbox() if "pot" in modes else None, timing=timing)

    return ray_solve(ctx, problems, params, seed=seed, round_idx=round_idx, batch_problems=batch_problems,
                     progress=progress, modes=modes, timing=timing)
