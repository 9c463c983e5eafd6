"""The meaning of every config field, as a table of rules: Config.validate walks `checks(cfg)`
and raises ValueError("config: <field>: <what it must be>") at the first rule that fails.

Types are checked when the TOML is read (selfplay/config/load.py); these rules check values: counts,
probabilities, timeouts, file paths, dataset specs, and combinations that would make a run
silently do something other than what its config says (files loaded but never drawn from, posing
with no shots, evaluation with no set).
"""
from __future__ import annotations

import dataclasses
import importlib.util
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

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
    names,
)
from selfplay.core.evalsets import OOD_SETS
from selfplay_seeds.loaders import easy_first_levels, load_jsonl_problems, parse_hf_spec, seed_file
from selfplay_seeds.procedural import GENERATORS

if TYPE_CHECKING:
    from selfplay.config.schema import Config

BACKENDS = names(BackendName)
DTYPES = names(DType)
SANDBOXES = names(SandboxMode)
SOLVE_MODES = names(SolveMode)
EXECUTORS = names(Executor)
LAUNCHERS = names(Launcher)
REPORT_TO = names(ReportTo)
POSE_KINDS = names(PoseKind)
WITNESSES = names(Witness)
TRAIN_ON = names(TrainOn)
FLAWED_CHOSEN = names(FlawedChosen)
PRECISIONS = names(Precision)
FILE_ORDERS = names(FileOrder)
TOP_P = names(TopP)
Check = tuple[str, bool, str]


def _file_error(path: str | Path, *, unlabelled: bool, limit: int | None = None, easy_first: bool = False) -> str:
    """The one-line reason a problems file would be refused when the run reads it ("" if none), so
    the run stops before it writes anything (selfplay_seeds.loaders.load_jsonl_problems reads it then;
    easy_first: every line needs worked steps, selfplay_seeds.loaders.easy_first_levels)."""
    try:
        problems = load_jsonl_problems(path, unlabelled=unlabelled, limit=limit)
        if easy_first:
            easy_first_levels(problems)
    except ValueError as e:
        return str(e)
    return ""


def _finite(cfg: Config) -> Iterator[Check]:
    """TOML allows nan and inf; no float field means anything with them (nan even passes `> 0`
    checks by failing every comparison the wrong way round)."""
    for sec in dataclasses.fields(cfg):
        part = getattr(cfg, sec.name)
        for f in dataclasses.fields(part):
            v = getattr(part, f.name)
            if isinstance(v, float):
                yield f"{sec.name}.{f.name}", math.isfinite(v), f"must be a finite number, got {v}"


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _hf_spec_error(spec: str) -> str:
    """parse_hf_spec's one-line complaint about `spec`, "" when it is well formed."""
    try:
        parse_hf_spec(spec)
    except ValueError as e:
        return str(e)
    return ""


def _core_list(text: str) -> bool:
    """A CPU list as vLLM and taskset read it: "0-3", "0,2", "0-1,4"."""
    return re.fullmatch(r"\d+(-\d+)?(,\d+(-\d+)?)*", text) is not None


