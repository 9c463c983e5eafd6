"""The LM head and forward TRL's DPOTrainer calls, made cheaper (train.completion_only_head and
train_dpo's shared_prompt, both on by default).

TRL 1.16 runs a DPO micro-batch as 2B rows, [prompt + chosen] * B then [prompt + rejected] * B,
right-padded to one width, through the model twice (policy, then the frozen reference), and
projects every position, prompt and padding included, through the LM head when the device has no
Triton (any CPU). Here, keeping TRL's loss code and its per-token output layout:

- completion-only head: only positions with a label (the completion) go through the head and an
  fp32 log-softmax (tests/train/test_train_speed.py checks it gives TRL's log-probs, entropy, mean
  logits and top-1).
- shared prompt: each pair becomes ONE row, prompt + chosen + rejected, with a 4D attention mask
  in which the rejected tokens see the prompt and themselves but not the chosen tokens, and
  position ids that restart the rejected tokens where the prompt ends. Every token then sees
  exactly what it sees in TRL's two rows, so the log-probs are the same (within bf16 rounding),
  and the prompt, most of a default-job pair's tokens, runs once instead of twice, for the policy
  (forward and backward) and the reference. Pairs of a micro-batch with the same prompt (a
  problem's pairs, which selfplay.train.data.pair_order keeps together) share one block: the
  prompt once, then every pair's chosen and rejected segments. A micro-batch's blocks go into one
  row or a row each, whichever `row_cost` says is cheaper; in one row, the first tokens all their
  prompts share (a solve prompt's template, instruction and worked example) come once, and with
  sdpa the row's attention runs piece by piece (`pieces_attention`): each segment's queries
  against only the keys it may see (the common tokens, its prompt's own tokens, itself), not the
  whole row under a mask, so a packed row's attention grows with its pieces, not its width. A batch
  that is not in that layout (rows that do not share their prompt, an attention implementation
  that takes no 4D mask) runs the two-row way; `SharedPromptCounter` counts both.
"""
from __future__ import annotations

import functools
import types
from dataclasses import dataclass
from typing import Any

# Attention implementations that take a custom 4D mask: sdpa wants True = attend, eager an additive one.
MASKED_ATTENTION = ("sdpa", "eager")
# The attention a packed row runs with under sdpa: registered with transformers' AttentionInterface,
# and set on the model's config only for the length of that forward.
PIECES_ATTENTION = "selfplay_pieces"


@dataclass
class SharedPromptCounter:
    """Micro-batches (policy and reference forwards) run with the shared prompt, and the two-row way."""

    shared: int = 0
    two_row: int = 0
    tokens_shared: int = 0  # real tokens the shared rows processed
    tokens_two_row: int = 0  # real tokens the same batches have as TRL's two rows
    tokens_no_grad: int = 0  # real tokens processed without gradients (reference forwards)
    pieces: int = 0  # shared forwards whose packed row's attention ran piece by piece


@dataclass
class Layout:
    ids: Any
    position_ids: Any
    allowed: Any
    gather: tuple[Any, Any]
    target: Any
    out: tuple[Any, Any]
    tokens: int
    two_row_tokens: int
    pieces: Pieces | None = None  # a packed row's, with pieces=True


# Rows of width n cost about n * (1 + n / ATTENTION_WIDTH): a masked attention's cost per token grows
# with the row's width (measured on the embedded model, 2 CPU cores, bf16: a row of 1148 tokens cost
# 1.45x per token what rows of 372 did).
ATTENTION_WIDTH = 1350


def row_cost(widths: list[int], areas: list[int] | None = None) -> float:
    """Cost of rows of these widths whose attention covers `areas` query-key entries (default:
    width^2, a whole row under one mask)."""
    areas = [n * n for n in widths] if areas is None else areas
    return sum(n + a / ATTENTION_WIDTH for n, a in zip(widths, areas, strict=True))


