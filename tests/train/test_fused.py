"""selfplay/train/fused.py: q/k/v and gate/up in one stacked product give the separate products'
outputs and gradients, leave the parameters and the saved state as they are, and fuse nothing
they cannot (LoRA layers, mixed biases, other inputs)."""
import copy

import pytest
import torch

from selfplay.train.fused import fuse_projections


def _tiny_llama(seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=97, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(cfg).float()


def _loss_and_grads(model, ids, autocast: bool):
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        logits = model(input_ids=ids).logits
    loss = logits.float().log_softmax(-1).gather(-1, ids[..., None]).mean()
    loss.backward()
    return logits.detach().float(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("autocast", [False, True])
def test_fused_model_gives_the_same_outputs_and_gradients(autocast):
    model = _tiny_llama()
    fused = copy.deepcopy(model)
    assert fuse_projections(fused) == 2 * 2  # q/k/v and gate/up in each of 2 layers
    assert fused.state_dict().keys() == model.state_dict().keys()
    ids = torch.randint(0, 97, (3, 17))
    a_out, a_grads = _loss_and_grads(model, ids, autocast)
    b_out, b_grads = _loss_and_grads(fused, ids, autocast)
    tol = 3e-2 if autocast else 1e-5  # bf16: one rounding of products summed in another order
    assert torch.allclose(a_out, b_out, atol=tol, rtol=tol), (a_out - b_out).abs().max()
    for name, g in a_grads.items():
        scale = g.abs().max().clamp_min(1e-6)
        assert ((g - b_grads[name]).abs().max() / scale) < (5e-2 if autocast else 1e-4), name
    # an optimizer step on the separate weights shows in the next fused forward (built every call)
    with torch.no_grad():
        for p in (model.parameters(), fused.parameters()):
            for w in p:
                w.add_(0.01)
    assert torch.allclose(_loss_and_grads(model, ids, False)[0], _loss_and_grads(fused, ids, False)[0], atol=1e-5)


def test_sibling_on_another_input_computes_its_own_product():
    model = _tiny_llama()
    fuse_projections(model)
    attn = model.model.layers[0].self_attn
    x, y = torch.randn(2, 5, 64), torch.randn(2, 5, 64)
    q = attn.q_proj(x)
    assert torch.allclose(q, x @ attn.q_proj.weight.T, atol=1e-5)
    assert torch.allclose(attn.k_proj(y), y @ attn.k_proj.weight.T, atol=1e-5)  # not x's slice
    assert torch.allclose(attn.k_proj(x), x @ attn.k_proj.weight.T, atol=1e-5)  # x's slice
    assert torch.allclose(attn.k_proj(x), x @ attn.k_proj.weight.T, atol=1e-5)  # taken: its own again
    assert torch.allclose(attn.v_proj(x), x @ attn.v_proj.weight.T, atol=1e-5)


def test_nothing_fused_that_is_not_a_plain_linear_group():
    class Block(torch.nn.Module):
        def __init__(self, mixed_bias: bool, lora_like: bool):
            super().__init__()
            self.q_proj = torch.nn.Linear(8, 8, bias=mixed_bias)
            self.k_proj = torch.nn.Linear(8, 4, bias=False)
            self.v_proj = torch.nn.Sequential(torch.nn.Linear(8, 4)) if lora_like else torch.nn.Linear(8, 4, bias=False)

    assert fuse_projections(Block(mixed_bias=True, lora_like=False)) == 0
    assert fuse_projections(Block(mixed_bias=False, lora_like=True)) == 0
    assert fuse_projections(Block(mixed_bias=False, lora_like=False)) == 1


def test_fused_forward_runs_one_product_per_group(monkeypatch):
    import torch.nn.functional as F

    calls = []
    linear = F.linear
    monkeypatch.setattr(F, "linear", lambda x, w, b=None: calls.append(w.shape[0]) or linear(x, w, b))
    model = _tiny_llama()
    ids = torch.randint(0, 97, (1, 9))
    model(input_ids=ids)
    separate = list(calls)
    calls.clear()
    fuse_projections(model)
    model(input_ids=ids)
    # per layer: q, k, v, o, gate, up, down -> qkv, o, gate|up, down; plus the LM head
    assert len(separate) == 2 * 7 + 1 and len(calls) == 2 * 4 + 1
    assert calls[:4] == [64 + 32 + 32, 64, 2 * 96, 64]
