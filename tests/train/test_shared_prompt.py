"""Issue 26: each DPO pair's prompt runs once (selfplay/train/head.py, shared_prompt). The shared
row must give TRL's two rows' log-probs and gradients, and training the same curves as TRL's plain
DPO on the same pairs."""
from __future__ import annotations

import math

import orjson
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")


def _tiny_model(attn: str):
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      tie_word_embeddings=True, attn_implementation=attn)
    model = LlamaForCausalLM(cfg).float()
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "mean_logits", "is_top1"))
    return model


def _batch(pairs):
    """TRL's DPO micro-batch: [prompt + chosen] * B then [prompt + rejected] * B, right-padded."""
    seqs = [p + c for p, c, _ in pairs] + [p + r for p, _, r in pairs]
    comp = [[0] * len(p) + [1] * len(c) for p, c, _ in pairs] + [[0] * len(p) + [1] * len(r) for p, _, r in pairs]
    width = max(map(len, seqs))
    ids = torch.tensor([s + [0] * (width - len(s)) for s in seqs])
    att = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
    cm = torch.tensor([c + [0] * (width - len(c)) for c in comp])
    return ids, att, ids.masked_fill(cm == 0, -100)


PAIRS = [([5, 6, 7, 8, 9, 10, 11], [20, 21, 22], [30, 31, 32, 33, 34]),
         ([12, 13, 14], [40, 41, 42, 43, 44, 45], [50])]


def _run(attn: str, shared: bool, batch, pieces: bool = True):
    from selfplay.train.head import SharedPromptCounter, completion_only_head

    model = _tiny_model(attn)
    counter = SharedPromptCounter()
    assert completion_only_head(model, "fp32", shared_prompt=shared, counter=counter, attention_pieces=pieces)
    ids, att, labels = batch
    out = model(input_ids=ids, attention_mask=att, labels=labels, fused_lm_head=True, use_cache=False)
    weights = torch.arange(1, ids.shape[0] + 1, dtype=torch.float32)  # a different weight per row
    (out.log_probs.sum(1) @ weights).backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters()])
    return out, grads, counter


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_the_shared_row_gives_the_two_rows_log_probs_and_gradients(attn):
    batch = _batch(PAIRS)
    two, g_two, c_two = _run(attn, False, batch)
    one, g_one, c_one = _run(attn, True, batch)
    assert (c_two.shared, c_two.two_row) == (0, 1) and (c_one.shared, c_one.two_row) == (1, 0)
    # prompt 7 + 3 + 5 and 3 + 6 + 1 tokens in the shared rows, against 7+3 + 7+5 + 3+6 + 3+1 in two rows
    assert (c_one.tokens_shared, c_one.tokens_two_row) == (25, 35)
    mask = two.label_mask
    assert torch.equal(mask, one.label_mask) and int(mask.sum()) == 3 + 6 + 5 + 1
    for name in ("log_probs", "entropy", "mean_logits"):
        a, b = getattr(two, name), getattr(one, name)
        assert torch.allclose(a, b, atol=1e-5), (name, (a - b).abs().max())
        assert (b[~mask] == 0).all()
    assert torch.equal(two.is_top1, one.is_top1)
    assert torch.allclose(two.loss, one.loss, atol=1e-5)
    assert (g_two - g_one).norm() / g_two.norm() < 1e-4


def test_rows_without_one_prompt_run_the_two_row_way():
    ids, att, labels = _batch(PAIRS)
    ids[3, 1] = 77  # the second pair's rejected row no longer repeats its chosen row's prompt
    two, _, _ = _run("sdpa", False, (ids, att, labels))
    one, _, counter = _run("sdpa", True, (ids, att, labels))
    assert (counter.shared, counter.two_row) == (0, 1)
    assert torch.equal(two.log_probs, one.log_probs)


def test_the_layout_masks_the_chosen_tokens_from_the_rejected_ones():
    from selfplay.train.head import shared_layout

    lay = shared_layout(*_batch(PAIRS), pack=False)
    assert lay.ids.shape == (2, 15)  # pair 0: 7 + 3 + 5
    assert lay.ids[0].tolist() == [5, 6, 7, 8, 9, 10, 11, 20, 21, 22, 30, 31, 32, 33, 34]
    assert lay.position_ids[0].tolist() == list(range(10)) + list(range(7, 12))
    allowed = lay.allowed[0, 0]
    assert not allowed[10:, 7:10].any()  # rejected never sees chosen
    assert allowed[10:, :7].all() and allowed[12, 10:13].all() and not allowed[12, 13]  # prompt + causal
    # the first rejected token (row 1's position 7) is predicted from the prompt's last token
    rows, cols = lay.out
    first = [(g, p) for g, p, r, c in zip(*lay.gather, rows.tolist(), cols.tolist()) if (r, c) == (2, 6)]
    assert first == [(0, 6)]