def _common_prefix(prompts) -> int:
    """How many first tokens all these prompts share, at most the shortest one's length - 1 (each
    keeps a token of its own: the position that predicts its first completion token)."""
    import torch

    short = min(len(t) for t in prompts) - 1
    if short <= 0:
        return 0
    same = (torch.stack([t[:short] for t in prompts]) == prompts[0][:short]).all(0)
    return int(same.long().cumprod(0).sum())


def _pieces_area(common: int, groups: list[list[tuple[int, int, int]]]) -> int:
    """Query-key entries a packed row's pieces cover: the common tokens among themselves, each
    block's own prompt tokens against its whole prompt, each segment against its prompt and
    itself. groups: each block's pairs as (prompt length, chosen end, rejected end)."""
    area = common * common
    for g in groups:
        p = g[0][0]
        area += (p - common) * p
        for _, lc, lr in g:
            area += sum(m * (p + m) for m in (lc - p, lr - p))
    return area


def shared_layout(input_ids, attention_mask, labels, pack: bool | None = None, common_prefix: bool = True,
                  pieces: bool = False):
    """The shared-prompt layout of a DPO batch, or None when the batch is not [prompt + chosen] * B
    then [prompt + rejected] * B, right-padded, each pair's two rows with one prompt.

    Pairs whose prompts are the same token ids (pairs of one problem) share ONE prompt block: the
    prompt, then each pair's chosen and rejected completion as a segment that sees the prompt and
    itself only, its position ids restarting where the prompt ends. pack: the blocks go into one
    row (no padding; longer attention), or a row each, padded to the widest; None picks the one of
    lower row_cost. In one packed row (and with `common_prefix`), the first tokens all the blocks' prompts
    share (the chat template, instruction and worked example of every solve prompt) come once, at
    the row's start, and each block holds only the rest of its prompt, which sees them. pieces: a
    packed row also gets its attention pieces (Layout.pieces, for `pieces_attention`): the common
    tokens, then each block's own prompt tokens, then each segment, each with the keys it may see;
    the packing choice then counts those pieces' attention, not the row's. Returns a Layout: ids [R, N],
    position_ids [R, N], allowed [R, 1, N, N] bool (True = may attend), gather (row, position) of
    the hidden state predicting each completion token, its target, out (row, column) of that
    token's log-prob in TRL's [2B, width - 1] layout, and the real tokens of the shared rows and
    of TRL's two rows.
    """
    import torch

    rows = input_ids.shape[0]
    if rows % 2 or rows == 0:
        return None
    pairs = rows // 2
    lengths = attention_mask.sum(1).tolist()
    labelled = labels != -100
    spans = []
    for i in range(pairs):
        c, r = i, i + pairs
        lc, lr = int(lengths[c]), int(lengths[r])
        if not (attention_mask[c, :lc].all() and attention_mask[r, :lr].all()):
            return None  # not right-padded
        pos_c = labelled[c].nonzero().flatten()
        pos_r = labelled[r].nonzero().flatten()
        if len(pos_c) == 0 or len(pos_r) == 0:
            return None
        p = int(pos_c[0])
        # the completion is one run from p to the row's end, in both rows, after one shared prompt
        if (p < 1 or int(pos_r[0]) != p or len(pos_c) != lc - p or len(pos_r) != lr - p
                or int(pos_c[-1]) != lc - 1 or int(pos_r[-1]) != lr - 1
                or not torch.equal(input_ids[c, :p], input_ids[r, :p])):
            return None
        spans.append((p, lc, lr))
    groups: list[list[int]] = []  # pairs with the same prompt, in order of first appearance
    for i, (p, _, _) in enumerate(spans):
        for g in groups:
            if spans[g[0]][0] == p and torch.equal(input_ids[g[0], :p], input_ids[i, :p]):
                g.append(i)
                break
        else:
            groups.append([i])
    widths = [spans[g[0]][0] + sum(lc + lr - 2 * p for p, lc, lr in (spans[i] for i in g)) for g in groups]
    prompts = [input_ids[g[0], :spans[g[0]][0]] for g in groups]
    common = _common_prefix(prompts) if common_prefix and len(groups) > 1 else 0
    packed_width = sum(widths) - common * (len(groups) - 1)
    if pack is None:
        area = [_pieces_area(common, [[spans[i] for i in g] for g in groups])] if pieces else None
        pack = row_cost([packed_width], area) < row_cost([max(widths)] * len(widths))
    if not pack:
        common = 0
    rows_of = [list(range(len(groups)))] if pack else [[k] for k in range(len(groups))]
    n = packed_width if pack else max(widths)
    dev = input_ids.device
    ids = input_ids.new_zeros((len(rows_of), n))
    positions = torch.arange(n, device=dev).repeat(len(rows_of), 1)
    # padding attends to itself only (a row with nothing allowed would give NaN in sdpa)
    allowed = torch.eye(n, dtype=torch.bool, device=dev).repeat(len(rows_of), 1, 1, 1)
    causal = torch.ones((n, n), dtype=torch.bool, device=dev).tril()
    g_row, g_pos, o_row, o_col, targets = [], [], [], [], []
    rows_list = input_ids.tolist()
    spans_of_row: list[tuple[int, int, list[range]]] = []  # (query start, end, key ranges) of a packed row
    for k, members in enumerate(rows_of):
        # the prompts' common first tokens, once at the row's start (packed rows only)
        ids[k, :common] = input_ids[groups[0][0], :common]
        allowed[k, 0, :common, :common] = causal[:common, :common]
        if common:
            spans_of_row.append((0, common, []))
        o = common  # where the next group starts in row k
        for g in (groups[m] for m in members):
            p = spans[g[0]][0]
            own = p - common  # the group's prompt tokens after the common ones (at least one)
            ids[k, o:o + own] = input_ids[g[0], common:p]
            positions[k, o:o + own] = torch.arange(common, p, device=dev)
            allowed[k, 0, o:o + own, :common] = True
            allowed[k, 0, o:o + own, o:o + own] = causal[:own, :own]
            spans_of_row.append((o, o + own, [range(common), range(o, o + own)]))
            s = o + own  # where the next segment starts
            for i in g:
                _, lc, lr = spans[i]
                for row, end in ((i, lc), (i + pairs, lr)):  # the chosen segment, then the rejected one
                    m = end - p
                    ids[k, s:s + m] = input_ids[row, p:end]
                    positions[k, s:s + m] = torch.arange(p, end, device=dev)
                    allowed[k, 0, s:s + m, :common] = True
                    allowed[k, 0, s:s + m, o:o + own] = True
                    allowed[k, 0, s:s + m, s:s + m] = causal[:m, :m]
                    spans_of_row.append((s, s + m, [range(common), range(o, o + own), range(s, s + m)]))
                    # token p + j is predicted at the prompt's last position (j = 0), else at its own
                    # packed position - 1; TRL puts token t's log-prob in column t - 1
                    g_row += [k] * m
                    g_pos += [o + own - 1] + list(range(s, s + m - 1))
                    o_row += [row] * m
                    o_col += list(range(p - 1, end - 1))
                    targets += rows_list[row][p:end]
                    s += m
            o = s

    def as_t(xs: list[int]):
        return torch.tensor(xs, dtype=torch.long, device=dev)

    row_pieces = None
    if pieces and pack:
        row_pieces = _pieces(allowed[0, 0], spans_of_row)
    return Layout(ids, positions, allowed, (as_t(g_row), as_t(g_pos)), as_t(targets),
                  (as_t(o_row), as_t(o_col)), tokens=packed_width if pack else sum(widths),
                  two_row_tokens=sum(lc + lr for _, lc, lr in spans), pieces=row_pieces)


