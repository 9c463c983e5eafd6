"""Training precision (train.precision): auto picks bf16 autocast where the hardware multiplies
bf16 natively (a CUDA GPU with bf16, a CPU with AVX-512 BF16 or AMX), else fp32. bf16 keeps fp32
master weights and optimizer state."""
from __future__ import annotations

from pathlib import Path

from selfplay.config.enums import Precision, names

PRECISIONS = names(Precision)  # train.precision (selfplay/config/enums.py)


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
    """"fp32" or "bf16" for train.precision: auto picks bf16 where the hardware has it."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    if requested != "auto":
        return requested
    if cuda:
        import torch

        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_bf16() else "fp32"


def cast_frozen_linears(model, dtype) -> int:
    """Store a frozen model's linear weights in `dtype` once (the reference of bf16 training), so
    autocast no longer casts them on every forward: its linears cast fp32 weights to the same bf16
    values, so the outputs are unchanged. The output embedding stays: it is the input embedding's
    weight too (tied), whose lookup autocast leaves in fp32. Returns the weights cast."""
    import torch

    skip = model.get_output_embeddings()
    n = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and module is not skip and module.weight.dtype != dtype:
            module.weight.requires_grad_(False)
            module.weight.data = module.weight.data.to(dtype)
            if module.bias is not None:
                module.bias.requires_grad_(False)
                module.bias.data = module.bias.data.to(dtype)
            n += 1
    return n
