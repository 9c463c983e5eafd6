"""DPO's reference log-probs from the sampling engine (issue 26): no reference forward for the
round's own pairs.

The reference of a round's DPO is the round's starting model, the model that sampled the round's
paths. vLLM returns each sampled token's log-prob from the raw logits (no temperature, no top-p),
so a completion that ended on the end-of-sequence token already carries its reference log-prob:
`Completion.ref_logprob`, stored with the pair as `chosen_ref_logprob` / `rejected_ref_logprob`
next to a digest of the prompt + completion token ids (`*_ref_key`).

`attach_ref_logps` gives TRL's trainer a `ref_chosen_logps` / `ref_rejected_logps` column for
every pair (TRL then skips its reference forward):
- from the engine when the pair's sampling model is this training's reference and the ids TRL
  tokenized are the ids the engine sampled (same digest), for both sides;
- from a reference forward for every other pair (earlier rounds' pairs, step pairs, paths cut by
  a stop string or the token limit, another backend);
- a check: the first `check` engine pairs also get the forward; if any side differs by more
  than the tolerance (bf16 engine against the trainer's forward), every pair takes the forward.

Every completion ends at its end-of-sequence token here (`strip_after_eos`): the chat template
adds a newline after it that no sampler ever generates, and the engine has no log-prob for it.
"""
from __future__ import annotations

import logging
from typing import Any, Sequence

from selfplay.backends.models import resolve_model
from selfplay.core.provenance import token_key
from selfplay.core.records import Pair

log = logging.getLogger(__name__)

# |engine - forward| per sequence, in nats, allowed: 0.5 + 0.03 per token. vLLM's CPU engine keeps
# the residual stream and the logits in bf16 (a logit of 20 rounds to 0.125), the trainer's autocast
# keeps the residual in fp32. Measured on the embedded model's own paths (the default job, vLLM CPU
# against the trainer's bf16 autocast): worst 0.90 nats on a 36-token path, 1.38 on ~120 tokens.
# Log-probs taken after temperature 0.8, or another model's, differ by several nats.
TOLERANCE_PER_TOKEN = 0.03
TOLERANCE = 0.5


def strip_after_eos(dataset: Any, eos_id: int | None) -> Any:
    """TRL's tokenized dataset with each completion cut after its first `eos_id` (kept)."""
    if eos_id is None:
        return dataset

    def cut(ids: list[int]) -> list[int]:
        return ids[:ids.index(eos_id) + 1] if eos_id in ids else ids

    return dataset.map(lambda ex: {"chosen_ids": cut(ex["chosen_ids"]), "rejected_ids": cut(ex["rejected_ids"])},
                       desc="Ending completions at the eos token")


def engine_values(pairs: Sequence[Pair], rows: Sequence[dict[str, Any]],
                  ref_path: str) -> list[tuple[float, float] | None]:
    """Per pair: (chosen, rejected) reference log-probs from the engine, or None when either side
    has none, its sampling model is not `ref_path`, or its digest differs from TRL's ids."""
    out: list[tuple[float, float] | None] = []
    ref = resolve_model(ref_path)
    same: dict[str, bool] = {}  # each distinct sampling model resolved once
    for pair, row in zip(pairs, rows):
        md = pair.metadata
        model = md.get("model")
        got = None
        if model and str(model) not in same:
            same[str(model)] = resolve_model(str(model)) == ref
        if model and same[str(model)]:
            sides = []
            for side in ("chosen", "rejected"):
                lp, key = md.get(f"{side}_ref_logprob"), md.get(f"{side}_ref_key")
                if lp is None or key != token_key([*row["prompt_ids"], *row[f"{side}_ids"]]):
                    break
                sides.append(float(lp))
            else:
                got = (sides[0], sides[1])
        out.append(got)
    return out


def attach_ref_logps(trainer: Any, pairs: Sequence[Pair], ref_path: str, *, check: int = 8) -> dict[str, Any]:
    """Give every row of trainer.train_dataset (in the order of `pairs`) its reference log-probs
    and switch the trainer to them (module docstring). Returns what was used, for train_stats."""
    ds = trainer.train_dataset
    if len(ds) != len(pairs):
        raise ValueError(f"train: the tokenized dataset has {len(ds)} rows for {len(pairs)} pairs")
    rows = ds.select_columns(["prompt_ids", "chosen_ids", "rejected_ids"]).to_list()
    engine = engine_values(pairs, rows, ref_path)
    have = [i for i, v in enumerate(engine) if v is not None]
    checked = have[:check]
    need = [i for i, v in enumerate(engine) if v is None] + checked
    forward = dict(zip(sorted(need), _forward(trainer, sorted(need))))
    worst = worst_nats = 0.0
    for i in checked:
        n_tok = (len(rows[i]["chosen_ids"]), len(rows[i]["rejected_ids"]))
        for e, f, n in zip(engine[i], forward[i], n_tok):
            worst = max(worst, abs(e - f) / (TOLERANCE + TOLERANCE_PER_TOKEN * n))
            worst_nats = max(worst_nats, abs(e - f))
    agreed = worst <= 1.0
    if not agreed:
        log.warning("train: the engine's reference log-probs differ from a reference forward (%.2fx the tolerance "
                    "on %d checked pairs); every pair takes the forward", worst, len(checked))
        rest = [i for i in have if i not in forward]
        forward.update(zip(rest, _forward(trainer, rest)))
    use_engine = [agreed and v is not None for v in engine]
    values = [engine[i] if use_engine[i] else forward[i] for i in range(len(pairs))]
    trainer.train_dataset = (ds.add_column("ref_chosen_logps", [v[0] for v in values])
                             .add_column("ref_rejected_logps", [v[1] for v in values]))
    trainer.precompute_ref_logps = True
    n_engine = sum(use_engine)
    return {"engine": n_engine, "forward": len(pairs) - n_engine, "checked": len(checked),
            "check_worst_nats": round(worst_nats, 4), "check_worst_vs_tolerance": round(worst, 4),
            "engine_agreed": agreed}


def _forward(trainer: Any, indices: list[int]) -> list[tuple[float, float]]:
    """Reference log-probs of these rows from the trainer's reference forward, in micro-batches."""
    if not indices:
        return []
    import torch

    ds = trainer.train_dataset
    keep = ["prompt_ids", "chosen_ids", "rejected_ids"]
    model = trainer.ref_model if trainer.ref_model is not None else trainer.model
    # in the training order and micro-batches: the reference then sees each pair in the layout the
    # policy does (the same packed rows, so the first step's margins start at 0 in bf16 too)
    size = trainer.args.per_device_train_batch_size
    out: list[tuple[float, float]] = []
    was_training = model.training
    model.eval()
    try:
        for k in range(0, len(indices), size):
            batch = trainer.data_collator(ds.select(indices[k:k + size]).select_columns(keep).to_list())
            batch = {name: v.to(trainer.accelerator.device) if isinstance(v, torch.Tensor) else v
                     for name, v in batch.items()}
            chosen, rejected = trainer.compute_ref_log_probs(model, batch)
            out += list(zip(chosen.float().tolist(), rejected.float().tolist()))
    finally:
        model.train(was_training)
    return out
