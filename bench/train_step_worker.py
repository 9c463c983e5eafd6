"""One variant of bench/train_step.py in its own process: `python bench/train_step_worker.py SPEC.json`.

The selfplay package is whichever the process imports (bench/train_step.py sets PYTHONPATH: this
checkout, or a `git archive` of an earlier commit for the baseline as filed). SPEC holds:
  api:      "current" (selfplay.train.dpo.train_dpo with a selfplay.config.TrainSection and keyword
            settings) or "filed" (e44b9ef's selfplay.train.train_dpo with its TrainConfig)
  tree:     the checkout selfplay must be imported from
  pairs, model, out, stats: the pair JSONL, the model, the model's output dir, the stats JSON
  section:  the section's fields; options: train_dpo's keyword settings (current only)
  threads:  torch threads (null: torch's)
train_dpo (either API) writes its stats to `stats` as JSON.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    import torch

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    out, stats = Path(spec["out"]), Path(spec["stats"])  # train_dpo writes its stats there, in both APIs
    import selfplay

    if not Path(selfplay.__file__).resolve().is_relative_to(Path(spec["tree"]).resolve()):
        raise SystemExit(f"{spec_path}: tree: selfplay was imported from {selfplay.__file__}, not {spec['tree']}")
    if spec["api"] == "current":
        from selfplay.config import TrainSection
        from selfplay.train.dpo import train_dpo

        train_dpo([Path(spec["pairs"])], spec["model"], out, TrainSection(**spec["section"]), seed=0,
                  stats_path=stats, **spec["options"])
    elif spec["api"] == "filed":
        from selfplay.train import TrainConfig, train_dpo

        if spec["options"]:
            raise SystemExit(f"{spec_path}: options: the filed API takes none, got {sorted(spec['options'])}")
        train_dpo([Path(spec["pairs"])], spec["model"], out, TrainConfig(**spec["section"]).validate(),
                  stats_path=stats)
    else:
        raise SystemExit(f"{spec_path}: api: must be current or filed, got {spec['api']!r}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: train_step_worker.py SPEC.json")
    sys.exit(main(sys.argv[1]))