def checks(c: Config) -> Iterator[Check]:
    """(field, ok, what it must be) in order. A generator, so a later rule may rely on an earlier
    one having passed (e.g. generator names are known before they are used)."""
    yield from _finite(c)
    r, m, s, po, so, t, f, g, e = c.run, c.model, c.seeds, c.pose, c.solve, c.train, c.filters, c.guard, c.eval
    yield "run.seed", r.seed >= 0, "must be >= 0 (numpy and torch take unsigned seeds)"
    yield "run.rounds", r.rounds >= 1, "must be >= 1"
    yield "run.out", bool(r.out.strip()), "must be a directory path"
    yield "run.executor", r.executor in EXECUTORS, f"must be one of {', '.join(EXECUTORS)}"
    yield "run.executor", r.executor != "ray" or _installed("ray"), \
        "ray is not installed: pip install -e '.[ray]' (scripts/setup.sh installs it)"
    yield "run.ray_address", r.executor == "ray" or not r.ray_address, "is only used with run.executor = \"ray\""
    yield "run.workers", r.workers >= 0, "must be >= 0 (0 = one per GPU, else cluster CPUs // run.worker_cpus)"
    yield "run.worker_cpus", r.worker_cpus >= 1, "must be >= 1"
    yield "model.name", bool(m.name.strip()), "must be 'default', a HF model id or a local directory"
    yield "model.backend", m.backend in BACKENDS, f"must be one of {', '.join(BACKENDS)}"
    yield "model.dtype", m.dtype in DTYPES, f"must be one of {', '.join(DTYPES)}"
    yield "model.batch_size", m.batch_size >= 1, "must be >= 1"
    v = c.vllm
    yield "vllm.cpu_bind", v.cpu_bind in ("all", "vllm") or _core_list(v.cpu_bind), \
        "must be 'all', 'vllm' or a list of cores such as '0-3' or '0,2'"
    yield "vllm.kv_cache_gib", v.kv_cache_gib >= 0, "must be >= 0 (0 = 3 GiB)"
    yield "vllm.max_num_seqs", v.max_num_seqs >= 0, "must be >= 0 (0 = vLLM's default)"
    yield "vllm.block_size", v.block_size >= 0 and v.block_size % 16 == 0, \
        "must be 0 (32 on CPU, vLLM's default on GPU) or a multiple of 16 (of 32 on CPU)"
    yield "vllm.max_num_batched_tokens", v.max_num_batched_tokens >= 0, "must be >= 0 (0 = vLLM's default)"
    yield "vllm.gpu_memory_utilization", 0 <= v.gpu_memory_utilization <= 1, "must be in [0, 1] (0 = vLLM's default)"
    yield "vllm.tensor_parallel_size", v.tensor_parallel_size >= 1, "must be >= 1"
    yield "vllm.top_p", v.top_p in TOP_P, f"must be one of {', '.join(TOP_P)}"

    yield "seeds.problems", s.problems >= 0, "must be >= 0"
    bad = [gen for gen in s.generators if gen not in GENERATORS]
    yield "seeds.generators", not bad, f"unknown {bad}; choose from {sorted(GENERATORS)}"
    uses_generators = s.problems > 0 or (e.enabled and e.heldout_problems > 0)
    yield "seeds.generators", bool(s.generators) or not uses_generators, \
        "must not be empty: seeds.problems and the held-out split (eval.heldout_problems) draw from it"
    yield "seeds.levels", bool(s.levels) and all(lv >= 1 for lv in s.levels), "non-empty, each >= 1"
    yield "seeds.widen_at", 0 < s.widen_at <= 1, "must be in (0, 1]"
    yield "seeds.max_level", s.max_level >= max(s.levels or [1]), "must be >= the highest of seeds.levels"
    yield "seeds.file_order", s.file_order in FILE_ORDERS, f"must be one of {list(FILE_ORDERS)}, got {s.file_order!r}"
    easy_first = s.file_order == "easy_first"
    for fn in s.files:
        yield "seeds.files", seed_file(fn).is_file(), f"{fn} not found (a path, or a shipped file: gsm8k_train)"
        yield "seeds.files", not (err := _file_error(seed_file(fn), unlabelled=True, easy_first=easy_first)), err
    yield "seeds.file_order", not easy_first or (s.files and not s.hf_datasets), \
        "easy_first orders seeds.files by their worked solutions' steps: it needs seeds.files and no seeds.hf_datasets"
    seed_stems = [seed_file(fn).stem for fn in s.files]  # problem ids are "<stem>-<line index>"
    yield "seeds.files", len(set(seed_stems)) == len(seed_stems), \
        f"two files share a stem (their ids would collide): {seed_stems}"
    for spec in s.hf_datasets:
        yield "seeds.hf_datasets", not (err := _hf_spec_error(spec)), err
    yield "seeds.file_problems", s.file_problems >= 0, "must be >= 0"
    pool = bool(s.files or s.hf_datasets)
    yield "seeds.file_problems", s.file_problems == 0 or pool, "> 0 needs seeds.files or seeds.hf_datasets"
    yield "seeds.file_problems", s.file_problems > 0 or not pool, \
        "is 0, so seeds.files / seeds.hf_datasets would be loaded and never used: set it >= 1"

    yield "pose.attempts", po.attempts >= 0, "must be >= 0"
    yield "pose.shots", po.shots >= 1, "must be >= 1"
    yield "guard.train_on", g.train_on in TRAIN_ON, f"must be one of {list(TRAIN_ON)}, got {g.train_on!r}"
    yield "pose.target", po.target >= 0, "must be >= 0"
    yield "pose.batch", po.batch >= 1, "must be >= 1"
    yield "pose.max_seconds", po.max_seconds >= 0, "must be >= 0 (0 = no limit)"
    yield "pose.prompts", bool(po.prompts) and all(k in POSE_KINDS for k in po.prompts), \
        f"must be a non-empty list of {sorted(POSE_KINDS)}, got {po.prompts!r}"
    yield "pose.witness", po.witness in WITNESSES, f"must be one of {list(WITNESSES)}, got {po.witness!r}"
    yield "pose.shot_sets", po.shot_sets >= 0, "must be >= 0"
    yield "pose.witness_temperature", po.witness_temperature >= 0, "must be >= 0"
    yield "pose.temperature", po.temperature >= 0, "must be >= 0"
    yield "pose.top_p", 0 < po.top_p <= 1, "must be in (0, 1]"
    yield "pose.max_new_tokens", po.max_new_tokens >= 1, "must be >= 1"
    yield "pose.attempts", not (po.enabled and po.attempts > 0) or s.problems > 0, \
        "posing needs procedural seeds as shots (only they carry programs): set seeds.problems >= 1 " \
        "or pose.attempts = 0"

    yield "solve.samples", so.samples >= 2, "must be >= 2 (pairs need a correct and an incorrect path)"
    yield "solve.temperature", so.temperature > 0, "must be > 0 (at 0 every sample is the same greedy path: no pairs)"
    yield "solve.top_p", 0 < so.top_p <= 1, "must be in (0, 1]"
    yield "solve.max_new_tokens", so.max_new_tokens >= 1, "must be >= 1"
    yield "solve.batch_problems", so.batch_problems >= 0, "must be >= 0 (0 = fill the backend)"
    yield "solve.mode", so.mode in SOLVE_MODES, " | ".join(SOLVE_MODES)
    sb = c.sandbox
    yield "sandbox.mode", sb.mode in SANDBOXES, " | ".join(SANDBOXES)
    yield "sandbox.timeout", sb.timeout > 0, "must be > 0 seconds"
    yield "sandbox.libraries", all(n.isidentifier() for n in sb.libraries), \
        "must be top-level module names (e.g. \"sympy\")"
    yield "verify.timeout", c.verify.timeout > 0, "must be > 0 seconds"
    yield "verify.workers", c.verify.workers >= 0, "must be >= 0 (0 = one per core)"
    yield "verify.crosscheck", isinstance(c.verify.crosscheck, bool), "must be true or false"
    yield "pair.max_pairs_per_problem", c.pair.max_pairs_per_problem >= 1, "must be >= 1"
    yield "pair.flawed_chosen", c.pair.flawed_chosen in FLAWED_CHOSEN, \
        f"must be one of {list(FLAWED_CHOSEN)}, got {c.pair.flawed_chosen!r}"
    yield "pair.pseudo_agreement", 0 < c.pair.pseudo_agreement <= 1, "must be in (0, 1] (share of the top answer)"

    # The [train] section is the config the trainer takes (selfplay.train.dpo.train_dpo validates
    # it with these rules too), so a bad value stops the run at load, not after a round.
    yield "train.beta", t.beta > 0, "must be > 0"
    yield "train.learning_rate", 0 < t.learning_rate < 1, "must be in (0, 1)"
    yield "train.epochs", t.epochs >= 1, "must be >= 1 (train.max_steps can stop earlier)"
    yield "train.batch_size", t.batch_size >= 1, "must be >= 1"
    yield "train.grad_accum", t.grad_accum >= 1, "must be >= 1"
    yield "train.max_length", t.max_length >= 32, "must be >= 32 tokens (prompt + answer)"
    yield "train.nll_weight", t.nll_weight >= 0, "must be >= 0 (0 = plain DPO)"
    yield "train.max_steps", t.max_steps == -1 or t.max_steps >= 1, "must be -1 (full epochs) or >= 1"
    yield "train.launcher", t.launcher in LAUNCHERS, f"must be one of {', '.join(LAUNCHERS)}"
    yield "train.num_processes", t.num_processes >= 1, "must be >= 1"
    yield "train.num_processes", t.launcher == "accelerate" or t.num_processes == 1, \
        "> 1 needs train.launcher = \"accelerate\""
    yield "train.accelerate_config", not t.accelerate_config or Path(t.accelerate_config).is_file(), \
        f"{t.accelerate_config} not found"
    yield "train.accelerate_config", t.launcher == "accelerate" or not t.accelerate_config, \
        "is only used with train.launcher = \"accelerate\""
    yield "train.report_to", t.report_to in REPORT_TO, f"must be one of {', '.join(REPORT_TO)}"
    yield "train.precision", t.precision in PRECISIONS, f"must be one of {', '.join(PRECISIONS)}"
    yield "train.report_to", t.report_to == "none" or _installed(t.report_to), \
        f"{t.report_to} is not installed: pip install {t.report_to}"

    yield "filters.near_threshold", 0 < f.near_threshold <= 1, "must be in (0, 1]"
    yield "filters.band_low", 0 <= f.band_low, "must be >= 0"
    yield "filters.band_high", f.band_high <= 1, "must be <= 1"
    yield "filters.band_low", f.band_low <= f.band_high, "need band_low <= band_high"
    yield "filters.max_chars", f.max_chars >= 1, "must be >= 1 character"
    yield "filters.max_logprob", f.max_logprob <= 0, \
        "must be <= 0 (mean token log-probs are <= 0; filters.perplexity = false turns the filter off)"
    yield "filters.min_logprob", f.min_logprob < f.max_logprob, "must be < filters.max_logprob"
    yield "filters.keep_fraction", 0 < f.keep_fraction <= 1, "must be in (0, 1]"
    acc = g.accumulate
    yield "guard.accumulate", acc in ("current", "all") or (
        acc.startswith("last:") and acc[5:].isdigit() and int(acc[5:]) >= 1), "current | all | last:N (N >= 1)"
    yield "guard.seed_fraction", 0 <= g.seed_fraction <= 1, "must be in [0, 1]"
    yield "guard.warn_fraction", 0 < g.warn_fraction <= 1, "must be in (0, 1]"

    yield "eval.heldout_problems", e.heldout_problems >= 0, "must be >= 0"
    for fn in e.files:
        yield "eval.files", Path(fn).is_file(), f"{fn} not found"
        yield "eval.files", not (err := _file_error(fn, unlabelled=False, limit=e.file_limit)), err
    stems = [Path(fn).stem for fn in e.files]
    yield "eval.files", len(set(stems)) == len(stems), f"two files share a set name (file stem): {stems}"
    taken = sorted(set(stems) & set(OOD_SETS)) if e.ood else []
    yield "eval.files", not taken, \
        f"a file stem is a built-in set name ({taken}): rename the file or set eval.ood = false"
    yield "eval.file_limit", e.file_limit >= 1, "must be >= 1 problem per file"
    yield "eval.samples", e.samples >= 1, "must be >= 1 (1 = greedy only)"
    yield "eval.max_new_tokens", e.max_new_tokens >= 1, "must be >= 1"
    yield "eval.ood_problems", e.ood_problems >= 1, "must be >= 1 problem per out-of-distribution set"
    yield "eval.ood_samples", e.ood_samples >= 1, "must be >= 1 (1 = greedy only)"
    yield "eval.enabled", not e.enabled or e.heldout_problems > 0 or bool(e.files) or e.ood, \
        "nothing to evaluate: set eval.heldout_problems >= 1, eval.ood or eval.files, or eval.enabled = false"
    yield "seeds.problems", s.problems + s.file_problems + (po.attempts if po.enabled else 0) > 0, \
        "no problem source: set seeds.problems, seeds.file_problems or pose.attempts"