# three pairs of one problem (one prompt) and a pair of another: two rows, not four (or eight)
SAME_PROMPT = [([5, 6, 7, 8], [20, 21, 22], [30, 31]), ([12, 13, 14], [40, 41], [50, 51, 52]),
               ([5, 6, 7, 8], [23], [33, 34, 35, 36]), ([5, 6, 7, 8], [24, 25], [37])]


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("pack", [True, False])
def test_pairs_of_one_prompt_share_one_row_with_the_two_rows_log_probs_and_gradients(attn, pack, monkeypatch):
    from selfplay.train import head

    # the row cost picks one packed row for these short rows; a short attention width makes it pick a row each
    monkeypatch.setattr(head, "ATTENTION_WIDTH", 10 ** 6 if pack else 1)
    batch = _batch(SAME_PROMPT)
    assert head.shared_layout(*batch).ids.shape[0] == (1 if pack else 2)
    two, g_two, _ = _run(attn, False, batch)
    # pieces count a packed row's attention by its pieces, which would pack these rows: off for a row each
    one, g_one, counter = _run(attn, True, batch, pieces=pack)
    assert (counter.shared, counter.two_row) == (1, 0)
    assert counter.pieces == (1 if pack and attn == "sdpa" else 0)  # sdpa runs a packed row in pieces
    # one block 4 + (3+2) + (1+4) + (2+1) and one 3 + 2 + 3, against TRL's 8 rows
    assert counter.tokens_shared == 17 + 8
    assert counter.tokens_two_row == sum(2 * len(p) + len(c) + len(r) for p, c, r in SAME_PROMPT)
    mask = two.label_mask
    for name in ("log_probs", "entropy", "mean_logits"):
        a, b = getattr(two, name), getattr(one, name)
        assert torch.allclose(a, b, atol=1e-5), (name, (a - b).abs().max())
        assert (b[~mask] == 0).all()
    assert torch.equal(two.is_top1, one.is_top1)
    assert (g_two - g_one).norm() / g_two.norm() < 1e-4


def test_the_segments_of_one_prompt_see_the_prompt_and_themselves_only():
    from selfplay.train.head import shared_layout

    lay = shared_layout(*_batch(SAME_PROMPT), pack=False)
    assert lay.ids.shape == (2, 17)
    assert lay.ids[0].tolist() == [5, 6, 7, 8, 20, 21, 22, 30, 31, 23, 33, 34, 35, 36, 24, 25, 37]
    assert lay.position_ids[0].tolist() == [0, 1, 2, 3, 4, 5, 6, 4, 5, 4, 4, 5, 6, 7, 4, 5, 4]
    allowed = lay.allowed[0, 0]
    segments = [(4, 7), (7, 9), (9, 10), (10, 14), (14, 16), (16, 17)]
    for s, e in segments:
        assert allowed[s:e, :4].all()  # the prompt
        assert torch.equal(allowed[s:e, s:e], torch.ones(e - s, e - s, dtype=torch.bool).tril())
        assert int(allowed[s:e].sum()) == 4 * (e - s) + (e - s) * (e - s + 1) // 2  # nothing else
    assert lay.ids[1, :8].tolist() == [12, 13, 14, 40, 41, 50, 51, 52]
    assert allowed.shape == (17, 17) and lay.allowed[1, 0, 12, 12] and int(lay.allowed[1, 0, 8:].sum()) == 9  # padding
    # pair 2's first rejected token (TRL row 4 + 2 = 6, column 3) is predicted from the prompt's last token
    first = [(r, p) for r, p, orow, ocol in zip(*lay.gather, *lay.out) if (int(orow), int(ocol)) == (6, 3)]
    assert [(int(r), int(p)) for r, p in first] == [(0, 3)]
    packed = shared_layout(*_batch(SAME_PROMPT), pack=True)  # the second prompt's block follows the first
    assert packed.ids.shape == (1, 25) and packed.ids[0, 17:].tolist() == lay.ids[1, :8].tolist()
    assert packed.position_ids[0, 17:].tolist() == [0, 1, 2, 3, 4, 3, 4, 5]
    assert not packed.allowed[0, 0, 17:, :17].any() and not packed.allowed[0, 0, :17, 17:].any()
    assert torch.equal(packed.allowed[0, 0, :17, :17], allowed)