@dataclass
class Pieces:
    """A packed row's attention in pieces (`pieces_attention`): the first `common` tokens causal
    among themselves, then buckets of pieces padded to one shape, each (query positions [P, q],
    key positions [P, k], bool mask [P, 1, q, k]); back: for each row position from `common` on,
    its index among the buckets' queries, flattened in order."""

    common: int
    buckets: list[tuple[Any, Any, Any]]
    back: Any


# a bucket takes the next (shorter) piece while its padded area stays within this factor of its pieces' own
BUCKET_SLACK = 1.25


def _pieces(allowed, spans: list[tuple[int, int, list[range]]]) -> Pieces:
    """Pieces of a packed row from its spans (query start, end, the key ranges it may see; none:
    the common tokens, which come first)."""
    import torch

    common = spans[0][1] if spans and not spans[0][2] else 0
    rest = sorted((s for s in spans if s[2]), key=lambda s: s[0] - s[1])  # longest first
    groups: list[list[tuple[int, int, list[int]]]] = []
    area = 0
    for q0, q1, ranges in rest:
        keys = [j for r in ranges for j in r]
        if groups:
            g = groups[-1]
            lq, lk = g[0][1] - g[0][0], max(len(keys), *(len(x[2]) for x in g))
            if (len(g) + 1) * lq * lk <= BUCKET_SLACK * (area + (q1 - q0) * len(keys)):
                g.append((q0, q1, keys))
                area += (q1 - q0) * len(keys)
                continue
        groups.append([(q0, q1, keys)])
        area = (q1 - q0) * len(keys)
    back = torch.zeros(allowed.shape[0] - common, dtype=torch.long)
    buckets, base = [], 0
    for g in groups:
        lq, lk = g[0][1] - g[0][0], max(len(keys) for _, _, keys in g)
        qpos = torch.zeros(len(g), lq, dtype=torch.long)
        kpos = torch.zeros(len(g), lk, dtype=torch.long)
        mask = torch.zeros(len(g), 1, lq, lk, dtype=torch.bool)
        mask[:, 0, :, 0] = True  # a padded query sees one key (a row with none would give NaN); dropped after
        for p, (q0, q1, keys) in enumerate(g):
            q, k = torch.arange(q0, q1), torch.tensor(keys)
            qpos[p, :len(q)], kpos[p, :len(k)] = q, k
            mask[p, 0, :len(q), :len(k)] = allowed[q0:q1].index_select(1, k)
            back[q - common] = base + p * lq + torch.arange(len(q))
        buckets.append((qpos.to(allowed.device), kpos.to(allowed.device), mask.to(allowed.device)))
        base += len(g) * lq
    return Pieces(common, buckets, back.to(allowed.device))


