"""Stage provenance: every stage output records what it was made from, and a stage whose inputs
changed is refused with one line instead of being silently reused.

Each directory that holds stage outputs (OUT, OUT/round_K) has a `provenance.json`: one entry
per output name (`problems.jsonl`, `rollouts.jsonl`, `pairs.jsonl`, `model`, `eval.json`...),
each a flat dict of what went in: the code version, the verifier's source fingerprint, the
config hash, the model path or id with a fingerprint of its files, and hashes of input files.
The entry is written BEFORE the stage produces its output, so an output never exists without
its record (a crash in between leaves a record and no output: the stage simply runs).

Entries compare content, not path strings, so a run can be moved or named by another path: a
model inside OUT is recorded relative to OUT (`round_0/model`), and a local model directory is
identified by its fingerprint alone (an older entry naming it by an absolute or cwd-relative
path still matches); a hub id, whose fingerprint is `id:NAME`, compares by name.
"""
from __future__ import annotations

import functools
import hashlib
import os
import re
from pathlib import Path
from typing import Any

import selfplay_verifiers
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


def token_key(ids) -> str:
    """A digest of a token-id sequence: prompt and completion ids as the sampling engine saw them,
    compared with the ids training tokenizes (selfplay/train/reflogps.py)."""
    return hashlib.sha256(b",".join(str(int(i)).encode() for i in ids)).hexdigest()[:16]


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
    root = Path(selfplay_verifiers.__file__).parent
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


def is_content_fingerprint(fingerprint: Any) -> bool:
    """A fingerprint of a local model's files (not `id:NAME`, a hub id or a directory that is gone)."""
    return isinstance(fingerprint, str) and not fingerprint.startswith("id:")


def relative_to_out(model: str, out: str | Path) -> str:
    """How an entry names `model`: an existing path inside OUT relative to OUT (`round_0/model`,
    the same however OUT is reached or wherever it moves), anything else as given."""
    if not Path(model).exists():
        return model
    for m, o in ((Path(os.path.abspath(model)), Path(os.path.abspath(out))),
                 (Path(model).resolve(), Path(out).resolve())):  # OUT or the model reached through a link
        if m != o and m.is_relative_to(o):
            return m.relative_to(o).as_posix()
    return model


_RUN_MODEL = re.compile(r"(?:^|/)(round_\d+/model)/?$")


def run_model_place(model: str) -> str | None:
    """`round_K/model` when a model path string names a round's trained model (however OUT was
    written: absolute, relative to another directory), else None."""
    m = _RUN_MODEL.search(model)
    return m.group(1) if m else None


def locate(model: str, out: str | Path) -> str:
    """The path a stored model name (relative_to_out) stands for now: OUT/NAME when NAME is a
    relative path that exists under OUT, else NAME as stored (a hub id, a path outside OUT)."""
    if not Path(model).is_absolute() and (Path(out) / model).exists():
        return str(Path(out) / model)
    return model


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
    """The provenance entry of one stage: code and config always, the model (with fingerprint;
    named relative to OUT, cfg.run.out, when it lies inside) when the stage generates or trains,
    the verifier when it labels, plus named input hashes."""
    k: dict[str, Any] = {"code": __version__, "config": config_hash(cfg)}
    if model is not None:
        k["model"] = relative_to_out(model, cfg.run.out)
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
    line naming the output and the first input that differs) when it exists from other inputs.

    A local model (either side's fingerprint taken from files) is compared by fingerprint only:
    the same files reached by another path string (a moved run, an older entry's absolute or
    cwd-relative path) match, other files do not, wherever they are."""
    if not output.exists():
        return False
    old = read(output.parent).get(output.name)
    how = hint or "use another --out, or delete it to redo the stage"
    if old is None:
        raise StaleOutput(f"{output}: no provenance record (made by an older selfplay or by hand); {how}")
    by_content = "model" in entry and (is_content_fingerprint(entry.get("model_fingerprint"))
                                       or is_content_fingerprint(old.get("model_fingerprint")))
    for name, value in entry.items():
        if (name == "model" and by_content) or old.get(name) == value:
            continue
        if name == "model_fingerprint" and by_content:
            raise StaleOutput(f"{output}: made with model_fingerprint={old.get(name)!r} (model {old.get('model')!r}), "
                              f"now {value!r} (model {entry.get('model')!r}); {how}")
        raise StaleOutput(f"{output}: made with {name}={old.get(name)!r}, now {value!r}; {how}")
    return True
