"""DPO training step speed: a baseline against the chosen setting, same pairs, one run.

Every variant trains one epoch on the same pairs (a seeded sample of --steps x 8 from --pairs),
each in its own process (bench/train_step_worker.py: no variant runs in a heap another one left),
with the default job's settings (8 pairs per optimizer step: batch 8 x grad_accum 1, max_length
512, DPO + NLL, warmup_ratio 0.1, cosine) on the embedded SmolLM2-135M-Instruct:

  base:   --base filed (default): the training step as it was when issue 26 was filed: the code of
          commit e44b9ef (a `git archive` of it; needs this git checkout) with that commit's
          default job's [train] settings: each pair as TRL's two rows, prompt + chosen and prompt +
          rejected, batch 2 x grad_accum 4, TRL's reference forward on every step
          --base two_row: the same settings in this code (shared_prompt, group_by_prompt and
          engine_ref false): what the settings alone are worth, with this code's head and heap
          --base fp32: precision fp32, no length grouping, TRL's LM head over every position (the
          settings before issue 15)
  chosen: the defaults (precision auto: bf16 on a CPU with AVX-512 BF16 / AMX or a CUDA GPU
          with bf16, group_by_length, completion_only_head, shared_prompt: the pairs of one prompt
          that a step holds share one prompt block (group_by_prompt is off: pairs are shuffled one
          by one; "group:group_by_prompt=true" measures it); attention_pieces: a packed row's
          attention in pieces ("no_pieces:attention_pieces=false" measures the whole row under one
          mask); engine_ref: the reference log-probs
          the sampling engine stored with the pairs where they apply, the rest by a forward
          before the first step, which is counted in the step time)
  --variant NAME:k=v,k=v  more settings measured in the same run: [train] fields (selfplay.config.
          TrainSection) or train_dpo's keyword settings (e.g.
          "lora:use_lora=true,learning_rate=1e-4" or "no_engine:engine_ref=false")

A base or variant with group_by_prompt false orders its steps' pairs differently, so its per-step
curves are not those of the chosen setting (tests/train/test_shared_prompt.py and
test_reflogps.py check the curves against TRL's plain DPO on the same steps).

Printed per variant: step seconds (mean over the steps after the first, plus the precomputed
reference forwards' share; the first is shown apart), where the reference log-probs came from,
pair-tokens/s (the pairs' own tokens, prompt + chosen + rejected with the prompt counted once,
per second: the same work for every variant), processed tokens/s (policy tokens through the
model: TRL's num_tokens, prompt counted twice, for two rows; the shared rows' tokens), achieved
FLOP/s and its share of the matmul peak measured here (a 2048^2 matmul in fp32 and bf16 on the
same threads). FLOPs count 6 x parameters per policy token (forward + backward) and 2 x
parameters per reference-forward token (attention scores not counted). Then per-step loss,
reward margin and accuracy of every variant side by side.

Pairs: --pairs FILE (pair JSONL as the loop writes it, e.g. runs/X/round_1/train_pairs.jsonl:
its own round's pairs carry the engine's reference log-probs); default bench/dpo_pairs.jsonl,
96 pairs from a default-job round 1 (SmolLM2-135M answers on procedural problems; written
before the engine's log-probs were stored: every reference is a forward).

  .venv/bin/python bench/train_step.py                 # 3 steps per variant, ~3 min on 2 cores
  .venv/bin/python bench/train_step.py --steps 12 --pairs runs/X/round_1/train_pairs.jsonl \
      --variant two_row:shared_prompt=false,group_by_prompt=false,engine_ref=false,batch_size=2,grad_accum=4

The last line is `speedup=X pair_tokens_s_base=... pair_tokens_s=... step_s_base=... step_s=...
flops_vs_peak=...` (speedup = chosen pair-tokens/s over the base's; flops_vs_peak = the chosen
variant's achieved FLOP/s over the peak of its precision).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FIXTURE = ROOT / "bench" / "dpo_pairs.jsonl"
WORKER = ROOT / "bench" / "train_step_worker.py"
FILED_REV = "e44b9ef"  # main when issue 26 was filed: its default job's training step is the baseline
# the filed default job's [train] (configs/default.toml at e44b9ef) in that commit's TrainConfig
FILED_SECTION = {"per_device_batch_size": 2, "grad_accum": 4, "max_length": 512, "nll_weight": 1.0, "seed": 0,
                 "epochs": 1, "max_steps": -1}
BASES = {
    "filed": None,  # FILED_REV's code and default settings, from a git archive of that commit
    "two_row": {"shared_prompt": False, "group_by_prompt": False, "engine_ref": False, "batch_size": 2,
                "grad_accum": 4},
    "fp32": {"precision": "fp32", "group_by_length": False, "completion_only_head": False, "shared_prompt": False,
             "group_by_prompt": False, "engine_ref": False, "batch_size": 2, "grad_accum": 4},
}


def matmul_peak(dtype, n: int = 2048, seconds: float = 1.5) -> float:
    """FLOP/s of an n x n matmul in `dtype` on torch's current threads (best of timed repeats)."""
    import torch

    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    for _ in range(2):
        a @ b
    best = float("inf")
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best


