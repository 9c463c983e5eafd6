"""Train the next round's model on DPO pairs: TRL DPOTrainer with DPO + NLL on chosen (RPO).

The loss is `loss_type=["sigmoid", "sft"]` with weights `[1.0, nll_weight]`: the sigmoid DPO loss
against a frozen reference (the round's starting model) plus the mean NLL of the chosen answer,
which keeps the policy from lowering the likelihood of correct answers (Pang et al. 2024, RPO).

The settings are the run's `[train]` section (selfplay.config.TrainSection, checked by
selfplay/config/checks.py), the per-round seed, and train_dpo's keyword settings that no config
sets (tests and benchmarks do). Pairs are length-checked and dropped, never truncated
(selfplay/train/data.py). trl / peft / datasets / torch are imported inside functions so the core
package imports fast.
"""
from __future__ import annotations

import gc
import logging
import math
import os
import resource
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Sequence

from selfplay.backends.models import load_tokenizer, resolve_model
from selfplay.config import Config, TrainSection
from selfplay.core import io
from selfplay.train.data import NoUsablePairs, filter_pairs, load_pairs, pair_order, pair_tokens, prompt_limit
from selfplay.train.dist import full_state_dict, main_process
from selfplay.train.head import SharedPromptCounter
from selfplay.train.head import completion_only_head as patch_head
from selfplay.train.heap import held_heap
from selfplay.train.precision import cast_frozen_linears, resolve_precision
from selfplay.train.reflogps import attach_ref_logps, strip_after_eos
from selfplay.train.trainer import LR_SCHEDULERS, dpo_config, progress_callback, quiet_callbacks, trainer_class

log = logging.getLogger(__name__)


def _count(v: Any) -> bool:
    return isinstance(v, int) and v >= 1


# train_dpo's keyword settings: (ok, what it must be). The [train] section's rules are checks.py's.
OPTION_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "max_prompt_length": (lambda v: v is None or (isinstance(v, int) and v >= 8), "must be None or an integer >= 8"),
    "lora_r": (_count, "must be an integer >= 1"),
    "lora_alpha": (_count, "must be an integer >= 1"),
    "logging_steps": (_count, "must be an integer >= 1"),
    "lora_dropout": (lambda v: 0 <= v < 1, "must be in [0, 1)"),
    "warmup_ratio": (lambda v: 0 <= v < 1, "must be in [0, 1)"),
    "lr_scheduler": (lambda v: v in LR_SCHEDULERS, "must be linear, cosine, constant or constant_with_warmup"),
    "weight_decay": (lambda v: v >= 0, "must be >= 0"),
    "threads": (lambda v: v is None or _count(v), "must be None or an integer >= 1"),
    "max_grad_norm": (lambda v: v > 0, "must be > 0"),
}


def check_options(cfg: TrainSection, **options: Any) -> None:
    """ValueError("train_dpo: <name>: ...") for the first of train_dpo's keyword settings out of
    range, or when the prompt limit in force is not below cfg.max_length (only an explicit
    max_prompt_length can clash: the derived one is 3/4 of it)."""
    for name, v in options.items():
        ok, what = OPTION_RULES.get(name, (lambda _: True, ""))
        if not ok(v):
            raise ValueError(f"train_dpo: {name}: {what}, got {v!r}")
    limit = prompt_limit(cfg.max_length, options.get("max_prompt_length"))
    if limit is not None and limit >= cfg.max_length:
        raise ValueError(f"train_dpo: max_prompt_length: must be < train.max_length ({cfg.max_length}), got {limit!r}")


