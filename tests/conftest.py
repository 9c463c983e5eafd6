import os
import shutil
from pathlib import Path

import pytest

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