# two problems whose prompts share their first three tokens (a solve prompt's template,
# instruction and worked example), the first with two pairs
COMMON_PREFIX = [([5, 6, 7, 8, 9], [20, 21], [30]), ([5, 6, 7, 12], [40, 41, 42], [50, 51]),
                 ([5, 6, 7, 8, 9], [22], [31, 32, 33])]


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_a_packed_row_holds_the_prompts_common_tokens_once(attn, monkeypatch):
    from selfplay.train import head

    monkeypatch.setattr(head, "ATTENTION_WIDTH", 10 ** 6)  # one packed row
    batch = _batch(COMMON_PREFIX)
    lay = head.shared_layout(*batch)
    # [5, 6, 7] once; then [8, 9] + 2 + 1 + 1 + 3 for the first problem, [12] + 3 + 2 for the second
    assert lay.ids.tolist() == [[5, 6, 7, 8, 9, 20, 21, 30, 22, 31, 32, 33, 12, 40, 41, 42, 50, 51]]
    assert lay.position_ids[0].tolist() == [0, 1, 2, 3, 4, 5, 6, 5, 5, 5, 6, 7, 3, 4, 5, 6, 4, 5]
    allowed = lay.allowed[0, 0]
    assert allowed[12, :3].all() and not allowed[12, 3:12].any() and allowed[12, 12]  # [12] sees [5, 6, 7]
    assert allowed[16, :3].all() and allowed[16, 12] and not allowed[16, 13:16].any()  # rejected: prompt only
    assert not allowed[:12, 12:].any()  # the first problem never sees the second
    assert lay.tokens == 18 and lay.two_row_tokens == sum(2 * len(p) + len(c) + len(r) for p, c, r in COMMON_PREFIX)
    # the second problem's first completion tokens are predicted from its own prompt token
    first = {(int(r), int(c)): int(g) for g, r, c in zip(lay.gather[1], *lay.out)}
    assert first[(1, 3)] == 12 and first[(4, 3)] == 12
    assert head.shared_layout(*batch, pack=False).ids.shape == (2, 12)  # a row each: no common part
    two, g_two, _ = _run(attn, False, batch)
    one, g_one, counter = _run(attn, True, batch)
    assert (counter.shared, counter.tokens_shared) == (1, 18)
    assert counter.pieces == (attn == "sdpa")
    for name in ("log_probs", "entropy", "mean_logits"):
        a, b = getattr(two, name), getattr(one, name)
        assert torch.allclose(a, b, atol=1e-5), (name, (a - b).abs().max())
    assert torch.equal(two.is_top1, one.is_top1)
    assert (g_two - g_one).norm() / g_two.norm() < 1e-4


def test_a_packed_rows_pieces_cover_it_and_leave_out_only_keys_it_may_not_see():
    from selfplay.train import head

    for batch in (_batch(COMMON_PREFIX), _batch(SAME_PROMPT), _batch(PAIRS)):
        lay = head.shared_layout(*batch, pack=True, pieces=True)
        allowed = lay.allowed[0, 0]
        n, c = allowed.shape[0], lay.pieces.common
        assert head.shared_layout(*batch, pack=False, pieces=True).pieces is None  # a row each: whole-row masks
        assert torch.equal(allowed[:c, :c], torch.ones(c, c, dtype=torch.bool).tril()) and not allowed[:c, c:].any()
        slots = []  # (query position, its keys, its mask row) of every query slot, flattened in bucket order
        for qpos, kpos, mask in lay.pieces.buckets:
            assert mask.any(-1).all()  # every query slot, padding too, sees a key (no NaN row)
            for p in range(qpos.shape[0]):
                slots += [(int(qpos[p, j]), kpos[p], mask[p, 0, j]) for j in range(qpos.shape[1])]
        back = lay.pieces.back.tolist()
        assert len(back) == n - c and len(set(back)) == n - c  # each position from c on has its own slot
        for pos, slot in zip(range(c, n), back):
            q, keys, row = slots[slot]
            assert q == pos
            seen = torch.zeros(n, dtype=torch.bool)
            seen[keys[row]] = True
            assert torch.equal(seen, allowed[pos])  # exactly the keys it may see, none it may not
    # COMMON_PREFIX: [5, 6, 7] common; [8, 9], 2 + 1 + 1 + 3 and [12], 3 + 2 in pieces of like size
    lay = head.shared_layout(*_batch(COMMON_PREFIX), pack=True, pieces=True)
    assert lay.pieces.common == 3
    assert sorted(int((q > 0).sum()) for q, _, _ in lay.pieces.buckets for q in q) == [1, 1, 1, 2, 2, 2, 3, 3]


