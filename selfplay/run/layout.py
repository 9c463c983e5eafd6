"""The layout of a run directory OUT: creating and checking it, the resolved config it pins
(OUT/config.json), where each round's files are, and when a round counts as complete. Read by
the loop, the stage commands and `selfplay status`."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from selfplay import __version__
from selfplay.backends.models import check_model
from selfplay.config import Config, apply_overrides, from_dict
from selfplay.core import io, provenance

VERSIONS = "versions"  # config.json key: what made the run (information; stages check their own)


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
    out = Path(cfg.run.out)
    check_out_dir(out)
    check_model(cfg.model.name, cfg.model.backend)
    path = out / "config.json"
    new = cfg.to_dict()
    if path.exists():
        old = provenance.flatten({k: v for k, v in io.read_json(path).items() if k != VERSIONS})
        diff = [f"{key} was {old[key]!r}, now {value!r}" for key, value in provenance.flatten(new).items()
                if key not in provenance.MUTABLE_ON_RESUME and key in old and old[key] != value]
        if diff:  # every differing key at once: fixing them one rerun at a time wastes the user's time
            raise ValueError(f"{path}: {len(diff)} setting(s) differ from this run's: {'; '.join(diff)}; "
                             f"resume with the run's own settings (`selfplay run --out {out}` with no "
                             f"--config reads them from config.json) or use another --out")
    out.mkdir(parents=True, exist_ok=True)
    new[VERSIONS] = {"selfplay": __version__, "verifier": provenance.verifier_version()}
    io.write_json(path, new)
    return out


def run_config(out: Path, overrides: dict[str, Any] | None = None) -> Config:
    """The config a run was made with (OUT/config.json, its `versions` left out), with `overrides`
    ({"run.rounds": 3, ...}; None values ignored) applied and validated: how `selfplay run --out
    OUT` without --config resumes a run, and how `selfplay eval --config OUT/config.json` repeats
    its evaluation."""
    path = Path(out) / "config.json" if Path(out).is_dir() else Path(out)
    try:
        data = io.read_json(path)
    except (OSError, ValueError) as e:
        raise ValueError(f"config: {path}: not a readable config.json ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"config: {path}: not a JSON object")
    data.pop(VERSIONS, None)
    return apply_overrides(from_dict(data), overrides).validate()


def eval_enabled(cfg: dict[str, Any]) -> bool:
    e = cfg.get("eval") or {}
    return bool(e.get("enabled", True)) and bool(e.get("heldout_problems", 0) or e.get("files"))


def round_complete(out: Path, k: int, cfg: dict[str, Any]) -> bool:
    """Round K finished in the loop: its outputs exist and stats.json carries the loop's last key
    (`warnings`, written after training, evaluation and the contamination check)."""
    d = out / f"round_{k}"
    stats = io.read_json_or_none(d / "stats.json") or {}
    need = ["problems.jsonl", "pairs.jsonl"]
    train_on = bool((cfg.get("train") or {}).get("enabled", True))
    if train_on:
        need.append("train_stats.json")
    if eval_enabled(cfg):
        need.append("contamination.json")
        if train_on:
            need.append("eval.json")
    return "warnings" in stats and all((d / n).exists() for n in need)


def pair_files(out: Path, round_idx: int) -> list[Path]:
    """pairs.jsonl of rounds 0..K: what round K's training set (and its provenance) is made from."""
    return [out / f"round_{k}" / "pairs.jsonl" for k in range(round_idx + 1)]
