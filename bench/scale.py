"""How the solve + verify stage scales with Ray workers: samples/s of the local executor against
the Ray executor with 1 and 2 workers, measured in one run on the same problems and settings.

Each measurement is one `selfplay run` (pose, training and evaluation off) in its own process and
OUT; the rate is the round's stats.json timing (samples / solve-stage seconds, the Ray workers'
start-up and model load included, as a user would see it). The Ray runs join a local cluster this
script starts: a head node and a second node on this machine, `--cpus-per-node` CPUs each, so two
workers are spread over two Ray nodes as on a cluster. Every Ray worker gets `--cpus-per-node`
CPUs (its torch threads); the local run uses all of the machine's cores.

    .venv/bin/python bench/scale.py --problems 16 --samples 4 --max-new-tokens 64
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CONFIG = """
[run]
seed = {seed}
out = "{out}"
[model]
backend = "{backend}"
batch_size = {batch_size}
[seeds]
problems = {problems}
[pose]
enabled = false
[solve]
samples = {samples}
max_new_tokens = {max_new_tokens}
batch_problems = {batch_problems}
[filters]
enabled = false
[train]
enabled = false
[eval]
enabled = false
"""


def run_once(tmp: Path, name: str, args: argparse.Namespace, extra: list[str]) -> dict:
    out = tmp / name
    cfg = tmp / f"{name}.toml"
    cfg.write_text(CONFIG.format(out=out, **vars(args)))
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "selfplay", "run", "--config", str(cfg), *extra], cwd=ROOT,
                       capture_output=True, text=True, env={k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"})
    if r.returncode != 0:
        sys.exit(f"bench/scale.py: {name} failed:\n{r.stderr[-3000:]}")
    timing = json.loads((out / "round_0" / "stats.json").read_text())["timing"]
    return {"run": name, "samples": timing["solved_samples"], "solve_seconds": timing["solve_seconds"],
            "samples_per_s": timing["samples_per_s"], "tokens_per_s": timing["tokens_per_s"],
            "process_seconds": round(time.perf_counter() - t0, 1),
            "rollouts": (out / "round_0" / "rollouts.jsonl").read_bytes().count(b"\n")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--problems", type=int, default=16)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16, help="hf rows per forward pass")
    ap.add_argument("--batch-problems", type=int, default=2, help="problems per generation batch = per Ray shard")
    ap.add_argument("--backend", default="hf")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cpus-per-node", type=int, default=1)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": args.cpus_per_node,
                                                            "object_store_memory": 100 << 20})
    cluster.add_node(num_cpus=args.cpus_per_node, object_store_memory=100 << 20)
    cluster.wait_for_nodes()
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="selfplay-scale-") as d:
            tmp = Path(d)
            rows.append(run_once(tmp, "local", args, []))
            for w in (1, 2):
                rows.append(run_once(tmp, f"ray-{w}", args, ["--executor", "ray", "--ray-address", cluster.address,
                                                             "--workers", str(w)]))
    finally:
        cluster.shutdown()
    base = rows[0]["samples_per_s"]
    print(f"solve + verify, {args.backend} backend: {args.problems} problems x {args.samples} samples, "
          f"max_new_tokens {args.max_new_tokens}, {os.cpu_count()} cores; Ray: 2 nodes x {args.cpus_per_node} CPU")
    print(f"{'executor':<10} {'samples':>7} {'solve s':>8} {'samples/s':>10} {'tokens/s':>9} {'vs local':>8}")
    for r in rows:
        print(f"{r['run']:<10} {r['samples']:>7} {r['solve_seconds']:>8.1f} {r['samples_per_s']:>10.3f} "
              f"{r['tokens_per_s']:>9.1f} {r['samples_per_s'] / base:>7.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
