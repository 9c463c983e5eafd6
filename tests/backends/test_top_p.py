"""Top-p without sorting the vocabulary (selfplay/backends/top_p.py), against others' top-p:
transformers' TopPLogitsWarper here, vLLM's own sorting filter and the real engine's logits in
the vllm venv (tests/backends/test_vllm_backend.py)."""
import pytest
import torch

from selfplay.backends import top_p as tp

VOCAB = 4096


def hf_top_p(logits: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """transformers' nucleus filter, row by row (its top_p is one number per call)."""
    from transformers import TopPLogitsWarper

    rows = []
    for row, pv in zip(logits, p.tolist()):
        if pv >= 1.0:
            rows.append(row.clone())  # the warper refuses top_p = 1.0 as a no-op setting; it filters nothing
            continue
        rows.append(TopPLogitsWarper(top_p=pv)(None, row.clone().unsqueeze(0))[0])
    return torch.stack(rows)


def sort_filter(logits, k, p):
    """A full-sort filter standing in for vLLM's (the fallback path); vLLM's own is tested in its venv."""
    assert k is None
    return hf_top_p(logits, p)


def _logits(rows: int, seed: int) -> torch.Tensor:
    """Rows from flat to peaked (continuous values: no ties), like a model's at temperatures 0.3-3."""
    g = torch.Generator().manual_seed(seed)
    scale = torch.linspace(0.5, 12.0, rows).unsqueeze(1)
    return torch.randn(rows, VOCAB, generator=g) * scale


@pytest.mark.parametrize("p_value", [0.5, 0.9, 0.95, 0.99])
def test_same_tokens_as_transformers(p_value):
    logits = _logits(64, seed=int(p_value * 100))
    p = torch.full((64,), p_value)
    p[::7] = 1.0  # greedy/unfiltered rows inside a sampled batch stay as they are
    before = dict(tp.counts)
    ours = tp.top_p_filter(logits.clone(), p, sort_filter, first_k=64)
    ref = hf_top_p(logits, p)
    assert torch.equal(torch.isinf(ours), torch.isinf(ref))
    kept = ~torch.isinf(ours)
    assert torch.equal(ours[kept], logits[kept])  # kept tokens keep their logits
    # both paths ran: peaked rows settled by their top 64, flat rows by the full sort
    sorted_rows = tp.counts["sorted_rows"] - before["sorted_rows"]
    assert 0 < sorted_rows < tp.counts["rows"] - before["rows"]
    assert tp.counts["rows"] - before["rows"] == int((p < 1).sum())


def test_in_place_and_no_filter_rows():
    logits = _logits(8, seed=3)
    p = torch.ones(8)
    out = tp.top_p_filter(logits, p, sort_filter)
    assert out is logits and not torch.isinf(out).any()
    p[2] = 0.3
    out = tp.top_p_filter(logits, p, sort_filter)
    assert out is logits and torch.isinf(out[2]).any() and not torch.isinf(out[[0, 1, 3]]).any()


def test_most_likely_token_always_stays():
    logits = torch.zeros(3, VOCAB)
    logits[:, 5] = 20.0  # one token with ~all the mass
    p = torch.tensor([1e-6, 0.5, 0.95])
    out = tp.top_p_filter(logits.clone(), p, sort_filter, first_k=16)
    assert (~torch.isinf(out)).sum(1).tolist() == [1, 1, 1] and not torch.isinf(out[:, 5]).any()


@pytest.mark.parametrize("p_value", [0.5, 0.95])
def test_our_sort_filter_keeps_transformers_tokens(p_value):
    logits = _logits(32, seed=7)
    p = torch.full((32,), p_value)
    p[::5] = 1.0
    ours = tp.sort_filter(logits.clone(), None, p)
    assert torch.equal(torch.isinf(ours), torch.isinf(hf_top_p(logits, p)))
    with pytest.raises(ValueError, match="top-p only"):
        tp.sort_filter(logits, torch.tensor([3]), p)


def test_hf_backend_draws_the_same_tokens_either_way():
    """The hf backend's sampler: the nucleus from each row's top tokens (its default) draws, seed for
    seed, what the full sort draws: the same tokens kept with the same logits give the same
    probabilities to torch.multinomial."""
    from selfplay.backends.base import SamplingParams
    from selfplay.backends.hf import HFBackend

    logits = _logits(48, seed=11)
    params = SamplingParams(temperature=0.8, top_p=0.95, max_new_tokens=1)
    draws = {}
    for method in ("topk", "sort"):
        backend = object.__new__(HFBackend)  # the sampler only: no model to load
        backend.top_p = method
        gens = [torch.Generator().manual_seed(100 + r) for r in range(48)]
        draws[method] = backend._sample(logits.clone(), gens, params)
    assert torch.equal(draws["topk"], draws["sort"])
    kept = ~torch.isinf(tp.sort_filter(logits / 0.8, None, torch.full((48,), 0.95)))
    assert bool(kept.gather(1, draws["topk"][:, None]).all())  # every draw from inside its nucleus


def test_hf_backend_refuses_an_unknown_top_p_before_loading_a_model():
    from selfplay.backends.hf import HFBackend

    with pytest.raises(ValueError, match="top_p: 'topk' or 'sort', got 'bogus'"):
        HFBackend("no-such-model-dir", top_p="bogus")  # a model load would fail with another error