def _attend(q, k, v, mask, scale: float):
    """Attention of grouped queries q [P, kv heads, G * q, dim] (query head h = kv head * G + g)
    on keys and values [P, kv heads, k, dim] under mask [P, 1, 1, q, k] (True = may see): two
    batched matmuls and an fp32 softmax, as transformers' eager attention computes it. For the
    short pieces of a packed row, forward and backward take about half the time of CPU sdpa's
    flash kernel (measured here: 6.8 against 15.5 ms for 16 pieces of 40 x 200 keys, 9 heads)."""
    import torch

    p, kv, gq, _ = q.shape
    scores = torch.matmul(q, k.transpose(-1, -2)).mul_(scale).view(p, kv, -1, *mask.shape[-2:])
    probs = scores.masked_fill(~mask, float("-inf")).softmax(-1, dtype=torch.float32).to(v.dtype)
    return torch.matmul(probs.view(p, kv, gq, -1), v)


def pieces_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling: float | None = None,
                     selfplay_pieces: Pieces | None = None, **kwargs):
    """transformers attention (AttentionInterface) of a packed shared-prompt row, in pieces.

    With `selfplay_pieces` (Layout.pieces of a one-row batch), each piece's queries attend to its
    own keys under its own small mask (pieces of like size in one padded batch), and the outputs
    go back in row order: the same result as sdpa over the whole row under `attention_mask` (every
    key a piece leaves out is one its queries may not see), for a fraction of the work. Every
    bucket's queries, keys and values are gathered in one index_select each (one scatter each in
    the backward pass), and the key/value heads are never repeated: each serves its group of
    query heads in `_attend`. Without it (or with dropout): transformers' sdpa.
    """
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if selfplay_pieces is None or dropout:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    q_all, k_all, v_all = query[0], key[0], value[0]  # [heads, n, dim], [kv heads, n, dim]
    heads, dim = q_all.shape[0], q_all.shape[-1]
    kv = k_all.shape[0]
    groups = heads // kv
    scale = dim ** -0.5 if scaling is None else scaling
    c = selfplay_pieces.common
    out = []
    if c:
        causal = torch.ones(c, c, dtype=torch.bool, device=q_all.device).tril().view(1, 1, 1, c, c)
        o = _attend(q_all[:, :c].reshape(1, kv, groups * c, dim), k_all[None, :, :c], v_all[None, :, :c], causal, scale)
        out.append(o.view(heads, c, dim).transpose(0, 1))  # [c, heads, dim]
    buckets = selfplay_pieces.buckets
    qs = q_all.index_select(1, torch.cat([qpos.flatten() for qpos, _, _ in buckets]))
    keys = torch.cat([kpos.flatten() for _, kpos, _ in buckets])  # keys and values share positions
    ks, vs = k_all.index_select(1, keys), v_all.index_select(1, keys)
    flat, qo, ko = [], 0, 0
    for qpos, kpos, mask in buckets:
        (p, lq), lk = qpos.shape, kpos.shape[1]
        q = qs[:, qo:qo + p * lq].view(kv, groups, p, lq, dim).permute(2, 0, 1, 3, 4).reshape(p, kv, groups * lq, dim)
        k = ks[:, ko:ko + p * lk].view(kv, p, lk, dim).transpose(0, 1)
        v = vs[:, ko:ko + p * lk].view(kv, p, lk, dim).transpose(0, 1)
        o = _attend(q, k, v, mask.unsqueeze(1), scale)  # [p, kv, groups * lq, dim]
        flat.append(o.view(p, kv, groups, lq, dim).permute(0, 3, 1, 2, 4).reshape(p * lq, heads, dim))
        qo, ko = qo + p * lq, ko + p * lk
    out.append(torch.cat(flat).index_select(0, selfplay_pieces.back))
    return torch.cat(out).unsqueeze(0), None  # [1, n, heads, dim]


