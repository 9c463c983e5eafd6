"""Issue 15 (speed): precision choice, no step at lr 0, length grouping, the completion-only LM head."""
import math

import orjson
import pytest

from selfplay.config import Config, TrainSection
from selfplay.train.data import pair_order
from selfplay.train.dpo import train_dpo
from selfplay.train.precision import cpu_has_bf16, resolve_precision
from selfplay.train.trainer import lr_factor


@pytest.mark.parametrize("kind", ["linear", "cosine", "constant", "constant_with_warmup"])
@pytest.mark.parametrize("warmup,total", [(0, 1), (0, 2), (1, 12), (3, 12), (2, 3)])
def test_every_step_has_lr_above_zero(kind, warmup, total):
    factors = [lr_factor(s, warmup, total, kind) for s in range(total)]
    assert all(0 < f <= 1 for f in factors), factors


def test_lr_factor_shapes():
    # the default job: 12 steps, warmup_ratio 0.1 -> 1 warmup step at half the lr, not at 0
    assert lr_factor(0, 1, 12, "cosine") == 0.5
    assert lr_factor(1, 1, 12, "cosine") == 1.0
    assert lr_factor(0, 0, 12, "cosine") == 1.0
    cos = [lr_factor(s, 1, 12, "cosine") for s in range(1, 12)]
    assert cos == sorted(cos, reverse=True) and cos[-1] < 0.05
    assert [lr_factor(s, 2, 4, "linear") for s in range(4)] == [1 / 3, 2 / 3, 1.0, 0.5]
    assert lr_factor(5, 2, 10, "constant_with_warmup") == 1.0
    with pytest.raises(ValueError, match="lr_scheduler"):
        lr_factor(3, 0, 10, "step")


