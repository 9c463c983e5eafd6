"""JSONL and JSON I/O (orjson): atomic whole-file writes and crash-safe appends.

Finished files are written to a temp file, fsynced and renamed, so a reader sees the old file or
the new one, never half of one. Append-only logs (rollouts) write whole groups of lines with one
write + fsync; on resume `read_jsonl(..., repair=True)` drops a torn last line.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

import orjson

T = TypeVar("T")


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def write_jsonl(path: str | Path, records: Iterable[Any]) -> int:
    """Atomically write records (dicts or objects with to_dict) as JSONL; returns the count."""
    lines = [dumps(r.to_dict() if hasattr(r, "to_dict") else r) for r in records]
    atomic_write_bytes(path, b"".join(line + b"\n" for line in lines))
    return len(lines)


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write_bytes(path, orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY) + b"\n")


def read_json(path: str | Path) -> Any:
    return orjson.loads(Path(path).read_bytes())


def append_jsonl(path: str | Path, records: Iterable[Any]) -> None:
    """Append a group of records with one write and fsync (a crash tears at most the last line)."""
    data = b"".join(dumps(r.to_dict() if hasattr(r, "to_dict") else r) + b"\n" for r in records)
    if not data:
        return
    with open(path, "ab") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def iter_jsonl(path: str | Path, *, repair: bool = False, numbered: bool = False) -> Iterator[Any]:
    """Yield dicts (or (line number, dict) with numbered=True); a bad line raises ValueError naming
    file:line. With repair=True a torn final line (no newline: a crash mid-write) is cut off the
    file instead."""
    path = Path(path)
    data = path.read_bytes()
    if repair and data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        with open(path, "r+b") as f:
            f.truncate(cut)
        data = data[:cut]
    for lineno, line in enumerate(data.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            d = orjson.loads(line)
        except orjson.JSONDecodeError as e:
            raise ValueError(f"{path}:{lineno}: invalid JSON ({e})") from None
        if not isinstance(d, dict):
            raise ValueError(f"{path}:{lineno}: expected a JSON object")
        yield (lineno, d) if numbered else d


def read_records(path: str | Path, cls: Callable[[dict[str, Any]], T], *, repair: bool = False) -> list[T]:
    """Records of one type; a missing field raises ValueError naming file:line and the field."""
    out = []
    for i, d in enumerate(iter_jsonl(path, repair=repair), 1):
        try:
            out.append(cls(d))
        except (ValueError, TypeError, KeyError) as e:
            raise ValueError(f"{path}: record {i}: {e}") from None
    return out


def read_json_or_none(path: Path) -> dict[str, Any] | None:
    """A JSON object from `path`; None when it is missing, unreadable, torn or not an object (for
    readers of a run that may be in progress, such as `selfplay status`)."""
    try:
        d = orjson.loads(Path(path).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return d if isinstance(d, dict) else None
