import os
import shutil
from pathlib import Path

import orjson
import pytest

from selfplay.prompts import solve_messages

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed")

# CI runs `.ci/run` with CI=true: there a skip is a failure, because a missing bwrap, model or
# data file would otherwise let CI pass with no coverage of a required part. Allowed to skip:
# tests that need a CUDA GPU, and vllm tests in the main venv (scripts/test.sh runs them again in
# .venv-vllm with SELFPLAY_VLLM_PASS=1, where they must not skip either).
CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _may_skip(item: pytest.Item) -> bool:
    if item.get_closest_marker("gpu") is not None:
        return True
    return item.get_closest_marker("vllm") is not None and not os.environ.get("SELFPLAY_VLLM_PASS")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if CI and rep.skipped and not hasattr(rep, "wasxfail") and not _may_skip(item):
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        rep.outcome = "failed"
        rep.longrepr = f"skipped under CI=true, where this part is required: {reason}"


def write_toml(path, text: str):
    path.write_text(text)
    return path


# ../shared/data beside the checkout (CI clones main with shared/ beside it)
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"{SHARED_DATA} not present")


# ---- helpers shared by several test files (import them from here, never from a test module)

# A small scripted run (tests/run/test_faults.py, tests/inspect/test_status.py, ...)
RUN_TOML = """
[run]
seed = 3
rounds = {rounds}
out = "{out}"
[model]
backend = "scripted"
name = "{model}"
[seeds]
problems = 6
[pose]
enabled = false
[solve]
samples = 4
[train]
enabled = {train}
[eval]
enabled = false
"""


def cfg_file(tmp_path, out, rounds=1, train="false", model="scripted-model", name="c.toml"):
    f = tmp_path / name
    f.write_text(RUN_TOML.format(out=out, rounds=rounds, train=train, model=model))
    return f


def one_line_error(r, *needles):
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


# A training pair as TRL reads it, and a pairs file (tests/train/*)
def pair_dict(a, b, chosen=None, rejected=None, pid=None, bare=False):
    # bare: no solve template (a ~40-token pair instead of ~130): real-model steps cost 3x less
    q = f"What is {a} + {b}?"
    return {"prompt": [{"role": "user", "content": q}] if bare else solve_messages(q),
            "chosen": [{"role": "assistant", "content": chosen or f"{a} + {b} = {a + b}. The answer is \\boxed{{{a + b}}}."}],
            "rejected": [{"role": "assistant", "content": rejected or f"{a} + {b} = {a + b + 1}. The answer is \\boxed{{{a + b + 1}}}."}],
            "metadata": {"problem_id": pid or f"add-{a}-{b}"}}


def write_pairs(path: Path, pairs) -> Path:
    path.write_bytes(b"".join(orjson.dumps(p) + b"\n" for p in pairs))
    return path


# A sandbox that prints canned outputs (tests/pose/*)
class FakeSandbox:
    def __init__(self, outputs):
        self.outputs = list(outputs)

    def run(self, code):
        from selfplay_verifiers.verdict import Verdict

        out = self.outputs.pop(0)
        label = "correct" if out is not None else "incorrect"

        class R:
            stdout = out or ""
            verdict = Verdict(label, "ok" if out is not None else "runtime_error")
        return R()
