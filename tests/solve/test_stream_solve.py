"""Continuous generation (backends with generate_stream, i.e. vLLM) in the solve stage and the
loop's one-engine-per-model sharing, on the scripted backend (fast). The real engine's stream is
tested in tests/backends/test_vllm_backend.py and, through whole rounds, in tests/run/test_vllm_loop.py."""
import random
from dataclasses import replace

import pytest

from selfplay.backends.base import SamplingParams
from selfplay.backends.scripted import ScriptedBackend
from selfplay.config import load_config
from selfplay.run.loop import run_loop
from selfplay.solve.generate import solve_and_verify
from selfplay_seeds.procedural import procedural_problems
from tests.conftest import needs_bwrap


class StreamingScripted(ScriptedBackend):
    """The scripted model behind a continuous-generation interface whose prompts finish in a
    shuffled order (as sequences of different lengths do in a real engine)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.windows: list[int] = []

    def generate_stream(self, jobs, window=0):
        self.windows.append(window)
        items = [((j, i), comps) for j, (prompts, params, seeds) in enumerate(jobs)
                 for i, comps in enumerate(self.generate(prompts, params, seeds))]
        random.Random(len(items)).shuffle(items)
        yield from items


def _solve(backend, problems, modes, sandbox, batch_problems=0):
    from selfplay_verifiers import MathVerifier

    params = SamplingParams(n=3, temperature=0.8, max_new_tokens=64)
    with MathVerifier(workers=1) as mv:
        groups = list(solve_and_verify(backend, problems, params, mv, seed=3, round_idx=1, modes=modes,
                                       sandbox=sandbox, batch_problems=batch_problems))
    return groups


@needs_bwrap
@pytest.mark.parametrize("modes", [("cot",), ("cot", "pot")])
def test_streamed_solve_gives_the_batch_path_rollouts(modes):
    from selfplay_verifiers.sandbox import Sandbox

    problems = procedural_problems(10, ["add", "sub", "two_step"], [1], seed=4, split="train")
    with Sandbox(timeout=5.0) as sb:
        batch = _solve(ScriptedBackend("m"), problems, modes, sb, batch_problems=4)
        streaming = StreamingScripted("m")
        streamed = _solve(streaming, problems, modes, sb, batch_problems=4)
    def flat(groups):  # verify_seconds is a timing, not data
        return sorted((replace(r, verify_seconds=0.0) for g in groups for r in g),
                      key=lambda r: (r.problem_id, r.sample_index))

    flat_b, flat_s = flat(batch), flat(streamed)
    assert flat_s == flat_b and len(flat_s) == len(problems) * 3 * len(modes)
    for g in streamed:  # every yielded group holds whole problems: all their paths, every mode
        ids = {r.problem_id for r in g}
        assert len(g) == len(ids) * 3 * len(modes)
    assert streaming.windows == [4 * len(modes)]  # batch_problems bounds the problems in flight


def test_loop_starts_one_engine_per_model(tmp_path):
    """Base evaluation, round 0 and round 1 use the same model (no training): one engine."""
    f = tmp_path / "c.toml"
    f.write_text(f"""
[run]
rounds = 2
out = "{tmp_path / 'out'}"
[model]
backend = "scripted"
[seeds]
problems = 4
[pose]
enabled = false
[solve]
samples = 2
[train]
enabled = false
[eval]
heldout_problems = 6
samples = 1
""")
    built: list[str] = []

    def factory(model):
        built.append(model)
        return StreamingScripted(model)

    run_loop(load_config(f), backend_factory=factory)
    assert len(built) == 1


def test_relabel_keeps_a_path_whose_problem_raised():
    """A row recorded with its error (Ray executor, selfplay/run/ray_executor.py) has no completion:
    judging it again against a gold must not turn it into an `incorrect` (a fair rejected)."""
    from selfplay.core.records import Rollout
    from selfplay.verify.label import relabel
    from selfplay_verifiers import MathVerifier

    err = Rollout(problem_id="p", sample_index=0, completion="", finish_reason="error", n_tokens=0, seed=1,
                  label="unknown", reason="error", error="RuntimeError: prompt too long")
    ok = Rollout(problem_id="p", sample_index=1, completion="so \\boxed{4}", finish_reason="stop", n_tokens=4,
                 seed=2, label="incorrect", reason="wrong")
    with MathVerifier(workers=1) as mv:
        out = relabel(mv, [("4", err), ("4", ok)])
    assert out[0] == err and out[1].label == "correct"
