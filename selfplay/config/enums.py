"""Every name-valued config field's allowed names, defined once as a `Literal`.

The schema (selfplay/config/schema.py) annotates its fields with these types, checks.py validates
against them, and each registry keys itself by them (backends, executors, launchers, pose kinds,
witnesses, train_on, precisions); tests/config/test_enums.py fails when a registry and its enum
differ. Literals, not Enum classes: config values stay plain strings in TOML, JSON and
provenance, and the names are readable straight from the type (`names(Executor)`).
"""
from __future__ import annotations

from typing import Literal, get_args

Executor = Literal["local", "ray"]  # run.executor (selfplay/run/executor.py)
BackendName = Literal["auto", "hf", "vllm", "scripted"]  # model.backend (selfplay/backends)
DType = Literal["float32", "bfloat16", "float16", "auto"]  # model.dtype; auto: the checkpoint's own
SandboxMode = Literal["bwrap", "unisolated-UNSAFE"]  # sandbox.mode (verifiers/sandbox.py)
SolveMode = Literal["cot", "pot", "mixed"]  # solve.mode; mixed samples both kinds of path
PoseKind = Literal["fewshot", "program_first", "mutation", "composition"]  # pose.prompts
Witness = Literal["auto", "program", "majority", "both", "none"]  # pose.witness
TrainOn = Literal["all", "seed", "posed"]  # guard.train_on
FlawedChosen = Literal["drop", "rejected"]  # pair.flawed_chosen (selfplay/pair/process.py)
Launcher = Literal["none", "accelerate"]  # train.launcher (selfplay/train/launch.py)
ReportTo = Literal["none", "tensorboard", "trackio", "wandb"]  # train.report_to, passed to TRL
Precision = Literal["auto", "fp32", "bf16"]  # train.precision
FileOrder = Literal["random", "easy_first"]  # seeds.file_order (selfplay_seeds.loaders.easy_first_levels)
TopP = Literal["topk", "sort"]  # vllm.top_p: how the CPU sampler finds the nucleus (selfplay/backends/top_p.py)


def names(enum: object) -> tuple[str, ...]:
    """The allowed names of a Literal enum, in their defined order."""
    return tuple(get_args(enum))
