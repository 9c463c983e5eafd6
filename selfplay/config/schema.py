"""Run configuration schema: one dataclass per TOML section, every field with a default, so an
empty file (or no file) is a valid config. Name-valued fields are typed with the Literal enums of
selfplay/config/enums.py; loading (TOML, dicts, dotted overrides) is selfplay/config/load.py and
the value rules are selfplay/config/checks.py. The resolved config is written next to the data
(OUT/config.json). The `[train]` section is the config the trainer takes (selfplay/train).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from selfplay.config.checks import checks
from selfplay.config.enums import (
    BackendName,
    DType,
    Executor,
    FileOrder,
    FlawedChosen,
    Launcher,
    PoseKind,
    Precision,
    ReportTo,
    SandboxMode,
    SolveMode,
    TopP,
    TrainOn,
    Witness,
)


@dataclass
class RunConfig:
    seed: int = 0
    rounds: int = 1
    out: str = "runs/default"
    # where pose and solve + verify run (selfplay/run/executor.py, docs/scale.md): local = this
    # process; ray = Ray actors, each with one backend and one verifier pool. None of these four
    # changes the data (per-sample seeds), so a run may resume with other values.
    executor: Executor = "local"
    ray_address: str = ""  # ray: "" starts Ray in this process; "auto" or HOST:PORT joins a cluster
    workers: int = 0  # ray: actors; 0 = one per GPU of the cluster, else cluster CPUs // worker_cpus
    worker_cpus: int = 1  # ray: CPUs per actor (its torch threads and verifier processes)


@dataclass
class ModelConfig:
    name: str = "default"  # "default" = embedded SmolLM2-135M-Instruct; or any HF id / local dir
    backend: BackendName = "auto"  # auto (vllm when installed, else hf) | hf | vllm
    dtype: DType = "float32"
    batch_size: int = 64  # rows per forward pass (hf backend)


@dataclass
class VLLMSection:
    """The vLLM engine's settings (backend vllm, or auto when vllm is installed); 0 = vLLM's own
    default. docs/vllm.md has the measurements behind the CPU defaults."""
    # CPU: cores the model's OpenMP threads are bound to. "all": every core this process may use,
    # none reserved; "vllm": vLLM's default (one core reserved for the scheduler); or a list such
    # as "0-3" or "0,2". $VLLM_CPU_OMP_THREADS_BIND, when set, wins.
    cpu_bind: str = "all"
    kv_cache_gib: float = 0.0  # CPU: KV cache size in GiB; 0 = 3 GiB (or $VLLM_CPU_KVCACHE_SPACE)
    max_num_seqs: int = 0  # sequences decoded together; 0 = vLLM's default (256)
    max_num_batched_tokens: int = 0  # tokens per engine step; 0 = vLLM's default
    # KV-cache block in tokens, the unit prefix caching reuses; 0 = 32 on CPU (vLLM's CPU default,
    # 128, leaves prompts under 128 tokens uncached), vLLM's default on GPU
    block_size: int = 0
    gpu_memory_utilization: float = 0.0  # GPU: fraction of its memory for the engine; 0 = vLLM's (0.9)
    tensor_parallel_size: int = 1  # GPUs one engine spans (model too big for one GPU)
    # CPU: how the sampler finds a top-p nucleus. "topk": from each row's 128 most likely tokens
    # (exact; a row they do not settle is sorted); "sort": vLLM's own full sort of the vocabulary,
    # which took most of a decode step here (selfplay/backends/top_p.py, docs/vllm.md)
    top_p: TopP = "topk"


@dataclass
class SeedsConfig:
    problems: int = 48  # procedural seed problems per round
    generators: list[str] = field(default_factory=lambda: ["add", "sub", "word_add", "word_sub", "two_step"])
    levels: list[int] = field(default_factory=lambda: [1])
    # the seed curriculum (selfplay/run/curriculum.py): a generator whose problems at its highest
    # level were solved >= widen_at last round also gets the next level (up to max_level)
    curriculum: bool = True
    widen_at: float = 0.35
    max_level: int = 4
    # JSONL files (GSM8K or question/answer), or a shipped one by name: "gsm8k_train" (GSM8K's
    # train split, MIT: seeds/data/LICENSE-GSM8K.md)
    files: list[str] = field(default_factory=list)
    file_problems: int = 0  # problems drawn from the files per round
    # random: each round draws file_problems from the whole file; easy_first (GSM8K-format files):
    # a problem's level is the rank of its worked solution's step count (level 1 = fewest steps),
    # and the seed curriculum widens each file's levels like a generator's (curriculum = true)
    file_order: FileOrder = "random"
    hf_datasets: list[str] = field(default_factory=list)  # e.g. "openai/gsm8k:main:train"


@dataclass
class PoseConfig:
    """Self-play posing (selfplay/pose/posing.py): overgenerate, check, witness, keep up to a target."""

    enabled: bool = True
    # posed problems to keep per round (after the posing checks, the witness and dedup); attempts
    # go on in batches until it is met or the budget (attempts, max_seconds) is spent. 0 = make
    # every attempt and keep all that pass
    target: int = 0
    attempts: int = 16  # budget: posing attempts per round at most
    batch: int = 32  # attempts per generation call
    max_seconds: float = 0.0  # budget: stop starting batches after this long (0 = no limit)
    # prompt kinds, used in turn: fewshot | program_first | mutation | composition (prompts.py)
    prompts: list[PoseKind] = field(default_factory=lambda: ["fewshot", "program_first"])
    # the gold's second witness: program (a second program, written from the question alone,
    # prints the same value), majority (the majority of the solver's answers equals it), both,
    # auto (a second program, then the exact value of the expression the question states, else
    # the solver majority), none. A stated expression's value must equal the gold in every mode
    # but none. Disagreements are dropped and counted as golds_disagree
    witness: Witness = "auto"
    witness_temperature: float = 0.7
    # ask for harder problems (larger numbers, more steps) when the last round's posed problems
    # were solved above filters.band_high; easier when below band_low (level >= 0)
    curriculum: bool = True
    shots: int = 3
    # seed-shot sets per kind and call within a batch: attempts that share a set share their
    # prompt's prefix, which the engine's prefix cache then skips (0: fresh shots per attempt)
    shot_sets: int = 16
    temperature: float = 0.9
    top_p: float = 0.95
    max_new_tokens: int = 160
    # false: a posed question without a program is kept, its gold decided by majority vote of
    # its sampled paths (R-Zero style; pair.pseudo_agreement); true: it is rejected (no_program)
    require_program: bool = True


@dataclass
class SolveConfig:
    samples: int = 8
    temperature: float = 0.8
    top_p: float = 0.95
    max_new_tokens: int = 192
    # hf: problems per generate call, 0 = fill one (batch_size rows); vllm (continuous generation):
    # at most this many problems in the engine at once, 0 = every problem at once
    batch_problems: int = 0
    # cot: reasoning in words, final answer in \\boxed{}; pot (program of thought): a Python program
    # that prints the answer, run in the sandbox; mixed: `samples` paths of each kind per problem,
    # paired only with paths of the same kind
    mode: SolveMode = "cot"


@dataclass
class SandboxSection:
    """The code sandbox (verifiers/sandbox.py) that runs posed programs and pot solutions."""

    mode: SandboxMode = "bwrap"  # bwrap | unisolated-UNSAFE (no namespaces: model code can reach host files)
    timeout: float = 3.0  # seconds of wall clock per program
    # importable besides the standard library (bound read-only, preloaded in the fork server);
    # add names to extend the allow-list
    libraries: list[str] = field(default_factory=lambda: ["sympy", "numpy", "mpmath"])


@dataclass
class VerifyConfig:
    timeout: float = 3.0
    workers: int = 0  # 0 = one per core
    # drop pairs that math-verify, a second independent checker, disputes (selfplay/verify/crosscheck.py)
    crosscheck: bool = False


@dataclass
class PairConfig:
    max_pairs_per_problem: int = 4
    # problems without a trusted gold (a seed-file line with no answer; a posed problem without a
    # program when pose.require_program is false) are labelled by majority vote of their paths,
    # kept only when the top answer has at least this share (selfplay/pair/pseudo.py)
    pseudo_agreement: float = 0.5
    # a chosen path must be right all the way: no false arithmetic statement and, when the gold is
    # a number, an answer that is a value, not a computation left undone ("3 + 7")
    # (selfplay/pair/process.py, verifiers/steps.py; docs/filters.md)
    clean_chosen: bool = True
    flawed_chosen: FlawedChosen = "drop"  # drop | rejected: a flawed right-answer path may be a rejected
    require_boxed: bool = False  # a chosen cot path must write its answer in \boxed{}
    step_pairs: bool = False  # also write step-level pairs (Step-DPO style) for the rejected with a known first error


@dataclass
class TrainSection:
    """DPO + NLL between rounds (see selfplay/train/dpo.py and docs/training.md)."""

    enabled: bool = True
    beta: float = 0.1
    learning_rate: float = 1e-5
    epochs: int = 1
    batch_size: int = 2
    grad_accum: int = 2
    max_length: int = 512
    nll_weight: float = 1.0
    max_steps: int = -1
    use_lora: bool = False
    # each epoch shuffles problems, not pairs: a problem's pairs in one step and one prompt block.
    # Faster (each prompt runs once), but a step then holds 2-3 problems, not ~8: in-distribution
    # accuracy after two rounds fell 11 points against false (docs/results.md), so false
    group_by_prompt: bool = False
    # DPO's reference log-probs from the sampling engine where they apply (checked against a forward)
    engine_ref: bool = True
    report_to: ReportTo = "none"  # none | tensorboard | trackio | wandb: TRL's experiment tracking
    precision: Precision = "auto"  # auto (bf16 where the CPU/GPU has it, else fp32) | fp32 | bf16
    # none: train in this process; accelerate: `accelerate launch --num_processes N
    # [--config_file F]` runs the DPO step (DDP; DeepSpeed ZeRO-2/3 through F), docs/scale.md
    launcher: Launcher = "none"
    num_processes: int = 1  # accelerate: processes (one per GPU); each takes batch_size pairs
    accelerate_config: str = ""  # accelerate: an `accelerate config` YAML file ("" = none)


@dataclass
class FiltersConfig:
    """Quality filters between verification and training (docs/filters.md)."""

    enabled: bool = True
    dedup_posed: bool = True  # posed vs seeds, held-out sets, earlier rounds (MinHash)
    near_threshold: float = 0.8
    solve_band: bool = True  # posed problems: keep solve rates in [band_low, band_high]
    band_low: float = 0.125
    band_high: float = 0.875
    hygiene: bool = True  # unfinished, no final answer, repetition loops, over-long
    max_chars: int = 4000
    perplexity: bool = True  # mean token log-prob outside [min_logprob, max_logprob]
    min_logprob: float = -3.0
    max_logprob: float = -0.05
    keep_fraction: float = 1.0  # keep the best fraction of pairs by quality score


@dataclass
class GuardConfig:
    """Collapse guard: accumulate rounds, keep a floor of seed-derived pairs (enabled), and warn on
    diversity loss (always, at warn_fraction)."""

    enabled: bool = True
    accumulate: str = "all"  # all | current | last:N (guard off: current round only)
    seed_fraction: float = 0.5  # floor on the share of seed-derived (non-posed) pairs
    warn_fraction: float = 0.7  # warn when a diversity metric falls below this x round 0's
    # which pairs train: all | seed (seed-derived only) | posed (posed only; with seed_fraction 0
    # for the ablation in docs/posing.md). Applies with the guard on or off
    train_on: TrainOn = "all"


@dataclass
class EvalSection:
    """Held-out evaluation of the starting model and every round's model."""

    enabled: bool = True
    heldout_problems: int = 64  # held-out procedural split: never posed from, never trained on
    files: list[str] = field(default_factory=list)  # extra JSONL sets (GSM8K, SVAMP, MAWPS, q/a)
    file_limit: int = 100
    samples: int = 4  # sampled paths per problem for maj@k / pass@k (1 = greedy only)
    max_new_tokens: int = 192
    # out-of-distribution sets (selfplay_seeds/ood.py): ood_arith, ood_word, svamp; forms no
    # training generator, seed template or posing example uses, so a gain there transfers
    ood: bool = True
    ood_problems: int = 100  # per out-of-distribution set
    ood_samples: int = 1  # sampled paths per problem on the built-in ood sets (1 = greedy only)


@dataclass
class Config:
    run: RunConfig = field(default_factory=RunConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    vllm: VLLMSection = field(default_factory=VLLMSection)
    seeds: SeedsConfig = field(default_factory=SeedsConfig)
    pose: PoseConfig = field(default_factory=PoseConfig)
    solve: SolveConfig = field(default_factory=SolveConfig)
    sandbox: SandboxSection = field(default_factory=SandboxSection)
    verify: VerifyConfig = field(default_factory=VerifyConfig)
    pair: PairConfig = field(default_factory=PairConfig)
    train: TrainSection = field(default_factory=TrainSection)
    eval: EvalSection = field(default_factory=EvalSection)
    filters: FiltersConfig = field(default_factory=FiltersConfig)
    guard: GuardConfig = field(default_factory=GuardConfig)

    def validate(self) -> "Config":
        """Check every field against its meaning (not only its type): the first bad one raises
        ValueError("config: <field>: <what it must be>"), before any stage runs. The rules are a
        table in selfplay/config/checks.py (one line per field; add a new field's rule there)."""
        for name, ok, what in checks(self):
            if not ok:
                raise ValueError(f"config: {name}: {what}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
