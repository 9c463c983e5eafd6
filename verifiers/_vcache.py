"""Verdict cache of ``MathVerifier``: one sympy comparison per distinct (gold, answer).

Why: a problem's k sampled completions often state the same answer, and every such repeat
would otherwise cost a worker round trip and a sympy comparison (milliseconds to seconds).
Only deterministic outcomes are kept (correct/ok, incorrect/wrong, unknown/parse_error);
timeouts, errors and memory outcomes depend on load and are recomputed. A repeat that arrives
while the first comparison is still running waits for it instead of starting another.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import replace

from .verdict import Verdict

_KEEP = {("correct", "ok"), ("incorrect", "wrong"), ("unknown", "parse_error")}


class VerdictCache:
    def __init__(self, size: int = 65536) -> None:
        self.size = size
        self.lock = threading.Lock()
        self.done: OrderedDict[tuple[str, str], tuple[str, str]] = OrderedDict()
        self.running: dict[tuple[str, str], Future] = {}

    def lookup(self, key: tuple[str, str], fut: Future, answer: str, t0: float) -> bool:
        """True when ``fut`` was answered (or will be) from the cache; False when the caller
        must compute it and then call ``store`` (it is now the one computing ``key``)."""
        with self.lock:
            hit = self.done.get(key)
            if hit is not None:
                self.done.move_to_end(key)
            else:
                leader = self.running.get(key)
                if leader is None:
                    self.running[key] = fut
                    fut.add_done_callback(lambda f: self._store(key, f))
                    return False
        if hit is not None:
            fut.set_result(Verdict(hit[0], hit[1], answer, time.perf_counter() - t0))
            return True
        leader.add_done_callback(lambda f: fut.done() or fut.set_result(
            replace(f.result(), extracted=answer, seconds=time.perf_counter() - t0)))
        return True

    def _store(self, key: tuple[str, str], f: Future) -> None:
        v = f.result()
        with self.lock:
            self.running.pop(key, None)
            if (v.label, v.reason) in _KEEP:
                self.done[key] = (v.label, v.reason)
                if len(self.done) > self.size:
                    self.done.popitem(last=False)