def test_pieces_attention_gives_whole_row_sdpa_outputs_and_gradients():
    from transformers import LlamaConfig

    from selfplay.train import head

    lay = head.shared_layout(*_batch(COMMON_PREFIX), pack=True, pieces=True)
    n = lay.ids.shape[1]
    torch.manual_seed(1)
    q = torch.randn(1, 4, n, 8, requires_grad=True)
    k = torch.randn(1, 2, n, 8, requires_grad=True)  # grouped keys and values: 2 for 4 query heads
    v = torch.randn(1, 2, n, 8, requires_grad=True)
    module = torch.nn.Module()
    module.num_key_value_groups, module.is_causal, module.config = 2, True, LlamaConfig()
    whole, _ = head.pieces_attention(module, q, k, v, lay.allowed, scaling=0.3)
    (gq, gk, gv) = torch.autograd.grad((whole * torch.arange(whole.numel()).reshape(whole.shape)).sum(), (q, k, v))
    pieced, _ = head.pieces_attention(module, q, k, v, lay.allowed, scaling=0.3, selfplay_pieces=lay.pieces)
    assert len(lay.pieces.buckets) > 1  # pieces of unlike size in buckets of their own
    assert pieced.shape == whole.shape == (1, n, 4, 8)
    assert torch.allclose(pieced, whole, atol=1e-6)
    grads = torch.autograd.grad((pieced * torch.arange(whole.numel()).reshape(whole.shape)).sum(), (q, k, v))
    for a, b in zip((gq, gk, gv), grads):
        assert torch.allclose(a, b, atol=1e-4), (a - b).abs().max()


def _pairs(path):
    """8 pairs of 5 problems: 3, 2, 1, 1 and 1 pairs (a problem's pairs share one prompt block)."""
    qs = [(2, 3, 0), (2, 3, 1), (2, 3, 2), (4, 5, 0), (4, 5, 1), (10, 7, 0), (6, 6, 0), (8, 1, 0)]
    path.write_bytes(b"".join(orjson.dumps({
        "prompt": [{"role": "user", "content": f"Tom has {a} apples and gets {b} more. How many apples now?"}],
        "chosen": [{"role": "assistant", "content": f"{a} + {b} = {a + b}. The answer is \\boxed{{{a + b}}}."}],
        "rejected": [{"role": "assistant", "content": f"He has {a} - {b}{'?' * k}, so \\boxed{{{a + b + 2 + k}}}."}],
        "metadata": {"problem_id": f"add-{a}-{b}"}}) + b"\n" for a, b, k in qs))
    return path


@pytest.mark.model
def test_training_curves_agree_with_trls_plain_dpo(tmp_path):
    """Same pairs, same order, 4 steps of 4 pairs, fp32: loss and reward margins within 2e-3 of
    TRL's own two-row DPO (the shared rows sum the same terms in another order), every pair seen;
    a problem's pairs share one prompt block where a micro-batch holds several."""
    from selfplay.config import TrainSection
    from selfplay.train.dpo import train_dpo

    f = _pairs(tmp_path / "pairs.jsonl")
    cfg = TrainSection(epochs=2, batch_size=2, grad_accum=2, max_length=256, precision="fp32", learning_rate=5e-5,
                       engine_ref=False)
    runs = {}
    for shared in (False, True):
        runs[shared] = train_dpo([f], "default", tmp_path / str(shared) / "model", cfg, threads=1,
                                 shared_prompt=shared)
    plain, fast = runs[False], runs[True]
    assert plain["shared_prompt"]["shared"] == 0 and fast["shared_prompt"]["two_row"] == 0
    assert fast["shared_prompt"]["shared"] == 2 * 8  # 8 micro-batches, each a policy and a reference forward
    # fewer tokens than one row per pair: some micro-batch held two pairs of one problem
    assert fast["shared_prompt"]["tokens"] < fast["pair_tokens"] * 2
    assert fast["steps"] == plain["steps"] == 4 and fast["pairs_seen"] == 8 and fast["pair_slots"] == 16
    for key in ("loss", "rewards/margins", "rewards/accuracies", "logps/chosen", "logps/rejected"):
        a = [h[key] for h in plain["history"]]
        b = [h[key] for h in fast["history"]]
        tol = 2e-3 * max(1.0, max(abs(x) for x in a))
        assert all(math.isclose(x, y, abs_tol=tol) for x, y in zip(a, b)), (key, a, b)
    assert fast["history"][-1]["rewards/margins"] > 0  # it learned


def test_a_reference_head_without_metrics_gives_the_same_log_probs():
    """The frozen reference's entropy, mean logit and top-1 are never read (TRL takes its log-probs)."""
    from selfplay.train.head import completion_only_head

    batch = _batch(COMMON_PREFIX)
    outs = []
    for metrics in (True, False):
        model = _tiny_model("sdpa")
        assert completion_only_head(model, "fp32", shared_prompt=True, metrics=metrics)
        with torch.no_grad():
            ids, att, labels = batch
            outs.append(model(input_ids=ids, attention_mask=att, labels=labels, fused_lm_head=True, use_cache=False))
    full, bare = outs
    assert torch.equal(full.log_probs, bare.log_probs) and torch.equal(full.label_mask, bare.label_mask)
    mask = full.label_mask
    assert (full.entropy[mask] > 0).all() and (bare.entropy == 0).all() and (bare.mean_logits == 0).all()
    assert full.is_top1.shape == bare.is_top1.shape and not bare.is_top1.any()