# completion tokens per slice of head_scores' fp32 passes over the vocabulary (64 x 49152 x 4 B = 12.6 MB)
HEAD_CHUNK = 64


@functools.cache
def _head_function():
    """The autograd function of head_scores (built on first use: torch is imported late)."""
    import torch

    class HeadLogProbs(torch.autograd.Function):
        @staticmethod
        def forward(ctx, hidden, weight, target, dtype, metrics):
            with torch.autocast(hidden.device.type, enabled=False):
                h, w = hidden.to(dtype), weight.to(dtype)
                logits = h @ w.t()  # [tokens, vocab], in the training precision, as autocast's head gives
                n = logits.shape[0]
                lse = logits.new_empty(n, dtype=torch.float32)
                entropy, mean, top1 = lse.new_zeros(n), lse.new_zeros(n), target.new_zeros(n, dtype=torch.bool)
                for i in range(0, n, HEAD_CHUNK):
                    x = logits[i:i + HEAD_CHUNK].float()
                    lse[i:i + HEAD_CHUNK] = torch.logsumexp(x, -1)
                    if metrics:  # entropy = lse - sum(p * x); top-1 on the logits (same order and ties)
                        p = (x - lse[i:i + HEAD_CHUNK, None]).exp_()
                        entropy[i:i + HEAD_CHUNK] = lse[i:i + HEAD_CHUNK] - (p * x).sum(-1)
                        mean[i:i + HEAD_CHUNK] = x.mean(-1)
                        top1[i:i + HEAD_CHUNK] = x.argmax(-1) == target[i:i + HEAD_CHUNK]
                logp = logits.gather(1, target.unsqueeze(1)).squeeze(1).float() - lse
            ctx.save_for_backward(h, w, logits, target, lse)
            ctx.dtypes = (hidden.dtype, weight.dtype)
            ctx.mark_non_differentiable(entropy, mean, top1)
            return logp, entropy, mean, top1

        @staticmethod
        def backward(ctx, g, *_):
            h, w, logits, target, lse = ctx.saved_tensors
            with torch.autocast(h.device.type, enabled=False):
                grad = torch.empty_like(logits)  # d logp / d logits = g * (one-hot - softmax), by slices
                g = g.float()
                for i in range(0, logits.shape[0], HEAD_CHUNK):
                    gi = g[i:i + HEAD_CHUNK, None]
                    p = (logits[i:i + HEAD_CHUNK].float() - lse[i:i + HEAD_CHUNK, None]).exp_().mul_(-gi)
                    grad[i:i + HEAD_CHUNK] = p.scatter_add_(1, target[i:i + HEAD_CHUNK, None], gi)
                grad_h = (grad @ w).to(ctx.dtypes[0]) if ctx.needs_input_grad[0] else None
                grad_w = (grad.t() @ h).to(ctx.dtypes[1]) if ctx.needs_input_grad[1] else None
            return grad_h, grad_w, None, None, None

    return HeadLogProbs


