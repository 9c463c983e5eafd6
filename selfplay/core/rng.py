"""Deterministic seeds: every random draw derives from (run seed, round, problem id, sample index).

Python's hash() is salted per process, so we use blake2b: the same inputs give the same seed on
every machine and every run, and any single record can be regenerated alone.
"""
from __future__ import annotations

import hashlib
import random


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any parts (ints, strings)."""
    h = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") & 0x7FFFFFFFFFFFFFFF


def rng_for(*parts: object) -> random.Random:
    return random.Random(derive_seed(*parts))
