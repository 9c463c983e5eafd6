"""Program of thought against reasoning in words, on the same problems, in one run.

    python bench/pot.py [--backend vllm|hf] [--problems 32] [--samples 8] [--out runs/bench-pot]

Runs round 0 three times with the same seed and problems (posing and training off): solve.mode
cot, pot and mixed. Prints per run the % correct of each kind of path, the generation rate
(samples/s), and the sandbox's rate on the run's programs (programs / seconds spent labelling,
cot checks included, so a lower bound on its capacity) with the ratio of the two: above 1 the
engine bounds the round, below 1 the sandbox does.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from selfplay.config import load_config  # noqa: E402
from selfplay.run.loop import run_loop  # noqa: E402


def one(mode: str, args: argparse.Namespace) -> dict:
    out = Path(args.out) / mode
    shutil.rmtree(out, ignore_errors=True)
    cfg = load_config(None, {"run.out": str(out), "run.seed": args.seed, "run.rounds": 1,
                             "model.backend": args.backend, "seeds.problems": args.problems,
                             "pose.enabled": False, "solve.samples": args.samples, "solve.mode": mode,
                             "train.enabled": False, "eval.enabled": False, "filters.perplexity": False})
    [stats] = run_loop(cfg)
    return stats


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", default="auto", help="auto | vllm | hf")
    ap.add_argument("--problems", type=int, default=32)
    ap.add_argument("--samples", type=int, default=8, help="paths per problem and kind")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/bench-pot")
    args = ap.parse_args()
    rows = []
    for mode in ("cot", "pot", "mixed"):
        s = one(mode, args)
        t = s["timing"]
        per_mode = "  ".join(f"{m} {v['pct_correct']:.1f}% ({v['correct']}/{v['samples']})"
                             for m, v in s["by_mode"].items())
        line = (f"mode={mode:<5} {per_mode}  pairs={s['pairs']}  samples/s={t['samples_per_s']:.2f}")
        if t.get("programs_run"):
            exec_rate = t["programs_run"] / max(t["label_seconds"], 1e-9)
            line += (f"  sandbox programs/s={exec_rate:.1f} (lower bound)"
                     f"  capacity/generation={exec_rate / t['samples_per_s']:.1f}x")
        rows.append(line)
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