def _parse_value(text: str):
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "none":
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_variant(spec: str) -> tuple[str, dict]:
    """"name:k=v,k=v" -> (name, {k: v}); values: ints, floats, true/false, none, else strings."""
    name, _, body = spec.partition(":")
    if not name or not body:
        raise argparse.ArgumentTypeError(f"--variant wants NAME:key=value[,key=value], got {spec!r}")
    settings = {}
    for item in body.split(","):
        key, eq, value = item.partition("=")
        if not eq:
            raise argparse.ArgumentTypeError(f"--variant {spec!r}: {item!r} is not key=value")
        settings[key.strip()] = _parse_value(value.strip())
    return name, settings


def bench_pairs(src: Path, n: int, out: Path, tokenizer, max_length: int) -> tuple[int, int]:
    """Write n of src's usable pairs (a seeded sample; all of them when fewer) to `out`: every
    variant trains one epoch on the same pairs. Returns (pairs, their pair tokens)."""
    from selfplay.core import io
    from selfplay.train.data import filter_pairs, load_pairs, pair_tokens

    kept, _ = filter_pairs(load_pairs([src]), tokenizer, max_length)
    if len(kept) > n:
        kept = random.Random(0).sample(kept, n)
    io.write_jsonl(out, kept)
    return len(kept), sum(pair_tokens(p, tokenizer)[1] for p in kept)


def run_variant(name: str, api: str, tree: Path, section: dict, options: dict, pairs: Path, model: str,
                threads: int | None, tmp: Path) -> dict:
    """One variant's train_dpo in a fresh process (no variant runs after another in the same heap),
    importing selfplay from `tree`. Returns its stats."""
    spec = {"api": api, "tree": str(tree), "pairs": str(pairs), "model": model, "out": str(tmp / name / "model"),
            "stats": str(tmp / f"{name}.stats.json"), "section": section, "options": options, "threads": threads}
    spec_path = tmp / f"{name}.spec.json"
    spec_path.write_text(json.dumps(spec))
    # the libraries' progress bars and advisories off: the variant lines are the output
    env = {**os.environ, "PYTHONPATH": str(tree), "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
           "TRANSFORMERS_VERBOSITY": "error", "PYTHONWARNINGS": "ignore"}
    rc = subprocess.run([sys.executable, str(WORKER), str(spec_path)], env=env).returncode
    if rc != 0:
        raise SystemExit(f"train_step: variant {name} failed (exit {rc}); its output is above")
    return json.loads(Path(spec["stats"]).read_text())


