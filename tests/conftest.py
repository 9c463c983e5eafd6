import os
import shutil

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed")


def write_toml(path, text: str):
    path.write_text(text)
    return path
