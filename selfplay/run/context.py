"""What the stages of one round share (RoundContext), and how the loop makes it: the round's
model (round K samples from round K-1's trained model) and the held-out sets whose questions no
training problem may copy."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from selfplay.backends.base import Backend
from selfplay.backends.models import resolve_model
from selfplay.backends.resources import Resources
from selfplay.config import Config
from selfplay.core import evalsets, io, provenance
from selfplay.core.records import Problem
from selfplay_seeds import load_jsonl_problems, procedural_problems
from selfplay_seeds.ood import ood_problems, svamp_problems
from selfplay_verifiers import MathVerifier
from selfplay_verifiers.sandbox import Sandbox


@dataclass
class RoundContext:
    """A round's settings, paths and model; its backend, verifier pool and sandbox (Resources)
    start lazily. A backend from `backend_factory` belongs to the factory's owner (the loop's
    Engines share one engine between a round and the evaluation on the same model)."""

    cfg: Config
    out: Path
    round_idx: int
    model: str
    heldout_questions: frozenset[str] = frozenset()
    backend_factory: Callable[[str], Backend] | None = None
    resources: Resources = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.resources = Resources(self.cfg, self.model, self.backend_factory)

    @property
    def dir(self) -> Path:
        return self.out / f"round_{self.round_idx}"

    def backend(self) -> Backend:
        return self.resources.backend()

    def verifier(self) -> MathVerifier:
        return self.resources.verifier()

    def sandbox(self) -> Sandbox:
        return self.resources.sandbox()

    def close(self) -> None:
        self.resources.close()


def heldout_problems(cfg: Config) -> list[Problem]:
    """The held-out procedural split: its own seed namespace, never posed from or trained on."""
    return procedural_problems(cfg.eval.heldout_problems, cfg.seeds.generators, cfg.seeds.levels,
                               seed=cfg.run.seed, split="heldout")


def eval_sets(cfg: Config) -> dict[str, list[Problem]]:
    """The run's evaluation sets by name: the held-out procedural split (in-distribution), with
    eval.ood the out-of-distribution sets (selfplay_seeds/ood.py), then eval.files by file stem."""
    sets = {evalsets.HELDOUT_PROCEDURAL: heldout_problems(cfg)} if cfg.eval.heldout_problems else {}
    if cfg.eval.ood:
        n, seed = cfg.eval.ood_problems, cfg.run.seed
        sets[evalsets.OOD_ARITH] = ood_problems(evalsets.OOD_ARITH, n, seed=seed)
        sets[evalsets.OOD_WORD] = ood_problems(evalsets.OOD_WORD, n, seed=seed)
        sets[evalsets.SVAMP] = svamp_problems(n, seed=seed)
    for f in cfg.eval.files:
        sets[Path(f).stem] = load_jsonl_problems(f, limit=cfg.eval.file_limit)
    return sets


class RoundNotReady(ValueError):
    """A stage of round K was asked for before round K-1 finished training."""


def round_model(cfg: Config, out: Path, round_idx: int) -> str:
    """Round K samples from round K-1's trained model; a round with no usable pairs hands on its
    starting model by reference (train_stats.json: trained false). With training off every round
    uses the base model. Never a silent fallback: an untrained round K-1 is refused."""
    if round_idx == 0 or not cfg.train.enabled:
        return resolve_model(cfg.model.name)
    prev = out / f"round_{round_idx - 1}"
    stats_path = prev / "train_stats.json"
    stats = io.read_json(stats_path) if stats_path.exists() else {}
    if stats.get("trained") is False:
        return start_model(out, prev, str(stats["start_model"]))
    if stats and (prev / "model" / "config.json").exists():
        return str(prev / "model")
    raise RoundNotReady(f"round {round_idx}: round {round_idx - 1} is not trained yet ({stats_path} missing); "
                        f"finish it with `selfplay run --rounds {round_idx}`, or pass --model")


def start_model(out: Path, rdir: Path, stored: str) -> str:
    """An untrained round's start_model (train_stats.json) as a path usable now: a model inside OUT
    is stored relative to OUT (provenance.relative_to_out). An older run stored the path string it
    was reached by (absolute, or relative to where it ran); when that names nothing now (the run
    moved), the model is found by its place in the run (round_J/model) if its fingerprint is the
    one train_stats.json's provenance recorded."""
    model = provenance.locate(stored, out)
    if Path(model).exists():
        return model
    place = provenance.run_model_place(stored)
    recorded = (provenance.read(rdir).get("train_stats.json") or {}).get("model_fingerprint")
    if place and (out / place).is_dir() and provenance.model_fingerprint(str(out / place)) == recorded:
        return str(out / place)
    return model


def make_context(cfg: Config, out: Path, round_idx: int,
                 backend_factory: Callable[[str], Backend] | None = None, model: str | None = None) -> RoundContext:
    """`model` overrides the round's model (a stage command's --model); else round_model."""
    held = frozenset(p.question for ps in eval_sets(cfg).values() for p in ps) if cfg.eval.enabled else frozenset()
    return RoundContext(cfg=cfg, out=out, round_idx=round_idx, model=model or round_model(cfg, out, round_idx),
                        heldout_questions=held, backend_factory=backend_factory)


def solve_entry(ctx: RoundContext) -> dict[str, Any]:
    """What rollouts.jsonl is made from: the problems, the sampling model and the verifier."""
    return provenance.key(ctx.cfg, model=ctx.model, labels=True,
                          problems=provenance.file_hash(ctx.dir / "problems.jsonl"))
