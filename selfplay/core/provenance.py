"""Stage provenance: every stage output records what it was made from, and a stage whose inputs
changed is refused with one line instead of being silently reused.

Each directory that holds stage outputs (OUT, OUT/round_K) has a `provenance.json`: one entry
per output name (`problems.jsonl`, `rollouts.jsonl`, `pairs.jsonl`, `model`, `eval.json`...),
each a flat dict of what went in: the code version, the verifier's source fingerprint, the
config hash, the model path or id with a fingerprint of its files, and hashes of input files.
The entry is written BEFORE the stage produces its output, so an output never exists without
its record (a crash in between leaves a record and no output: the stage simply runs).
"""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any

import verifiers
from selfplay import __version__
from selfplay.core import io

PROVENANCE = "provenance.json"
# settings that may change between a run and its resume: no output depends on them
MUTABLE_ON_RESUME = frozenset({"run.rounds", "run.out", "train.report_to", "run.executor", "run.ray_address",
                               "run.workers", "run.worker_cpus",
                               # the engine's speed settings: where and how fast, not what, it samples
                               "vllm.cpu_bind", "vllm.kv_cache_gib", "vllm.max_num_seqs",
                               "vllm.max_num_batched_tokens", "vllm.gpu_memory_utilization",
                               "vllm.tensor_parallel_size"})


class StaleOutput(ValueError):
    """An existing stage output was made from other inputs than the current ones."""


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def file_hash(path: str | Path) -> str:
    """Content hash of an input file (problems, rollouts, pairs): cheap at these sizes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def _source_version(sandbox: bool) -> str:
    root = Path(verifiers.__file__).parent
    h = hashlib.sha256()
    for f in sorted(root.glob("*.py")):
        if ("sandbox" in f.name) == sandbox:
            h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=1)
def verifier_version() -> str:
    """Fingerprint of the answer checker's source: any change there may change labels."""
    return _source_version(sandbox=False)


@functools.lru_cache(maxsize=1)
def sandbox_version() -> str:
    """Fingerprint of the code sandbox's source: it gives posed golds and labels pot paths."""
    return _source_version(sandbox=True)


@functools.lru_cache(maxsize=64)
def _dir_fingerprint(path: str, stamp: tuple[tuple[str, int, int], ...]) -> str:
    h = hashlib.sha256()
    for name, size, _ in stamp:
        f = Path(path) / name
        h.update(f"{name}:{size}".encode())
        with open(f, "rb") as fh:  # weights: the head and tail of each file, not 0.5 GB per stage
            h.update(fh.read(1 << 20))
            if size > 2 << 20:
                fh.seek(-(1 << 20), 2)
                h.update(fh.read())
    return h.hexdigest()[:16]


def model_fingerprint(model: str) -> str:
    """A local model directory: a hash of its config and weight files; anything else (a hub id,
    the scripted test backend's name) is recorded by name."""
    p = Path(model)
    if not p.is_dir():
        return f"id:{model}"
    files = sorted(f for f in p.iterdir() if f.is_file() and (
        f.suffix in (".safetensors", ".bin", ".json", ".gguf") and not f.name.startswith(".")))
    stamp = tuple((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    return _dir_fingerprint(str(p.resolve()), stamp)


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}"""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_hash(cfg: Any) -> str:
    flat = {k: v for k, v in flatten(cfg.to_dict()).items() if k not in MUTABLE_ON_RESUME}
    return content_hash(io.dumps(dict(sorted(flat.items()))))


def key(cfg: Any, *, model: str | None = None, labels: bool = False, **inputs: Any) -> dict[str, Any]:
    """The provenance entry of one stage: code and config always, the model (with fingerprint)
    when the stage generates or trains, the verifier when it labels, plus named input hashes."""
    k: dict[str, Any] = {"code": __version__, "config": config_hash(cfg)}
    if model is not None:
        k["model"] = model
        k["model_fingerprint"] = model_fingerprint(model)
    if labels:
        k["verifier"] = verifier_version()
        if cfg.solve.mode != "cot":  # programs of thought are labelled by running them
            k["sandbox"] = sandbox_version()
    k.update(inputs)
    return k


def read(directory: Path) -> dict[str, Any]:
    path = directory / PROVENANCE
    return io.read_json(path) if path.exists() else {}


def record(output: Path, entry: dict[str, Any]) -> None:
    """Write `output`'s entry before the stage produces it."""
    prov = read(output.parent)
    prov[output.name] = entry
    io.write_json(output.parent / PROVENANCE, prov)


def forget(output: Path) -> None:
    prov = read(output.parent)
    if prov.pop(output.name, None) is not None:
        io.write_json(output.parent / PROVENANCE, prov)


def check(output: Path, entry: dict[str, Any], *, hint: str = "") -> bool:
    """True when `output` exists and was made from exactly `entry`'s inputs; False when it does
    not exist (the caller runs the stage and calls `record` first). Refuses (StaleOutput, one
    line naming the output and the first input that differs) when it exists from other inputs."""
    if not output.exists():
        return False
    old = read(output.parent).get(output.name)
    how = hint or "use another --out, or delete it to redo the stage"
    if old is None:
        raise StaleOutput(f"{output}: no provenance record (made by an older selfplay or by hand); {how}")
    for name, value in entry.items():
        if old.get(name) != value:
            raise StaleOutput(f"{output}: made with {name}={old.get(name)!r}, now {value!r}; {how}")
    return True
