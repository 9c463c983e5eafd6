"""A stage's work cut into shards, datatrove-style: each shard is a unit of work with a stable
key, written as `<key>.jsonl` plus a completion marker `<key>.done` (its row count and details)
under a directory named by the stage's provenance, so a changed setting never reuses a shard. A
rerun skips every shard whose marker is there; `results` hands finished shards back in shard
order however they complete. The executor decides where shards run (selfplay/run/ray_executor.py:
a pool of Ray actors); the store knows nothing of it.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable, Generic, Iterable, Iterator, Sequence, TypeVar

from selfplay.core import io
from selfplay.core.provenance import content_hash

T = TypeVar("T")


def shard_key(ids: Sequence[str]) -> str:
    """A shard's key: the hash of the ids of its items, in order."""
    return content_hash(io.dumps(list(ids)))


def cut(items: Sequence[T], size: int) -> list[list[T]]:
    """Consecutive shards of at most `size` items."""
    return [list(items[i:i + size]) for i in range(0, len(items), max(1, size))]


class ShardStore(Generic[T]):
    """Finished shards of one stage under `directory`; records are read with `load` (a record's
    from_dict) and written with their to_dict."""

    def __init__(self, directory: Path, load: Callable[[dict[str, Any]], T]) -> None:
        self.dir, self.load = directory, load

    def done(self, key: str) -> list[T] | None:
        """A finished shard's records (its marker names the row count), else None."""
        path, marker = self.dir / f"{key}.jsonl", self.dir / f"{key}.done"
        if not marker.exists() or not path.exists():
            return None
        rows = io.read_records(path, self.load)
        return rows if len(rows) == int(io.read_json(marker)["rows"]) else None

    def write(self, key: str, rows: Sequence[Any], **info: Any) -> None:
        """Store a shard, then its completion marker (a crash between them leaves no marker)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        io.write_jsonl(self.dir / f"{key}.jsonl", rows)
        io.write_json(self.dir / f"{key}.done", {"rows": len(rows), **info})

    def results(self, keys: Sequence[str], finished: Iterable[tuple[str, list[T]]]) -> Iterator[list[T]]:
        """Every shard's records in `keys` order: those already stored first, then each shard of
        `finished` (key, records) as soon as all shards before it are in."""
        ready: dict[str, list[T]] = {}
        for k in keys:
            rows = self.done(k)
            if rows is not None:
                ready[k] = rows
        nxt = 0

        def flush() -> Iterator[list[T]]:
            nonlocal nxt
            while nxt < len(keys) and keys[nxt] in ready:
                yield ready.pop(keys[nxt])
                nxt += 1

        yield from flush()
        for key, rows in finished:
            ready[key] = rows
            yield from flush()

    def remove(self) -> None:
        """Drop the store once its records are where later stages read them."""
        if self.dir.exists():
            shutil.rmtree(self.dir)
        if self.dir.parent.exists() and not any(self.dir.parent.iterdir()):
            self.dir.parent.rmdir()
