"""glibc's heap held for the length of a DPO training (Linux).

A training step allocates and frees the same large tensors every step (autocast's bf16 copies of
the weights, activations, the LM head's slices). With glibc's defaults, blocks above the mmap
threshold come from fresh `mmap`s and free memory at the heap's top goes back to the system, so
each step faults its pages in again. Holding the heap (mmap threshold 32 MiB, the most glibc's own
dynamic threshold reaches; no trimming; 1 GiB of top pad) made the default job's training step
1.11x faster here, with the same numbers (docs/training.md). Afterwards the trim threshold comes
back to 64 MiB and `malloc_trim` hands the free pages back, so the generation engine the loop
starts next finds the memory; the mmap threshold stays at 32 MiB (a static threshold is all
`mallopt` can set).

Another C library (no `mallopt`): nothing changes.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
from typing import Iterator

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3  # glibc's mallopt parameters (malloc.h)
HELD = {M_MMAP_THRESHOLD: 32 << 20, M_TRIM_THRESHOLD: 1 << 40, M_TOP_PAD: 1 << 30}
AFTER = {M_TRIM_THRESHOLD: 64 << 20, M_TOP_PAD: 128 << 10}


def _glibc():
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    return libc if libc is not None and hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


@contextlib.contextmanager
def held_heap() -> Iterator[bool]:
    """Hold glibc's heap inside the block (yields whether it could)."""
    libc = _glibc()
    if libc is None:
        yield False
        return
    for param, value in HELD.items():
        libc.mallopt(param, ctypes.c_int(min(value, 2**31 - 1)))
    try:
        yield True
    finally:
        for param, value in AFTER.items():
            libc.mallopt(param, ctypes.c_int(value))
        libc.malloc_trim(ctypes.c_size_t(0))
