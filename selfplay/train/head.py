"""A completion-only LM head for TRL's DPOTrainer (train.completion_only_head, on by default).

TRL's fused head projects every position through the LM head on a device without Triton (any
CPU); this one projects only the completion tokens (tests/train/test_train_speed.py checks it gives
TRL's log-probs, entropy, mean logits and top-1).
"""
from __future__ import annotations

import types


def completion_only_head(model, precision: str) -> bool:
    """Replace TRL's fused LM head on `model` with one that scores only completion tokens.

    TRL 1.16 (add_fused_lm_head) projects every position, prompt and padding included, through the
    LM head when the device has no Triton (CPU); prompts are ~70% of the default job's tokens and
    the head (49152 x 576) is ~20% of SmolLM2-135M's forward FLOPs. Here the backbone runs as
    before and only positions with a label (the completion) go through the head and an fp32
    log-softmax. Returns False (TRL's head is kept) for models whose logits are scaled or
    soft-capped, which this plain head does not reproduce.
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

    def forward(self, *args, fused_lm_head=False, labels=None, shift_labels=None, num_items_in_batch=None,
                **kwargs):
        if not fused_lm_head:
            return previous(*args, labels=labels, shift_labels=shift_labels, num_items_in_batch=num_items_in_batch,
                            **kwargs)
        kwargs["use_cache"] = False
        device = self.get_output_embeddings().weight.device
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            hidden = self.base_model(*args, **kwargs).last_hidden_state
            if shift_labels is None:
                hidden, shift_labels = hidden[:, :-1], labels[:, 1:]
            mask = shift_labels != -100
            target = shift_labels[mask]
            logits = self.get_output_embeddings()(hidden[mask])  # [completion tokens, vocab]
        logp_all = logits.float().log_softmax(-1)
        logp = logp_all.gather(-1, target.unsqueeze(-1)).squeeze(-1)
        with torch.no_grad():
            entropy = -(logp_all.exp() * logp_all).sum(-1)
            mean_logits = logits.float().mean(-1)
            is_top1 = logits.argmax(-1) == target

        def full(x):  # back to [batch, seq - 1], zeros where there is no label (as TRL's head returns)
            return x.new_zeros(mask.shape).masked_scatter(mask, x)

        log_probs = full(logp)
        loss = -log_probs.sum() / (mask.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch)
        return FusedCausalLMOutput(loss=loss, log_probs=log_probs, entropy=full(entropy), log_sum_sq_probs=None,
                                   mean_logits=full(mean_logits), is_top1=full(is_top1), label_mask=mask,
                                   aux_loss=None)

    model.forward = types.MethodType(forward, model)
    return True