def test_cpu_has_bf16_reads_flags(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f\n")
    assert cpu_has_bf16(info) is False
    info.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16 avx512_vnni\n")
    assert cpu_has_bf16(info) is True
    info.write_text("flags\t\t: fpu amx_bf16 amx_tile\n")
    assert cpu_has_bf16(info) is True
    assert cpu_has_bf16(tmp_path / "missing") is False


def test_resolve_precision(monkeypatch):
    import selfplay.train.precision as train

    assert resolve_precision("fp32", cuda=False) == "fp32"
    assert resolve_precision("bf16", cuda=False) == "bf16"
    monkeypatch.setattr(train, "cpu_has_bf16", lambda: True)
    assert resolve_precision("auto", cuda=False) == "bf16"
    monkeypatch.setattr(train, "cpu_has_bf16", lambda: False)
    assert resolve_precision("auto", cuda=False) == "fp32"
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp16", cuda=False)
    with pytest.raises(ValueError, match=r"train\.precision"):
        Config(train=TrainSection(precision="half")).validate()


def test_pair_order_groups_within_steps_only():
    lengths = [50, 400, 120, 90, 300, 10, 220, 70, 510, 30, 260, 180]
    plain = pair_order(lengths, 4, 12, seed=3, group=False)
    grouped = pair_order(lengths, 4, 12, seed=3, group=True)
    assert sorted(plain) == list(range(12))  # one epoch: every pair once
    for k in range(0, 12, 4):  # the same pairs in every step, longest first inside it
        assert set(plain[k:k + 4]) == set(grouped[k:k + 4])
        assert [lengths[i] for i in grouped[k:k + 4]] == sorted((lengths[i] for i in grouped[k:k + 4]), reverse=True)
    assert pair_order(lengths, 4, 12, seed=3, group=False) == plain  # seeded
    assert pair_order(lengths, 4, 12, seed=4, group=False) != plain
    two = pair_order(lengths, 4, 20, seed=0, group=False)  # more slots than pairs: a second shuffled epoch
    assert len(two) == 20 and sorted(two[:12]) == list(range(12)) and len(set(two[12:])) == 8


def test_pair_order_keeps_a_problems_pairs_together():
    # 5 problems with 3, 1, 4, 2 and 2 pairs; steps of 8 pairs in micro-batches of 4
    keys = ["a"] * 3 + ["b"] + ["c"] * 4 + ["d"] * 2 + ["e"] * 2
    lengths = [100, 90, 80, 70, 60, 50, 40, 30, 20, 10, 5, 1]
    for seed in range(6):
        order = pair_order(lengths, 8, 12, seed=seed, group=False, keys=keys)
        assert sorted(order) == list(range(12))
        runs = [k for n, k in enumerate(keys[i] for i in order) if n == 0 or keys[order[n - 1]] != k]
        assert sorted(runs) == ["a", "b", "c", "d", "e"]  # each problem's pairs one after another
        grouped = pair_order(lengths, 8, 12, seed=seed, group=True, keys=keys, batch=4)
        for k in (0, 8):  # the same pairs in every step
            assert set(grouped[k:k + 8]) == set(order[k:k + 8])
        for m in range(0, 12, 4):  # a micro-batch splits a problem only when no whole one fits
            micro = grouped[m:m + 4]
            assert [lengths[i] for i in micro] == sorted((lengths[i] for i in micro), reverse=True)
        steps = [grouped[:8], grouped[8:]]
        for step in steps:
            sizes = {}
            for i in step:
                sizes[keys[i]] = sizes.get(keys[i], 0) + 1
            split = [key for key in sizes if len({(grouped.index(i) // 4) for i in step if keys[i] == key}) > 1]
            assert len(split) <= 1, (seed, grouped)
    assert pair_order(lengths, 8, 12, seed=1, group=False, keys=keys) != pair_order(lengths, 8, 12, seed=2,
                                                                                       group=False, keys=keys)
    assert pair_order(lengths, 8, 24, seed=0, group=False, keys=keys)[12:] != pair_order(
        lengths, 8, 24, seed=0, group=False, keys=keys)[:12]  # a second epoch, shuffled again


@pytest.mark.model
def test_completion_only_head_matches_trl_head():
    """Same log-probs, entropy, mean logits and top-1 as TRL's fused head (fp32), on completion tokens."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl.trainer.utils import add_fused_lm_head

    from selfplay.backends.models import resolve_model
    from selfplay.train.head import completion_only_head

    path = resolve_model("default")
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    outputs = ("log_probs", "entropy", "mean_logits", "is_top1")
    add_fused_lm_head(model, outputs=outputs)
    ids = [tok("What is 2 + 3? The answer is 5.")["input_ids"], tok("Hello there, 7 + 1 = 8")["input_ids"]]
    width = max(map(len, ids))
    input_ids = torch.tensor([x + [tok.pad_token_id] * (width - len(x)) for x in ids])
    attention = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids])
    completion = torch.zeros_like(input_ids)
    completion[0, 6:len(ids[0])] = 1
    completion[1, 4:len(ids[1])] = 1
    labels = input_ids.masked_fill(completion == 0, -100)
    with torch.no_grad():
        ref = model(input_ids=input_ids, attention_mask=attention, labels=labels, fused_lm_head=True)
        assert completion_only_head(model, "fp32")
        new = model(input_ids=input_ids, attention_mask=attention, labels=labels, fused_lm_head=True)
        plain = model(input_ids=input_ids, attention_mask=attention)  # unfused path still the model's own
    mask = labels[:, 1:] != -100
    assert mask.sum() > 5 and torch.equal(new.label_mask, mask)
    for name in ("log_probs", "entropy", "mean_logits"):
        a, b = getattr(ref, name), getattr(new, name)
        assert a.shape == b.shape
        assert torch.allclose(a[mask], b[mask], atol=2e-4), name
        assert (b[~mask] == 0).all()
    assert torch.equal(ref.is_top1[mask], new.is_top1[mask])
    assert torch.allclose(ref.loss, new.loss, atol=1e-5)
    assert plain.logits.shape == (2, width, model.config.vocab_size)


def _pairs(path):
    qs = [(2, 3), (4, 5), (10, 7), (6, 6), (8, 1), (3, 9)]
    path.write_bytes(b"".join(orjson.dumps({
        "prompt": [{"role": "user", "content": f"What is {a} + {b}?"}],
        "chosen": [{"role": "assistant", "content": f"{a} + {b} = {a + b}. The answer is \\boxed{{{a + b}}}."}],
        "rejected": [{"role": "assistant", "content": f"{a} + {b} = {a + b + 2}. So \\boxed{{{a + b + 2}}}."}],
        "metadata": {"problem_id": f"add-{a}-{b}"}}) + b"\n" for a, b in qs))
    return path


@pytest.mark.model
def test_real_training_auto_precision_first_step_trains(tmp_path):
    """A few real steps with the defaults (auto precision, grouping, completion-only head) and a warmup."""
    import torch
    from transformers import AutoModelForCausalLM

    from selfplay.backends.models import resolve_model

    f = _pairs(tmp_path / "pairs.jsonl")
    cfg = TrainSection(max_steps=3, batch_size=2, grad_accum=1, max_length=128)
    out = tmp_path / "round_0" / "model"
    stats = train_dpo([f], "default", out, cfg, max_prompt_length=64, warmup_ratio=0.34, lr_scheduler="cosine",
                      threads=1)
    expected = "bf16" if cpu_has_bf16() else "fp32"
    assert stats["precision"] == expected and stats["lm_head"] == "completion"
    saved = orjson.loads((tmp_path / "round_0" / "train_stats.json").read_bytes())
    assert saved["precision"] == expected and len(saved["step_seconds"]) == 3
    assert stats["warmup_steps"] == 1 and stats["steps"] == 3
    lrs = [h["learning_rate"] for h in stats["history"]]
    assert lrs[0] == pytest.approx(cfg.learning_rate / 2) and all(lr > 0 for lr in lrs)
    assert all(math.isfinite(h["loss"]) for h in stats["history"])
    assert stats["history"][0]["rewards/margins"] == pytest.approx(0.0, abs=1e-6)  # policy == reference
    assert stats["tokens"] > 0
    trained = AutoModelForCausalLM.from_pretrained(out).state_dict()
    base = AutoModelForCausalLM.from_pretrained(resolve_model("default")).state_dict()
    assert all(v.dtype == torch.float32 for v in trained.values())  # fp32 master weights saved
    assert max((trained[k] - base[k]).abs().max().item() for k in base) > 0


def test_pair_order_by_pair_uses_keys_only_for_the_micro_batch_layout():
    # group_by_prompt off with shared prompts: the epoch shuffles pairs (the steps hold the same
    # pairs as with no keys at all); within a step, pairs of one prompt share a micro-batch
    keys = ["a"] * 3 + ["b"] + ["c"] * 4 + ["d"] * 2 + ["e"] * 2
    lengths = [100, 90, 80, 70, 60, 50, 40, 30, 20, 10, 5, 1]
    for seed in range(6):
        plain = pair_order(lengths, 8, 24, seed=seed, group=True)
        laid = pair_order(lengths, 8, 24, seed=seed, group=True, keys=keys, batch=4, by_problem=False)
        assert [set(laid[k:k + 8]) for k in range(0, 24, 8)] == [set(plain[k:k + 8]) for k in range(0, 24, 8)]
        for k in range(0, 24, 8):
            step = laid[k:k + 8]
            micro_of = {i: n // 4 for n, i in enumerate(step)}
            for key in set(keys):
                mine = [i for i in step if keys[i] == key]
                # a prompt's pairs in one step are split over micro-batches only when they cannot fit
                if 1 < len(mine) <= 4 and len({micro_of[i] for i in mine}) > 1:
                    assert sum(len({micro_of[i] for i in step if keys[i] == other}) > 1 for other in set(keys)) <= 1
    by_problem = pair_order(lengths, 8, 12, seed=0, group=True, keys=keys, batch=4)
    assert by_problem != pair_order(lengths, 8, 12, seed=0, group=True, keys=keys, batch=4, by_problem=False)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("metrics", [True, False])
def test_head_scores_match_autograd_log_softmax(dtype, metrics):
    """head_scores (sliced, no fp32 [tokens, vocab] tensors kept) against the plain autograd head it
    replaces: linear in `dtype`, fp32 log-softmax, gather; values, metrics and both gradients.
    150 tokens: three slices of HEAD_CHUNK, the last one short."""
    import torch

    from selfplay.train import head

    dt = getattr(torch, dtype)
    torch.manual_seed(0)
    h0 = torch.randn(150, 32)
    w0 = torch.randn(500, 32) * 0.5
    target = torch.randint(0, 500, (150,))
    upstream = torch.randn(150)

    def ref():
        h, w = h0.clone().requires_grad_(), w0.clone().requires_grad_()
        logits = (h.to(dt) @ w.to(dt).t())
        logp_all = logits.float().log_softmax(-1)
        logp = logp_all.gather(-1, target[:, None]).squeeze(-1)
        (logp * upstream).sum().backward()
        ent = -(logp_all.exp() * logp_all).sum(-1)
        return logp, ent, logits.float().mean(-1), logp_all.argmax(-1) == target, h.grad, w.grad

    def ours():
        h, w = h0.clone().requires_grad_(), w0.clone().requires_grad_()
        logp, ent, mean, top1 = head.head_scores(h, w, target, dt, metrics)
        (logp * upstream).sum().backward()
        return logp, ent, mean, top1, h.grad, w.grad

    a, b = ref(), ours()
    tol = 1e-5 if dtype == "float32" else 2e-2  # bf16 gradients: one rounding of the logits' gradient
    assert torch.allclose(a[0], b[0], atol=1e-5)  # log-probs: the same fp32 arithmetic on the same logits
    if metrics:
        assert torch.allclose(a[1], b[1], atol=1e-4) and torch.allclose(a[2], b[2], atol=1e-5)
        assert torch.equal(a[3], b[3])
    else:
        assert not b[1].any() and not b[2].any() and not b[3].any()
    for x, y in zip(a[4:], b[4:]):
        assert x.dtype == y.dtype == torch.float32
        assert torch.allclose(x, y, atol=tol, rtol=tol), (x - y).abs().max()


@pytest.mark.model
def test_frozen_reference_in_bf16_gives_the_same_autocast_outputs():
    """cast_frozen_linears stores the reference's linear weights in bf16 once: under bf16 autocast
    (training's reference forward) the logits are bit for bit those of the fp32 weights."""
    import torch
    from transformers import AutoModelForCausalLM

    from selfplay.backends.models import resolve_model
    from selfplay.train.precision import cast_frozen_linears

    model = AutoModelForCausalLM.from_pretrained(resolve_model("default"), dtype=torch.float32).eval()
    ids = torch.tensor([[1, 504, 3456, 28, 216, 1096, 47, 33, 1553, 30]])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        before = model(input_ids=ids).logits
        assert cast_frozen_linears(model, torch.bfloat16) == 7 * model.config.num_hidden_layers
        after = model(input_ids=ids).logits
    assert model.get_output_embeddings().weight.dtype == torch.float32  # tied to the input embedding
    assert torch.equal(before, after)
