"""Backend registry: configs and the CLI pick a generation backend by name."""
from __future__ import annotations

from typing import Any, Callable

from selfplay.backends.base import Backend, Completion, Messages, SamplingParams

__all__ = ["Backend", "Completion", "Messages", "SamplingParams", "get_backend", "BACKENDS"]


def _hf(model: str, **kw: Any) -> Backend:
    try:
        from selfplay.backends.hf import HFBackend
        import transformers  # noqa: F401
    except ImportError as e:
        raise RuntimeError(f"backend 'hf' needs transformers: pip install -e '.[model]' ({e})") from e
    return HFBackend(model, **kw)


def _vllm(model: str, **kw: Any) -> Backend:
    from selfplay.backends.vllm_backend import VLLMBackend

    kw.pop("batch_size", None)  # the engine schedules its own batches
    if kw.get("dtype") == "float32":
        kw["dtype"] = "auto"  # our hf default; let vLLM pick (bf16 on CPU/GPU where supported)
    return VLLMBackend(model, **kw)


def _scripted(model: str, **kw: Any) -> Backend:
    from selfplay.backends.scripted import ScriptedBackend

    return ScriptedBackend(model, **kw)


BACKENDS: dict[str, Callable[..., Backend]] = {"hf": _hf, "vllm": _vllm, "scripted": _scripted}


def get_backend(name: str, model: str, **kwargs: Any) -> Backend:
    """Build a backend by registry name ('hf', 'vllm', 'scripted' for tests)."""
    if name not in BACKENDS:
        raise ValueError(f"backend: unknown name {name!r}; choose one of {sorted(BACKENDS)}")
    return BACKENDS[name](model, **kwargs)
