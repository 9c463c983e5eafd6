"""Ranks of a distributed launch (`accelerate launch`, torchrun): every rank trains, only rank 0
writes the model and the stats (selfplay/train/launch.py). Outside a launch this process is
rank 0 of 1."""
from __future__ import annotations

import os
from typing import Any


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def main_process() -> bool:
    """False on every rank but 0 of a distributed launch."""
    return rank() == 0


def join_launch() -> None:
    """Join the launch's process group before the Trainer does: gloo on CPU (accelerate's
    MULTI_CPU; PartialState() alone would see no CUDA and run each rank alone), nccl on GPUs."""
    import torch
    from accelerate import PartialState

    PartialState(cpu=not torch.cuda.is_available())


def broadcast(obj: Any) -> Any:
    """rank 0's `obj` on every rank of the launch."""
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def full_state_dict(trainer: Any) -> dict[str, Any] | None:
    """The whole model's weights for saving under DeepSpeed ZeRO-3 (gathered from every rank, so
    every rank must call this); None otherwise (save_pretrained reads the model itself)."""
    if not getattr(trainer, "is_deepspeed_enabled", False):
        return None
    return trainer.accelerator.get_state_dict(trainer.deepspeed)
