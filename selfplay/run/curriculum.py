"""The seed curriculum (seeds.curriculum): each procedural generator's levels widen when the
model solves that generator's problems well; so do a seed file's with seeds.file_order =
easy_first (a file problem's level ranks its worked solution's steps: selfplay_seeds.loaders).

Round 0 uses seeds.levels for every generator. Round K > 0 reads round K-1's problems and
verified paths: for each generator, the share of its labelled paths at its highest level that are
correct. At or above seeds.widen_at that generator gets its next level too (up to
seeds.max_level); the easier levels stay in the mix, so the problems a model still learns from are
not dropped. The decision and its numbers are written to OUT/round_K/curriculum.json and logged.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from selfplay.config import Config
from selfplay.core import io
from selfplay.core.metrics import pass_counts
from selfplay.core.records import Problem, Rollout
from selfplay_seeds.loaders import seed_file

FILE = "curriculum.json"


def curriculum_sources(cfg: Config) -> list[str]:
    """What the seed curriculum levels: each generator, then with seeds.file_order = easy_first
    each seed file, by its file name (its problems' `source`)."""
    files = [seed_file(f).name for f in cfg.seeds.files] if cfg.seeds.file_order == "easy_first" else []
    return list(cfg.seeds.generators) + files


def _levels_of(rdir: Path, cfg: Config) -> dict[str, list[int]]:
    path = rdir / FILE
    if path.exists():
        return {g: list(v["levels"]) for g, v in io.read_json(path)["generators"].items()}
    return {g: list(cfg.seeds.levels) for g in curriculum_sources(cfg)}


def _unchanged(cfg: Config, levels: dict[str, list[int]], why: str) -> dict[str, Any]:
    """Every generator keeps its levels (`levels`, else seeds.levels), nothing measured, for `why`."""
    return {"widen_at": cfg.seeds.widen_at, "generators": {
        g: {"levels": levels.get(g, list(cfg.seeds.levels)), "widened": False, "solve_rate": None, "paths": 0,
            "why": why} for g in curriculum_sources(cfg)}}


def seed_levels(cfg: Config, out: Path, round_idx: int) -> dict[str, Any]:
    """This round's levels per generator and why: {"generators": {g: {"levels", "widened",
    "solve_rate", "paths", "why"}}, "widen_at": ...}."""
    if not cfg.seeds.curriculum or round_idx == 0:
        return _unchanged(cfg, {}, "start" if cfg.seeds.curriculum else "off")
    prev = out / f"round_{round_idx - 1}"
    levels = _levels_of(prev, cfg)
    if not (prev / "problems.jsonl").exists() or not (prev / "rollouts.jsonl").exists():
        # a stage command run on its own (`selfplay problems --round K --model M`): nothing measured
        return _unchanged(cfg, levels, f"round {round_idx - 1} has no solved problems")
    problems = {p.id: p for p in io.read_records(prev / "problems.jsonl", Problem.from_dict)}
    labels: dict[tuple[str, int], list[str | None]] = defaultdict(list)
    for r in io.read_records(prev / "rollouts.jsonl", Rollout.from_dict):
        p = problems.get(r.problem_id)
        if p is not None and p.origin in ("procedural", "file") and p.level is not None:
            labels[(p.source, p.level)].append(r.label)
    result = {}
    for g in curriculum_sources(cfg):
        now = levels.get(g, list(cfg.seeds.levels))
        top = max(now)
        correct, labelled = pass_counts(labels.get((g, top), []))
        rate = correct / labelled if labelled else None
        widen = rate is not None and rate >= cfg.seeds.widen_at and top < cfg.seeds.max_level
        if rate is None:
            why = f"no labelled paths at level {top} last round"
        elif widen:
            why = f"level {top} solved {rate:.2f} >= widen_at {cfg.seeds.widen_at}: adds level {top + 1}"
        elif top >= cfg.seeds.max_level:
            why = f"at max_level {cfg.seeds.max_level}"
        else:
            why = f"level {top} solved {rate:.2f} < widen_at {cfg.seeds.widen_at}"
        result[g] = {"levels": sorted(now + [top + 1]) if widen else now, "widened": widen,
                     "solve_rate": None if rate is None else round(rate, 4), "paths": labelled, "why": why}
    return {"widen_at": cfg.seeds.widen_at, "generators": result}


def curriculum_line(cur: dict[str, Any]) -> str:
    """One log line: generator levels, the widened ones marked."""
    return "seed levels: " + ", ".join(
        f"{g} {'/'.join(map(str, v['levels']))}{' (+)' if v['widened'] else ''}" for g, v in cur["generators"].items())
