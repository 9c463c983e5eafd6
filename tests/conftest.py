import os
import shutil

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed")


def write_toml(path, text: str):
    path.write_text(text)
    return path

# ../shared/data beside the checkout (CI clones main with shared/ beside it)
from pathlib import Path  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"{SHARED_DATA} not present")