def _models(cfg: TrainSection, base_path: str, ref_model: str | None, *, lora_r: int, lora_alpha: int,
            lora_dropout: float) -> tuple[Any, Any, str, Any]:
    """(policy, reference or None, the reference's path, peft config or None), weights in fp32."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    ref_path = resolve_model(ref_model) if ref_model else base_path
    peft_config = None
    ref = None
    if cfg.use_lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
                                 target_modules="all-linear", task_type="CAUSAL_LM")
        # With LoRA and no explicit ref, TRL disables the adapter to get the base model: no 2nd copy.
        if ref_model and ref_path != base_path:
            ref = AutoModelForCausalLM.from_pretrained(ref_path, dtype=torch.float32)
    else:
        ref = AutoModelForCausalLM.from_pretrained(ref_path, dtype=torch.float32)
    return model, ref, ref_path, peft_config


def _replace_dir(tmp: Path, target: Path) -> None:
    """Move a finished directory into place; the old target (if any) is removed only afterwards."""
    old = target.with_name(target.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


def _save(trainer: Any, use_lora: bool, base_path: str, tokenizer: Any, tmp: Path, out_dir: Path) -> Any:
    """Write the trained model (LoRA merged, cache on, generation stopping at the tokenizer's eos)
    and the tokenizer to `tmp`, then rename it to `out_dir` (rank 0 only). Returns the model."""
    from transformers import GenerationConfig

    trained = trainer.model
    if use_lora:
        trained = trained.merge_and_unload()  # a plain model: every backend loads it without peft
    trained.config.use_cache = True  # training turns the cache off; generation wants it back
    # Generation must stop at <|im_end|>: copy the base's generation config and pin eos/pad.
    try:
        gen = GenerationConfig.from_pretrained(base_path)
    except OSError:
        gen = GenerationConfig.from_model_config(trained.config)
    gen.eos_token_id = tokenizer.eos_token_id
    gen.pad_token_id = tokenizer.pad_token_id
    trained.generation_config = gen
    trained.config.eos_token_id = tokenizer.eos_token_id
    trained.config.pad_token_id = tokenizer.pad_token_id
    full_state = full_state_dict(trainer)  # every rank takes part (DeepSpeed ZeRO-3 gathers)
    if main_process():
        trained.save_pretrained(tmp, state_dict=full_state)
        tokenizer.save_pretrained(tmp)  # keeps chat_template.jinja
        _replace_dir(tmp, out_dir)
    return trained


def _mean(xs: list[float]) -> float | None:
    return float(sum(xs) / len(xs)) if xs else None


@held_heap()  # glibc's heap held from loading to saving (heap.py: 1.11x per step here)
def train_dpo(pair_files: Sequence[Path], base_model: str, out_dir: Path, cfg: TrainSection,
              ref_model: str | None = None, *, seed: int = 0, logging_dir: str | None = None,
              stats_path: Path | None = None, max_prompt_length: int | None = None, threads: int | None = None,
              warmup_ratio: float = 0.1, lr_scheduler: str = "cosine", weight_decay: float = 0.0,
              max_grad_norm: float = 1.0, lora_r: int = 16, lora_alpha: int = 32, lora_dropout: float = 0.0,
              gradient_checkpointing: bool = False, logging_steps: int = 1, group_by_length: bool = True,
              completion_only_head: bool = True, shared_prompt: bool = True,
              common_prefix: bool = True, attention_pieces: bool = True) -> dict[str, Any]:
    """Train `base_model` on the pairs in `pair_files` and save a plain HF model to `out_dir`.

    cfg: the [train] section (checked here too). seed: trainer + data order (the loop passes
    run.seed + round). logging_dir: tensorboard event files (None: <out_dir's parent>/tensorboard).
    The rest have no config field: max_prompt_length (None: 3/4 of max_length, else must be below
    it), threads (torch intra-op threads while training, restored after; None leaves torch's),
    warmup_ratio and lr_scheduler (trainer.lr_factor), weight_decay, max_grad_norm, LoRA's r,
    alpha and dropout (with cfg.use_lora), gradient_checkpointing, logging_steps,
    group_by_length (sort each optimizer step's pairs by length: less padding, same gradient),
    completion_only_head (the LM head on completion tokens only, selfplay/train/head.py) and
    shared_prompt (with it: each prompt runs once per micro-batch, not once per completion;
    head.py; the pairs of one prompt that a step holds go in one micro-batch) and common_prefix
    (with shared_prompt: a packed row holds its prompts' common first tokens once) and
    attention_pieces (a packed row's attention runs piece by piece under sdpa). cfg.group_by_prompt:
    each epoch shuffles problems, not pairs (a problem's pairs train in one step and, with
    shared_prompt, in one block; data.pair_order). cfg.engine_ref:
    the reference log-probs the sampling engine stored with the pairs, checked against a forward,
    instead of a reference forward, where they apply (train/reflogps.py). Completions end at
    their end-of-sequence token either way.

    The reference is `ref_model` if given, else the base model (the round's starting model).
    The model and tokenizer are written to `out_dir.tmp` and renamed into place. Stats are
    returned and written to `stats_path` (default `out_dir.parent / "train_stats.json"`).
    Raises NoUsablePairs when no usable pair remains (the loop then marks the round not trained).
    """
    options = dict(max_prompt_length=max_prompt_length, threads=threads, warmup_ratio=warmup_ratio,
                   lr_scheduler=lr_scheduler, weight_decay=weight_decay, max_grad_norm=max_grad_norm,
                   lora_r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
                   gradient_checkpointing=gradient_checkpointing, logging_steps=logging_steps,
                   group_by_length=group_by_length, completion_only_head=completion_only_head,
                   shared_prompt=shared_prompt, common_prefix=common_prefix, attention_pieces=attention_pieces)
    Config(train=cfg).validate()  # the [train] rules of selfplay/config/checks.py
    check_options(cfg, **options)
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    stats_path = Path(stats_path) if stats_path is not None else out_dir.parent / "train_stats.json"

    import torch
    from datasets import Dataset

    base_path = resolve_model(base_model)
    tokenizer = load_tokenizer(base_path)
    kept, counts = filter_pairs(load_pairs(pair_files), tokenizer, cfg.max_length, max_prompt_length)
    if not kept:
        raise NoUsablePairs(f"no usable DPO pairs in {[str(f) for f in pair_files]}: {counts}")

    cuda = torch.cuda.is_available()
    precision = resolve_precision(cfg.precision, cuda)
    # The order is ours (seeded, then fed in sequence): pairs of one optimizer step can be sorted
    # by length without changing which pairs make up each step.
    step_pairs = cfg.batch_size * cfg.grad_accum
    per_epoch = math.ceil(math.ceil(len(kept) / cfg.batch_size) / cfg.grad_accum)
    total_steps = cfg.max_steps if cfg.max_steps > 0 else math.ceil(cfg.epochs * per_epoch)
    n_slots = cfg.max_steps * step_pairs if cfg.max_steps > 0 else math.ceil(cfg.epochs * len(kept))
    widths = [pair_tokens(p, tokenizer) for p in kept]
    lengths = [packed if shared_prompt else longer for longer, packed in widths]
    # with shared_prompt, the pairs of one prompt that a step holds share a micro-batch (one block)
    keys = [io.dumps(p.prompt).decode() for p in kept] if cfg.group_by_prompt or shared_prompt else None
    order = pair_order(lengths, step_pairs, n_slots, seed, group_by_length, keys=keys, batch=cfg.batch_size,
                       by_problem=cfg.group_by_prompt)
    dataset = Dataset.from_list([{"prompt": kept[i].prompt, "chosen": kept[i].chosen,
                                  "rejected": kept[i].rejected} for i in order])
    model, ref, ref_path, peft_config = _models(cfg, base_path, ref_model, lora_r=lora_r, lora_alpha=lora_alpha,
                                                lora_dropout=lora_dropout)
    if ref is not None and precision == "bf16":
        cast_frozen_linears(ref, torch.bfloat16)  # the same reference log-probs, without a cast per forward

    work = out_dir.with_name(out_dir.name + ".work")
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(tmp, ignore_errors=True)
    # Warmup in whole steps, rounded down (tiny runs get none); lr_factor starts warmup above 0.
    warmup_steps = int(warmup_ratio * total_steps)
    args = dpo_config(cfg, str(work), total_steps=total_steps, warmup_steps=warmup_steps, seed=seed,
                      precision=precision, cuda=cuda, lr_scheduler=lr_scheduler, weight_decay=weight_decay,
                      max_grad_norm=max_grad_norm, gradient_checkpointing=gradient_checkpointing,
                      logging_steps=logging_steps)
    progress = progress_callback()
    trainer = trainer_class(total_steps, warmup_steps, lr_scheduler)(
        model=model, ref_model=ref, args=args, train_dataset=dataset, processing_class=tokenizer,
        peft_config=peft_config, callbacks=[progress])
    head = "trl"
    shared = SharedPromptCounter()
    if completion_only_head:
        policy = trainer.model.get_base_model() if cfg.use_lora else trainer.model
        patched = [patch_head(m, precision, shared_prompt, shared, common_prefix, attention_pieces,
                              metrics=m is policy) for m in (policy, trainer.ref_model) if m is not None]
        head = "completion" if all(patched) else "trl"
    trainer.train_dataset = strip_after_eos(trainer.train_dataset, tokenizer.eos_token_id)
    ref_source: dict[str, Any] = {"engine": 0, "forward": len(order)}  # TRL's reference forward on every step
    t_ref = time.perf_counter()
    if cfg.engine_ref:
        ref_source = attach_ref_logps(trainer, [kept[i] for i in order], ref_path)
    ref_source["seconds"] = round(time.perf_counter() - t_ref, 3)  # before the steps: not in train_seconds
    quiet_callbacks(trainer, cfg.report_to, logging_dir or str(out_dir.parent / "tensorboard"))
    prev_threads = torch.get_num_threads()
    if threads:
        # On cores shared with other jobs, 2 OpenMP threads spin-wait on each other: measured here
        # 73 s/step with 2 threads vs 17 s/step with 1 (7 s/step with 2 on an idle machine).
        torch.set_num_threads(threads)
    try:
        log.info("dpo: %d pairs (%s) -> %s", len(kept), counts, out_dir)
        t_train = time.perf_counter()
        result = trainer.train()
        train_seconds = time.perf_counter() - t_train
        trained = _save(trainer, cfg.use_lora, base_path, tokenizer, tmp, out_dir)
    finally:  # a failed run leaves no half-written model or checkpoints behind
        if main_process():
            shutil.rmtree(work, ignore_errors=True)
            shutil.rmtree(tmp, ignore_errors=True)
        torch.set_num_threads(prev_threads)

    history = [h for h in trainer.state.log_history if "loss" in h]
    steps = int(trainer.state.global_step)
    # Free both models and the optimizer state now: the loop evaluates next in this process, and
    # the Trainer's reference cycles would otherwise keep ~4 GB alive until a gc pass.
    del trainer, trained, model, ref
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    accs = [h["rewards/accuracies"] for h in history if "rewards/accuracies" in h]
    margins = [h["rewards/margins"] for h in history if "rewards/margins" in h]
    stats: dict[str, Any] = {
        **counts,
        "n_train": len(kept),
        # what training saw: distinct pairs of the training set, and pair slots (pairs x epochs)
        "pairs_seen": len(set(order)), "pair_slots": len(order), "pairs_per_step": step_pairs,
        "pair_tokens": sum(widths[i][1] for i in order),  # prompt + chosen + rejected of every slot
        "steps": steps, "warmup_steps": warmup_steps,
        "train_loss": float(result.training_loss),
        # TRL's names; the bare key is the last logged value, _mean averages the logged history
        "rewards/accuracies": accs[-1] if accs else None, "rewards/accuracies_mean": _mean(accs),
        "rewards/margins": margins[-1] if margins else None, "rewards/margins_mean": _mean(margins),
        "seconds": time.perf_counter() - t0,
        "train_seconds": train_seconds,
        "seconds_per_step": train_seconds / steps if steps else None,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # KiB on Linux
        "device": "cuda" if cuda else "cpu", "threads": threads or prev_threads,
        "precision": precision, "lm_head": head, "group_by_length": group_by_length,
        "group_by_prompt": cfg.group_by_prompt,
        # reference log-probs of the pair slots: from the sampling engine / from a forward
        "ref_logps": ref_source,
        # forwards (policy and reference micro-batches) run with each pair's prompt once / twice
        "shared_prompt": {"shared": shared.shared, "two_row": shared.two_row, "tokens": shared.tokens_shared,
                          "two_row_tokens": shared.tokens_two_row, "no_grad_tokens": shared.tokens_no_grad,
                          "pieces": shared.pieces},
        "step_seconds": progress.step_seconds,
        "tokens": history[-1].get("num_tokens") if history else None,  # TRL: real tokens seen
        "base_model": base_path, "ref_model": ref_path, "out_dir": str(out_dir),
        "pair_files": [str(f) for f in pair_files],
        "config": {**asdict(cfg), "seed": seed, "logging_dir": logging_dir, **options},
        "history": history,
    }
    if main_process():
        io.write_json(stats_path, stats)
    return stats
