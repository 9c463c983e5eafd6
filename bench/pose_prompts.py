"""Kept rate of each posing prompt on one model, in one run.

    python bench/pose_prompts.py [--attempts 64] [--kinds fewshot,mutation,program_first,composition]
                                 [--model default] [--backend auto] [--level 0]

For each prompt kind (selfplay/prompts.py POSE_KINDS) the same number of attempts, from the default
job's round-0 seed problems, through the posing checks and the second-program witness. Prints per
kind: kept / attempted, the witness's agreement (agree / problems that reached it) and the top
rejection reasons; then one line per kind `kind=K level=L kept_rate=... agree_rate=...
mean_steps=... word=W` (arithmetic steps of the kept problems' programs: --level shows the
curriculum; W: kept problems that are word problems, selfplay_seeds.is_word_problem). The
solver-majority witness that a word problem also needs in a run comes after solving and is not
part of this count.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from selfplay.backends.base import SamplingParams  # noqa: E402
from selfplay.backends.models import resolve_model  # noqa: E402
from selfplay.backends.resources import build_backend, build_sandbox  # noqa: E402
from selfplay.config import load_config  # noqa: E402
from selfplay.pose.posing import pose_problems  # noqa: E402
from selfplay_seeds import is_word_problem  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--attempts", type=int, default=64, help="attempts per kind")
    ap.add_argument("--kinds", default="fewshot,mutation,program_first,composition")
    ap.add_argument("--model", default="default")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--level", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--witness-temperature", type=float, default=0.7)
    ap.add_argument("--show", type=int, default=0, help="print this many kept problems per kind")
    args = ap.parse_args()
    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "default.toml",
                      {"model.backend": args.backend, "run.seed": args.seed})
    from selfplay.pair.contamination import HeldoutGate, HeldoutMatcher
    from selfplay.run.round import seed_problems

    seeds = seed_problems(cfg, 0, HeldoutGate(HeldoutMatcher(set(), cfg.filters.near_threshold)))
    backend = build_backend(cfg, resolve_model(args.model))
    sandbox = build_sandbox(cfg)
    params = SamplingParams(n=1, temperature=cfg.pose.temperature, top_p=cfg.pose.top_p,
                            max_new_tokens=cfg.pose.max_new_tokens)
    lines = []
    try:
        for kind in args.kinds.split(","):
            t0 = time.perf_counter()
            kept, st = pose_problems(backend, sandbox, seeds, attempts=args.attempts, shots=cfg.pose.shots,
                                     params=params, seed=args.seed, round_idx=0, kinds=(kind,),
                                     batch=cfg.pose.batch, shot_sets=cfg.pose.shot_sets,
                                     level=args.level, witness="auto",
                                     witness_temperature=args.witness_temperature,
                                     existing=[p.question for p in seeds])
            secs = time.perf_counter() - t0
            reached = len(kept) + st["golds_disagree"] + sum(v for k, v in st["rejected"].items()
                                                             if k.startswith("witness_"))
            top = sorted(st["rejected"].items(), key=lambda kv: -kv[1])[:5]
            print(f"{kind}: kept {len(kept)}/{st['attempted']}, witness agreed {len(kept)}/{reached}, "
                  f"{secs:.1f} s; rejected {dict(top)}", flush=True)
            for p in kept[:args.show]:
                print(f"    {p.question!r} -> {p.answer}  steps={p.meta['steps']}  program={p.program!r}")
            steps = sum(p.meta["steps"] for p in kept) / len(kept) if kept else 0.0
            lines.append(f"kind={kind} level={args.level} kept_rate={len(kept) / max(st['attempted'], 1):.3f} "
                         f"agree_rate={len(kept) / max(reached, 1):.3f} checks_passed={reached} "
                         f"mean_steps={steps:.2f} word={sum(is_word_problem(p.question) for p in kept)}")
    finally:
        backend.close()
        sandbox.close()
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
