"""The iterative loop: for each round, pose/solve/verify/pair, train (DPO + NLL), evaluate.

Resumable at any stage: each stage's finished output is a file (written atomically), and a rerun
of the same command skips what exists. OUT/config.json pins the data-affecting config: resuming
with different settings is refused (only run.rounds may grow).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from selfplay.backends.base import Backend
from selfplay.backends.resources import build_backend
from selfplay.config import Config
from selfplay.core import faults, io, provenance
from selfplay.core import log as runlog
from selfplay.core.log import log
from selfplay.core.records import Problem
from selfplay.evaluate.driver import evaluate_model
from selfplay.pair.contamination import check_contamination
from selfplay.pair.diversity import round_warnings
from selfplay.run.context import (  # noqa: F401
    RoundNotReady,
    eval_sets,
    heldout_problems,
    make_context,
    round_model,
)
from selfplay.run.layout import pair_files, prepare_out, round_complete
from selfplay.run.round import run_round, write_stats
from selfplay.run.summary import format_summary
from selfplay.run.train_round import train_round


class Engines:
    """One generation engine at a time, shared by consecutive stages on the same model: the start
    evaluation and round 0, then each round's evaluation and the next round (whose model it is).
    Asking for another model closes the engine first; close() before training frees its memory."""

    def __init__(self, cfg: Config, factory: Callable[[str], Backend] | None = None) -> None:
        self.cfg, self.factory = cfg, factory
        self.model: str | None = None
        self.backend: Backend | None = None

    def get(self, model: str) -> Backend:
        if self.backend is None or self.model != model:
            self.close()
            self.backend = self.factory(model) if self.factory is not None else build_backend(self.cfg, model)
            self.model = model
        return self.backend

    def close(self) -> None:
        backend, self.backend, self.model = self.backend, None, None
        if backend is not None:
            backend.close()


def evaluate_to(cfg: Config, model: str, sets: dict[str, list[Problem]], path: Path,
                backends: Callable[[str], Backend] | None = None) -> dict[str, Any]:
    """Evaluate one model on every held-out set (selfplay.evaluate.driver.evaluate_model); writes
    `path` atomically. An existing file is reused only when it was made from the same model,
    config and verifier."""
    entry = provenance.key(cfg, model=model, labels=True)
    if provenance.check(path, entry):
        return io.read_json(path)
    provenance.record(path, entry)
    result = evaluate_model(cfg, model, sets, backends)
    faults.point("eval:done")  # evaluated, eval file not written yet
    io.write_json(path, result)
    return result


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def run_loop(cfg: Config, backend_factory: Callable[[str], Backend] | None = None,
             note: str | None = None) -> list[dict[str, Any]]:
    """Run (or resume) every round; each command's work is logged to OUT/run.log. `note` is logged
    once OUT is accepted (e.g. that the run resumes with its own config.json)."""
    with runlog.session(Path(cfg.run.out), "run"):
        return _run_loop(cfg, backend_factory, note)


def _run_loop(cfg: Config, backend_factory: Callable[[str], Backend] | None, note: str | None) -> list[dict[str, Any]]:
    out = prepare_out(cfg)
    if note:
        log(note)
    t_run = time.perf_counter()
    engines = Engines(cfg, backend_factory)
    try:
        return _rounds(cfg, out, engines, t_run)
    finally:
        engines.close()


def _rounds(cfg: Config, out: Path, engines: Engines, t_run: float) -> list[dict[str, Any]]:
    sets = eval_sets(cfg) if cfg.eval.enabled else {}
    all_stats = []
    start_eval = None
    if sets:
        start_eval = evaluate_to(cfg, round_model(cfg, out, 0), sets, out / "eval_base.json", engines.get)
    for k in range(cfg.run.rounds):
        # a finished round is still walked through (each stage checks its output's provenance and
        # reuses it: cheap), but its summary is not replayed as if it were new
        finished = round_complete(out, k, cfg.to_dict())
        ctx = make_context(cfg, out, k, engines.get)
        log(f"round {k}: starting (model {ctx.model}; rollouts.jsonl has "
            f"{_lines(ctx.dir / 'rollouts.jsonl')} lines)")
        try:
            stats = run_round(ctx)
        finally:
            ctx.close()
        if cfg.train.enabled:
            engines.close()  # the engine's model is the one being trained: free its memory first
            stats["train"] = train_round(cfg, out, k, ctx.model)
        if sets and cfg.train.enabled:  # a round that was not trained evaluates its starting model again
            stats["eval"] = evaluate_to(cfg, round_model(cfg, out, k + 1), sets,
                                           out / f"round_{k}" / "eval.json", engines.get)
        if sets:
            contamination = check_contamination([p for ps in sets.values() for p in ps], pair_files(out, k))
            io.write_json(out / f"round_{k}" / "contamination.json", contamination)
        all_stats.append(stats)
        # the warnings are monitoring, so they run with the guard's mixing off too (guard.enabled)
        history = [io.read_json(out / f"round_{j}" / "stats.json").get("diversity", {}) for j in range(k + 1)]
        stats["warnings"] = round_warnings(history, min_fraction=cfg.guard.warn_fraction)
        if not finished:
            for w in stats["warnings"]:
                log(f"WARNING collapse guard: {w}")
        write_stats(out / f"round_{k}", stats)
        if finished:
            print(f"round {k} complete, skipped", flush=True)
            runlog.append(f"round {k} complete, skipped")
        else:
            text = format_summary(stats, start_eval)
            print(text, flush=True)
            runlog.append(text)
            log(f"round {k} complete")
    log(f"done in {time.perf_counter() - t_run:.0f} s; data in {out}")
    return all_stats
