"""The iterative loop: for each round, pose/solve/verify/pair, train (DPO + NLL), evaluate.

Resumable at any stage: each stage's finished output is a file (written atomically), and a rerun
of the same command skips what exists. OUT/config.json pins the data-affecting config: resuming
with different settings is refused (only run.rounds may grow).
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

from selfplay import __version__, faults, io, provenance
from selfplay.backends.base import Backend
from selfplay.config import Config
from selfplay.records import Problem
from selfplay.round import RoundContext, log, run_round, write_stats
from selfplay.summary import format_summary

_VERSIONS = "versions"  # config.json key: what made the run (information; stages check their own)


def check_out_dir(out: Path) -> None:
    """Refuse, before anything is written, an OUT that is a file, sits under a file or cannot be
    written (one line, not a traceback halfway through a run)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: is a file, not a directory")
    parent = out
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"--out {out}: {parent} is a file, not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out}: {parent} is not writable")


def prepare_out(cfg: Config) -> Path:
    """Create OUT and write the resolved config; refuse to resume a run made with other settings.
    The model name is checked first, so a typo never pins itself into config.json."""
    from selfplay.models import check_model

    out = Path(cfg.run.out)
    check_out_dir(out)
    check_model(cfg.model.name, cfg.model.backend)
    path = out / "config.json"
    new = cfg.to_dict()
    if path.exists():
        old = provenance.flatten({k: v for k, v in io.read_json(path).items() if k != _VERSIONS})
        diff = [f"{key} was {old[key]!r}, now {value!r}" for key, value in provenance.flatten(new).items()
                if key not in provenance.MUTABLE_ON_RESUME and key in old and old[key] != value]
        if diff:  # every differing key at once: fixing them one rerun at a time wastes the user's time
            raise ValueError(f"{path}: {len(diff)} setting(s) differ from this run's: {'; '.join(diff)}; "
                             f"resume with the run's own settings (`selfplay run --out {out}` with no "
                             f"--config reads them from config.json) or use another --out")
    out.mkdir(parents=True, exist_ok=True)
    new[_VERSIONS] = {"selfplay": __version__, "verifier": provenance.verifier_version()}
    io.write_json(path, new)
    return out