def head_scores(hidden, weight, target, dtype, metrics: bool = True):
    """(log-prob of each target, entropy, mean logit, target is top-1) of hidden states [tokens,
    dim] through an LM head `weight` [vocab, dim] computed in `dtype`: TRL's numbers (bf16 logits,
    fp32 log-softmax), without the fp32 [tokens, vocab] tensors an autograd log-softmax keeps. The
    logits are kept in `dtype`; the log-normaliser, the metrics and the backward pass's softmax
    are taken over slices of HEAD_CHUNK tokens. metrics False: zeros for entropy, mean and top-1."""
    return _head_function().apply(hidden, weight, target, dtype, metrics)


def completion_only_head(model, precision: str, shared_prompt: bool = False,
                         counter: SharedPromptCounter | None = None, common_prefix: bool = True,
                         attention_pieces: bool = True, metrics: bool = True) -> bool:
    """Replace TRL's fused LM head on `model` with one that scores only completion tokens and,
    with `shared_prompt`, runs each pair's prompt once (module docstring).

    Returns False (TRL's head is kept) for models whose logits are scaled or soft-capped, which
    this plain head does not reproduce. `counter` (if given) counts shared and two-row batches.
    attention_pieces: under sdpa, a packed row's attention runs piece by piece (`pieces_attention`).
    metrics: the entropy, mean logit and top-1 TRL logs from the policy's outputs; a frozen
    reference's are never read (TRL takes only its log-probs), so False returns zeros for them.
    """
    import torch
    from trl.trainer.utils import FusedCausalLMOutput

    text_config = model.config.get_text_config()
    for name in ("final_logit_softcapping", "logit_scale", "output_multiplier", "lm_head_multiplier",
                 "logits_scaling"):
        if getattr(text_config, name, None) is not None:
            return False
    previous = model.forward  # TRL's patched forward: the plain forward when fused_lm_head is False
    bf16 = precision == "bf16"
    attention = getattr(model.config, "_attn_implementation", None)
    shared_prompt = shared_prompt and attention in MASKED_ATTENTION
    counter = counter if counter is not None else SharedPromptCounter()
    by_pieces = attention_pieces and attention == "sdpa"
    if by_pieces:
        from transformers import AttentionInterface

        AttentionInterface.register(PIECES_ATTENTION, pieces_attention)

    def score(hidden, target):
        """(log-prob of each target, entropy, mean logit, target is top-1), from its hidden state."""
        out_head = model.get_output_embeddings()
        # a weight DeepSpeed ZeRO-3 partitions (ds_id) is gathered by the module's call only
        if isinstance(out_head, torch.nn.Linear) and out_head.bias is None and not hasattr(out_head.weight, "ds_id"):
            return head_scores(hidden, out_head.weight, target, torch.bfloat16 if bf16 else torch.float32, metrics)
        with torch.autocast(hidden.device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = out_head(hidden)  # [completion tokens, vocab]
        logp_all = logits.float().log_softmax(-1)
        logp = logp_all.gather(-1, target.unsqueeze(-1)).squeeze(-1)
        if not metrics:
            zeros = logp.detach().new_zeros(logp.shape)
            return logp, zeros, zeros, zeros.bool()
        with torch.no_grad():
            entropy = -(logp_all.exp() * logp_all).sum(-1)
            mean_logits = logits.mean(-1, dtype=torch.float32)
            # the fp32 log-softmax keeps the bf16 logits' order and ties: the same top-1, 4x faster
            is_top1 = logp_all.argmax(-1) == target
        return logp, entropy, mean_logits, is_top1

    def shared(input_ids, attention_mask, labels, kwargs):
        layout = (shared_layout(input_ids, attention_mask, labels, common_prefix=common_prefix, pieces=by_pieces)
                  if attention_mask is not None else None)
        if layout is None:
            return None
        allowed = layout.allowed
        mask4d = allowed if attention == "sdpa" else torch.zeros(allowed.shape, dtype=torch.float32).masked_fill(
            ~allowed, torch.finfo(torch.float32).min)
        if layout.pieces is not None:
            # the whole mask goes along too: a forward rerun under sdpa (gradient checkpointing) uses it
            kwargs = {**kwargs, "selfplay_pieces": layout.pieces}
            model.config._attn_implementation = PIECES_ATTENTION
            counter.pieces += 1
        try:
            with torch.autocast(input_ids.device.type, dtype=torch.bfloat16, enabled=bf16):
                hidden = model.base_model(input_ids=layout.ids, attention_mask=mask4d,
                                          position_ids=layout.position_ids, **kwargs).last_hidden_state
        finally:
            model.config._attn_implementation = attention
        shape = (input_ids.shape[0], input_ids.shape[1] - 1)
        counter.shared += 1
        counter.tokens_shared += layout.tokens
        counter.tokens_two_row += layout.two_row_tokens
        if not torch.is_grad_enabled():
            counter.tokens_no_grad += layout.tokens
        return [x.new_zeros(shape).index_put(layout.out, x) for x in score(hidden[layout.gather], layout.target)]

    def forward(self, *args, fused_lm_head=False, labels=None, shift_labels=None, num_items_in_batch=None,
                **kwargs):
        if not fused_lm_head:
            return previous(*args, labels=labels, shift_labels=shift_labels, num_items_in_batch=num_items_in_batch,
                            **kwargs)
        kwargs["use_cache"] = False
        input_ids = kwargs.pop("input_ids", args[0] if args else None)
        attention_mask = kwargs.pop("attention_mask", None)
        mask = (labels[:, 1:] if shift_labels is None else shift_labels) != -100
        parts = None
        if shared_prompt and shift_labels is None and not args and input_ids is not None:
            parts = shared(input_ids, attention_mask, labels, kwargs)
        if parts is None:
            counter.two_row += 1
            if attention_mask is not None:
                counter.tokens_two_row += int(attention_mask.sum())
                if not torch.is_grad_enabled():
                    counter.tokens_no_grad += int(attention_mask.sum())
            with torch.autocast(input_ids.device.type, dtype=torch.bfloat16, enabled=bf16):
                hidden = self.base_model(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state
            if shift_labels is None:
                hidden, shift_labels = hidden[:, :-1], labels[:, 1:]
            target = shift_labels[mask]

            def full(x):  # back to [batch, seq - 1], zeros where there is no label (as TRL's head returns)
                return x.new_zeros(mask.shape).masked_scatter(mask, x)

            parts = [full(x) for x in score(hidden[mask], target)]
        log_probs, entropy, mean_logits, is_top1 = parts
        loss = -log_probs.sum() / (mask.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch)
        return FusedCausalLMOutput(loss=loss, log_probs=log_probs, entropy=entropy, log_sum_sq_probs=None,
                                   mean_logits=mean_logits, is_top1=is_top1.bool(), label_mask=mask,
                                   aux_loss=None)

    model.forward = types.MethodType(forward, model)
    return True
