"""The one place the heavy parts a stage runs on are built from a config: the generation backend
([model], [vllm]), the math-verifier pool ([verify]) and the code sandbox ([sandbox]).

`Resources` holds them for one model and starts each on first use; the round's context, the
loop's engine cache, evaluation (the loop's and `selfplay eval`'s) and each Ray worker use it,
so a new setting is wired in here once.
"""
from __future__ import annotations

from typing import Any, Callable

from selfplay.backends import get_backend
from selfplay.backends.base import Backend
from selfplay.config import Config
from selfplay.core.log import log
from selfplay_verifiers import MathVerifier
from selfplay_verifiers.sandbox import Sandbox


def backend_kwargs(cfg: Config) -> dict[str, Any]:
    """get_backend's settings from the config ([model]; the vllm engine's own under [vllm])."""
    m, v = cfg.model, cfg.vllm
    kw: dict[str, Any] = dict(dtype=m.dtype, batch_size=m.batch_size, seed=cfg.run.seed)
    engine = {"cpu_bind": v.cpu_bind, "tensor_parallel_size": v.tensor_parallel_size, "top_p": v.top_p}
    for name in ("max_num_seqs", "max_num_batched_tokens", "gpu_memory_utilization", "block_size"):
        if getattr(v, name):  # 0: leave vLLM's default
            engine[name] = getattr(v, name)
    if v.kv_cache_gib:
        engine["kv_cache_memory_bytes"] = int(v.kv_cache_gib * (1 << 30))
    kw["engine"] = engine  # read by the vllm backend only
    return kw


def build_backend(cfg: Config, model: str) -> Backend:
    """The generation backend `cfg.model.backend` serving `model`."""
    log(f"loading model {model} on backend {cfg.model.backend}")
    return get_backend(cfg.model.backend, model, **backend_kwargs(cfg))


def build_verifier(cfg: Config, workers: int | None = None) -> MathVerifier:
    """The math-verifier pool: verify.workers processes (0: one per core, or `workers` when the
    caller knows its share of the machine, e.g. a Ray worker's CPUs)."""
    return MathVerifier(workers=cfg.verify.workers or workers or None, timeout=cfg.verify.timeout)


def build_sandbox(cfg: Config) -> Sandbox:
    """The code sandbox for posed programs and pot paths (verifiers/sandbox.py)."""
    sb = cfg.sandbox
    return Sandbox(timeout=sb.timeout, mode=sb.mode, libraries=tuple(sb.libraries))


class Resources:
    """One model's backend, verifier pool and sandbox, each started on first use and closed by
    close(). `backends`: where the backend comes from instead of build_backend (the loop's
    engine cache, a test's scripted factory); a backend from it belongs to its owner and is not
    closed here. `verify_workers`: the verifier pool's size when verify.workers is 0."""

    def __init__(self, cfg: Config, model: str, backends: Callable[[str], Backend] | None = None,
                 verify_workers: int | None = None) -> None:
        self.cfg, self.model, self.backends, self.verify_workers = cfg, model, backends, verify_workers
        self._backend: Backend | None = None
        self._verifier: MathVerifier | None = None
        self._sandbox: Sandbox | None = None

    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = self.backends(self.model) if self.backends else build_backend(self.cfg, self.model)
        return self._backend

    def verifier(self) -> MathVerifier:
        if self._verifier is None:
            self._verifier = build_verifier(self.cfg, self.verify_workers)
        return self._verifier

    def sandbox(self) -> Sandbox:
        if self._sandbox is None:
            self._sandbox = build_sandbox(self.cfg)
        return self._sandbox

    def close(self) -> None:
        own_backend = self._backend if self.backends is None else None
        for part in (own_backend, self._verifier, self._sandbox):
            if part is not None:
                part.close()
        self._backend = self._verifier = self._sandbox = None

    def __enter__(self) -> Resources:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