def run_config(out: Path, overrides: dict[str, Any] | None = None) -> Config:
    """The config a run was made with (OUT/config.json, its `versions` left out), with `overrides`
    ({"run.rounds": 3, ...}; None values ignored) applied and validated: how `selfplay run --out
    OUT` without --config resumes a run, and how `selfplay eval --config OUT/config.json` repeats
    its evaluation."""
    from selfplay.config import from_dict

    path = Path(out) / "config.json" if Path(out).is_dir() else Path(out)
    try:
        data = io.read_json(path)
    except (OSError, ValueError) as e:
        raise ValueError(f"config: {path}: not a readable config.json ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"config: {path}: not a JSON object")
    data.pop(_VERSIONS, None)
    for dotted, value in (overrides or {}).items():
        if value is not None:
            *parents, leaf = dotted.split(".")
            target = data
            for part in parents:
                target = target.setdefault(part, {})
            target[leaf] = value
    return from_dict(data).validate()


def heldout_problems(cfg: Config) -> list[Problem]:
    """The held-out procedural split: its own seed namespace, never posed from or trained on."""
    from seeds import procedural_problems

    return procedural_problems(cfg.eval.heldout_problems, cfg.seeds.generators, cfg.seeds.levels,
                               seed=cfg.run.seed, split="heldout")


def eval_sets(cfg: Config) -> dict[str, list[Problem]]:
    from seeds import load_jsonl_problems

    sets = {"heldout_procedural": heldout_problems(cfg)} if cfg.eval.heldout_problems else {}
    for f in cfg.eval.files:
        sets[Path(f).stem] = load_jsonl_problems(f, limit=cfg.eval.file_limit)
    return sets


class RoundNotReady(ValueError):
    """A stage of round K was asked for before round K-1 finished training."""


def round_model(cfg: Config, out: Path, round_idx: int) -> str:
    """Round K samples from round K-1's trained model; a round with no usable pairs hands on its
    starting model by reference (train_stats.json: trained false). With training off every round
    uses the base model. Never a silent fallback: an untrained round K-1 is refused."""
    from selfplay.models import resolve_model

    if round_idx == 0 or not cfg.train.enabled:
        return resolve_model(cfg.model.name)
    prev = out / f"round_{round_idx - 1}"
    stats_path = prev / "train_stats.json"
    stats = io.read_json(stats_path) if stats_path.exists() else {}
    if stats.get("trained") is False:
        return str(stats["start_model"])
    if stats and (prev / "model" / "config.json").exists():
        return str(prev / "model")
    raise RoundNotReady(f"round {round_idx}: round {round_idx - 1} is not trained yet ({stats_path} missing); "
                        f"finish it with `selfplay run --rounds {round_idx}`, or pass --model")


def make_context(cfg: Config, out: Path, round_idx: int,
                 backend_factory: Callable[[str], Backend] | None = None, model: str | None = None) -> RoundContext:
    """`model` overrides the round's model (a stage command's --model); else round_model."""
    held = frozenset(p.question for ps in eval_sets(cfg).values() for p in ps) if cfg.eval.enabled else frozenset()
    return RoundContext(cfg=cfg, out=out, round_idx=round_idx, model=model or round_model(cfg, out, round_idx),
                        heldout_questions=held, backend_factory=backend_factory)


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
            if self.factory is not None:
                self.backend = self.factory(model)
            else:
                from selfplay.backends import get_backend
                from selfplay.round import backend_kwargs

                log(f"loading model {model} on backend {self.cfg.model.backend}")
                self.backend = get_backend(self.cfg.model.backend, model, **backend_kwargs(self.cfg))
            self.model = model
        return self.backend

    def close(self) -> None:
        backend, self.backend, self.model = self.backend, None, None
        if backend is not None:
            backend.close()


def evaluate_model(cfg: Config, model: str, sets: dict[str, list[Problem]], path: Path,
                   backend_factory: Callable[[str], Backend] | None = None) -> dict[str, Any]:
    """Evaluate one model on every held-out set; writes `path` atomically. An existing file is
    reused only when it was made from the same model, config and verifier."""
    entry = provenance.key(cfg, model=model, labels=True)
    if provenance.check(path, entry):
        return io.read_json(path)
    provenance.record(path, entry)
    from selfplay.backends import get_backend, problems_per_call
    from selfplay.evaluate import evaluate
    from selfplay.round import backend_kwargs
    from verifiers import MathVerifier

    log(f"evaluating {model} on {', '.join(f'{k} ({len(v)})' for k, v in sets.items())}")
    backend = backend_factory(model) if backend_factory else get_backend(
        cfg.model.backend, model, **backend_kwargs(cfg))
    result: dict[str, Any] = {"model": model, "sets": {}}
    try:
        with MathVerifier(workers=cfg.verify.workers or None, timeout=cfg.verify.timeout) as verifier:
            for name, problems in sets.items():
                r = evaluate(backend, problems, verifier, samples=cfg.eval.samples,
                             batch_size=problems_per_call(backend, cfg.eval.samples),
                             temperature=cfg.solve.temperature, top_p=cfg.solve.top_p,
                             max_new_tokens=cfg.eval.max_new_tokens, seed=cfg.run.seed)
                result["sets"][name] = r
    finally:
        if backend_factory is None:  # a factory's backends belong to its owner (e.g. Engines)
            backend.close()
    faults.point("eval:done")  # evaluated, eval file not written yet
    io.write_json(path, result)
    return result


def pair_files(out: Path, round_idx: int) -> list[Path]:
    """pairs.jsonl of rounds 0..K: what round K's training set (and its provenance) is made from."""
    return [out / f"round_{k}" / "pairs.jsonl" for k in range(round_idx + 1)]


def training_set(cfg: Config, out: Path, round_idx: int) -> tuple[Path, dict[str, Any]]:
    """Write OUT/round_K/train_pairs.jsonl: the exact pairs round K trains on.

    Guard on: earlier rounds accumulate (guard.accumulate) and seed-derived pairs keep at least
    guard.seed_fraction of the set. Guard off: this round's pairs only."""
    from selfplay.mixing import build_training_set
    from selfplay.records import Pair

    files = pair_files(out, round_idx)
    rounds_pairs = [io.read_records(f, Pair.from_dict) for f in files]
    g = cfg.guard
    pairs, info = build_training_set(rounds_pairs, round_idx, seed_fraction=g.seed_fraction if g.enabled else 0.0,
                                     accumulate=g.accumulate if g.enabled else "current", train_on=g.train_on,
                                     seed=cfg.run.seed)
    path = out / f"round_{round_idx}" / "train_pairs.jsonl"
    provenance.record(path, provenance.key(cfg, pairs=[provenance.file_hash(f) for f in files]))
    io.write_jsonl(path, pairs)
    faults.point("train:set")
    return path, info


def train_round(cfg: Config, out: Path, round_idx: int, base_model: str) -> dict[str, Any]:
    """DPO + NLL on the round's training set; the reference model is the round's starting model.

    train_stats.json is written last and carries the provenance (the starting model and every
    round's pairs). A round whose pairs are all unusable is marked `trained: false` and hands its
    starting model on by reference (works for a hub id too); any other failure stops the run."""
    rdir = out / f"round_{round_idx}"
    model_dir, stats_path = rdir / "model", rdir / "train_stats.json"
    entry = provenance.key(cfg, model=base_model, pairs=[provenance.file_hash(f) for f in pair_files(out, round_idx)])
    if provenance.check(stats_path, entry):
        return io.read_json(stats_path)
    provenance.record(stats_path, entry)
    from selfplay import train_launch  # train.launcher: in this process or `accelerate launch`
    from selfplay.train import NoUsablePairs, TrainConfig

    t = cfg.train
    pairs_path, mix = training_set(cfg, out, round_idx)
    tcfg = TrainConfig(beta=t.beta, learning_rate=t.learning_rate, epochs=t.epochs,
                       per_device_batch_size=t.batch_size, grad_accum=t.grad_accum, max_length=t.max_length,
                       nll_weight=t.nll_weight, max_steps=t.max_steps, use_lora=t.use_lora,
                       seed=cfg.run.seed + round_idx, report_to=t.report_to, precision=t.precision,
                       logging_dir=str(rdir / "tensorboard"))
    log(f"round {round_idx}: training on {mix.get('total', '?')} pairs ({pairs_path}) from {base_model}")
    t0 = time.perf_counter()
    partial = rdir / ".train_stats.partial.json"  # train_dpo's own copy; train_stats.json comes last
    try:
        stats = train_launch.train(cfg, [pairs_path], base_model, model_dir, tcfg, stats_path=partial)
        stats["trained"] = True
    except NoUsablePairs as e:  # the next round starts from this round's starting model
        log(f"round {round_idx}: NOT TRAINED ({e}); round {round_idx + 1} starts from {base_model}")
        stats = {"trained": False, "reason": str(e), "start_model": base_model, "n_train": 0}
    faults.point("train:saved")  # the model is in place, train_stats.json not yet
    stats["seconds"] = round(time.perf_counter() - t0, 1)
    stats["mix"] = mix
    io.write_json(stats_path, stats)
    partial.unlink(missing_ok=True)
    return stats


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def run_loop(cfg: Config, backend_factory: Callable[[str], Backend] | None = None,
             note: str | None = None) -> list[dict[str, Any]]:
    """Run (or resume) every round; each command's work is logged to OUT/run.log. `note` is logged
    once OUT is accepted (e.g. that the run resumes with its own config.json)."""
    from selfplay import runlog

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
    from selfplay import runlog
    from selfplay.status import round_complete

    sets = eval_sets(cfg) if cfg.eval.enabled else {}
    all_stats = []
    start_eval = None
    if sets:
        start_eval = evaluate_model(cfg, round_model(cfg, out, 0), sets, out / "eval_base.json", engines.get)
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
            stats["eval"] = evaluate_model(cfg, round_model(cfg, out, k + 1), sets,
                                           out / f"round_{k}" / "eval.json", engines.get)
        if sets:
            from selfplay.evaluate import check_contamination

            contamination = check_contamination([p for ps in sets.values() for p in ps], pair_files(out, k))
            io.write_json(out / f"round_{k}" / "contamination.json", contamination)
        all_stats.append(stats)
        # the warnings are monitoring, so they run with the guard's mixing off too (guard.enabled)
        from selfplay.diversity import round_warnings

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
    if cfg.train.enabled or sets:
        from selfplay.report import write_report

        log(f"report -> {write_report(out)}")
    log(f"done in {time.perf_counter() - t_run:.0f} s; data in {out}")
    return all_stats