def filed_tree(tmp: Path) -> Path:
    """FILED_REV's files (git archive of this checkout) under tmp/filed."""
    tree = tmp / "filed"
    tree.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", FILED_REV], capture_output=True)
    if archive.returncode != 0:
        raise SystemExit(f"train_step: --base filed needs git and commit {FILED_REV} in {ROOT}: "
                         f"{archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return tree


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=Path, default=FIXTURE, help="pair JSONL (default: bench/dpo_pairs.jsonl)")
    ap.add_argument("--steps", type=int, default=3,
                    help="optimizer steps per variant: one epoch on steps x 8 of the pairs (default 3)")
    ap.add_argument("--batch-size", type=int, default=8, help="pairs per micro-batch (default job: 8)")
    ap.add_argument("--grad-accum", type=int, default=1, help="micro-batches per step (default job: 1)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--model", default="default")
    ap.add_argument("--chosen", type=parse_variant, default=None,
                    help="NAME:k=v,... settings of the chosen variant (default: the defaults)")
    ap.add_argument("--variant", type=parse_variant, action="append", default=[],
                    help="NAME:k=v,... an extra variant (repeatable)")
    ap.add_argument("--base", choices=sorted(BASES), default="filed",
                    help=f"the baseline: filed ({FILED_REV}'s code and default job, default), two_row (this "
                         "code with those settings) or fp32 (before issue 15)")
    ap.add_argument("--no-base", action="store_true", help="skip the baseline (no speedup line)")
    args = ap.parse_args(argv)

    import torch

    from selfplay.config import TrainSection

    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    peak = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    print(f"matmul 2048^2 on {threads} threads: fp32 {peak['fp32'] / 1e9:.0f} GFLOP/s, "
          f"bf16 {peak['bf16'] / 1e9:.0f} GFLOP/s")

    common = TrainSection(batch_size=args.batch_size, grad_accum=args.grad_accum, epochs=1, max_steps=-1,
                          max_length=512, nll_weight=1.0)
    section_fields = {f.name for f in dataclasses.fields(TrainSection)}
    variants: list[tuple[str, dict | None]] = []
    if not args.no_base:
        variants.append(("base", BASES[args.base]))
    variants.append(args.chosen or ("chosen", {}))
    variants += args.variant

    from transformers import AutoModelForCausalLM

    from selfplay.backends.models import load_tokenizer, resolve_model

    model_path = resolve_model(args.model)
    n_params = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(model_path).parameters())
    results = {}
    tmp = Path(tempfile.mkdtemp(prefix="bench_train_"))
    try:
        pairs = tmp / "pairs.jsonl"
        n_pairs, n_pair_tokens = bench_pairs(args.pairs, args.steps * args.batch_size * args.grad_accum, pairs,
                                             load_tokenizer(model_path), common.max_length)
        print(f"model {args.model}: {n_params / 1e6:.1f} M parameters; {n_pairs} pairs of {args.pairs} "
              f"({n_pair_tokens} pair tokens), one epoch per variant in its own process; chosen batch "
              f"{args.batch_size} x grad_accum {args.grad_accum}", flush=True)
        for name, settings in variants:
            if settings is None:  # the filed baseline: that commit's code and default job
                stats = run_variant(name, "filed", filed_tree(tmp), FILED_SECTION, {}, pairs, args.model,
                                    args.threads, tmp)
                stats.setdefault("ref_logps", {"engine": 0, "forward": stats["n_train"], "seconds": 0.0})
                stats.setdefault("group_by_prompt", False)  # it shuffled pairs, as group_by_prompt false does
                batch = f"{FILED_SECTION['per_device_batch_size']} x {FILED_SECTION['grad_accum']}"
            else:
                # [train] fields go into the section, the rest are train_dpo's keyword settings
                cfg = dataclasses.replace(common, **{k: v for k, v in settings.items() if k in section_fields})
                options = {k: v for k, v in settings.items() if k not in section_fields}
                stats = run_variant(name, "current", ROOT, dataclasses.asdict(cfg), options, pairs, args.model,
                                    args.threads, tmp)
                batch = f"{cfg.batch_size} x {cfg.grad_accum}"
            if stats["n_train"] != n_pairs:
                raise SystemExit(f"train_step: variant {name} kept {stats['n_train']} of the {n_pairs} pairs: "
                                 "the variants would not do the same work")
            steps = stats["step_seconds"]
            warm = steps[1:] if len(steps) > 1 else steps
            # the reference forwards run before the steps when they are precomputed (engine_ref)
            step_s = sum(warm) / len(warm) + stats["ref_logps"]["seconds"] / len(steps)
            pair_tokens_s = n_pair_tokens / len(steps) / step_s
            sp = stats.get("shared_prompt")
            # tokens through the model, policy (with gradients) and reference (without): the shared
            # rows' when every forward shared its prompt, else the two rows' (TRL's count twice
            # when TRL's own head ran or the code counted no other); reference forwards skipped for
            # engine log-probs count none
            if stats["lm_head"] != "completion" or sp is None:
                policy = reference = stats["tokens"]
            else:
                processed = sp["tokens"] if sp["shared"] and not sp["two_row"] else sp["two_row_tokens"]
                reference = sp["no_grad_tokens"]
                policy = processed - reference
            tokens_per_step = policy / len(steps)
            flops = (6 * policy + 2 * reference) * n_params / len(steps) / step_s
            prec = stats["precision"]
            results[name] = {"stats": stats, "step_s": step_s, "flops": flops, "vs_peak": flops / peak[prec],
                             "pair_tokens_s": pair_tokens_s}
            ref = stats["ref_logps"]
            shared = f"{sp['shared']}/{sp['shared'] + sp['two_row']}" if sp else "0"
            print(f"{name:>10}: {'code ' + FILED_REV if settings is None else 'this code'}, precision {prec}, "
                  f"head {stats['lm_head']}, group_by_length {stats['group_by_length']}, shared prompt {shared} "
                  f"forwards, reference log-probs engine {ref['engine']} / forward {ref['forward']}, batch {batch}: "
                  f"{len(steps)} steps, step {step_s:.2f} s (first {steps[0]:.2f} s), "
                  f"{pair_tokens_s:.0f} pair-tokens/s, {tokens_per_step / step_s:.0f} processed tokens/s, "
                  f"{flops / 1e9:.1f} GFLOP/s = {100 * flops / peak[prec]:.1f}% of {prec} peak, "
                  f"peak RSS {stats['peak_rss_mb']:.0f} MB", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    keys = ("loss", "rewards/margins", "rewards/accuracies", "logps/chosen")
    print("per-step " + ", ".join(keys) + " (the same steps where group_by_prompt is the same)")
    for key in keys:
        print(f"  {key}:")
        for name, r in results.items():
            vals = [h.get(key) for h in r["stats"]["history"]]
            print(f"    {name:>10}: " + " ".join("nan" if v is None else f"{v:8.4f}" for v in vals))
    if "base" in results:
        base_hist = results["base"]["stats"]["history"]
        for name, r in results.items():
            if name == "base" or r["stats"].get("group_by_prompt") != results["base"]["stats"].get("group_by_prompt"):
                continue  # other steps: no per-step difference
            for key in ("loss", "rewards/margins"):
                d = max(abs(a[key] - b[key]) for a, b in zip(base_hist, r["stats"]["history"]))
                print(f"  max |{name} - base| {key}: {d:.4f}")
        for name, r in results.items():
            if name != "base":
                ratio = r["pair_tokens_s"] / results["base"]["pair_tokens_s"]
                print(f"  {name}: {ratio:.2f}x the base's pair-tokens/s")
        chosen = variants[1][0]
        b, c = results["base"], results[chosen]
        print(f"speedup={c['pair_tokens_s'] / b['pair_tokens_s']:.2f} pair_tokens_s_base={b['pair_tokens_s']:.0f} "
              f"pair_tokens_s={c['pair_tokens_s']:.0f} step_s_base={b['step_s']:.2f} step_s={c['step_s']:.2f} "
              f"flops_vs_peak={c['vs_peak']:.3f}")
    else:
        print("no baseline (--no-base): no speedup line")
    return 0


if __name__ == "__main__":
    sys.exit(main())
