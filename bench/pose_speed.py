"""Seconds and kept problems of the posing stage, under the old settings and today's, side by side
in one run (issue 26).

    .venv-vllm/bin/python bench/pose_speed.py [--attempts 128] [--repeat 1]

Each variant gets its own vLLM engine (the KV block size is an engine setting) serving the
default job's model, and poses --attempts attempts from the default job's round-0 seed problems
with the default job's prompt kinds and witness, target 0 (every attempt made), the engine
already up. Variants:

  before  fresh seed shots per attempt (pose.shot_sets = 0), batch 64, 160 new tokens, vLLM's
          CPU KV block (128)
  now     the default job's [pose] and [vllm] settings
  --variant NAME:key=value,...  more variants: `now` with these settings changed (keys: shot_sets,
          batch, max_new_tokens, block_size), e.g. --variant sets8:shot_sets=8

Last line: `speedup=before_seconds/now_seconds kept_before=... kept_now=...` (sums over repeats),
after a line per variant with its seconds and kept count.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from selfplay.backends.base import SamplingParams  # noqa: E402
from selfplay.backends.models import resolve_model  # noqa: E402
from selfplay.backends.resources import build_sandbox  # noqa: E402
from selfplay.config import load_config  # noqa: E402
from selfplay.pose.posing import pose_problems  # noqa: E402

BEFORE = {"shot_sets": 0, "batch": 64, "max_new_tokens": 160, "block_size": 128}


def run_variant(name: str, cfg, seeds, settings: dict, args) -> tuple[float, int]:
    from selfplay.backends.vllm_backend import VLLMBackend

    backend = VLLMBackend(resolve_model(cfg.model.name), seed=cfg.run.seed, block_size=settings["block_size"])
    sandbox = build_sandbox(cfg)
    params = SamplingParams(n=1, temperature=cfg.pose.temperature, top_p=cfg.pose.top_p,
                            max_new_tokens=settings["max_new_tokens"])
    seconds, kept_n = 0.0, 0
    try:
        for r in range(args.repeat):
            t0 = time.perf_counter()
            kept, st = pose_problems(backend, sandbox, seeds, attempts=args.attempts, shots=cfg.pose.shots,
                                     params=params, seed=cfg.run.seed + r, round_idx=0,
                                     kinds=tuple(cfg.pose.prompts), witness=cfg.pose.witness,
                                     witness_temperature=cfg.pose.witness_temperature, batch=settings["batch"],
                                     shot_sets=settings["shot_sets"], existing=[p.question for p in seeds])
            dt = time.perf_counter() - t0
            seconds += dt
            kept_n += len(kept)
            print(f"{name} (repeat {r}): {dt:.1f} s, kept {len(kept)}/{st['attempted']}, "
                  f"golds_disagree {st['golds_disagree']}, settings {settings}", flush=True)
    finally:
        backend.close()
        sandbox.close()
    return seconds, kept_n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--attempts", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=1, help="runs per variant, with seeds 0..repeat-1")
    ap.add_argument("--variant", action="append", default=[], help="NAME:key=value,... (see above)")
    args = ap.parse_args()
    cfg = load_config(ROOT / "configs" / "default.toml", {"model.backend": "vllm"})
    from selfplay.backends.vllm_backend import CPU_BLOCK_SIZE
    from selfplay.pair.contamination import HeldoutGate, HeldoutMatcher
    from selfplay.run.round import seed_problems

    seeds = seed_problems(cfg, 0, HeldoutGate(HeldoutMatcher(set(), cfg.filters.near_threshold)))
    now = {"shot_sets": cfg.pose.shot_sets, "batch": cfg.pose.batch, "max_new_tokens": cfg.pose.max_new_tokens,
           "block_size": cfg.vllm.block_size or CPU_BLOCK_SIZE}
    variants = {"before": BEFORE, "now": now}
    for spec in args.variant:
        name, _, sets = spec.partition(":")
        changed = dict(now)
        for kv in filter(None, sets.split(",")):
            key, _, value = kv.partition("=")
            if key not in now:
                raise SystemExit(f"--variant {spec}: unknown key {key!r}; choose from {sorted(now)}")
            changed[key] = int(value)
        variants[name] = changed
    results = {name: run_variant(name, cfg, seeds, settings, args) for name, settings in variants.items()}
    for name, (secs, kept) in results.items():
        print(f"{name}: {secs:.1f} s, kept {kept}/{args.attempts * args.repeat}, {variants[name]}")
    (before_s, before_k), (now_s, now_k) = results["before"], results["now"]
    print(f"speedup={before_s / now_s:.3f} before_seconds={before_s:.1f} now_seconds={now_s:.1f} "
          f"kept_before={before_k} kept_now={now_k} attempts={args.attempts * args.repeat}")
    return 0


if __name__ == "__main__":  # the vLLM engine core is a spawned process: this guard is required
    raise SystemExit(main())
