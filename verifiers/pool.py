"""``MathVerifier``: checks with hard wall-clock and memory bounds, from any thread.

Design (why not ProcessPoolExecutor: it cannot kill one stuck task):

- Extraction, normalization, the size screen and the exact number/shape fast path run in the
  caller's thread (``mathcheck.fast_verdict``): pure Python, linear, cannot hang. Most real
  cases end there with no inter-process round trip.
- What needs sympy goes to one of ``workers`` processes, one socket each. A dispatcher
  thread hands a task only to an idle, ready worker and gives it ``timeout`` seconds of wall
  clock from that moment; an overrunning worker is SIGKILLed, replaced, and the task's verdict
  is unknown/timeout. Each worker runs under ``RLIMIT_AS = memory_mb`` (MemoryError ->
  unknown/too_large; a worker that dies -> unknown/error, replaced).
- Workers are forked from a warm "zygote" process (``selfplay_verifiers._worker``) started with
  ``subprocess``: sympy and the LaTeX parser are imported once, a replacement after a kill is
  ready in milliseconds, nothing forks this threaded process, the caller's ``__main__`` is
  never re-imported (multiprocessing's spawn/forkserver would), and it works inside daemonic
  processes too. Workers start lazily, on the first task that needs sympy; the zygote forks
  them once sympy is imported and one comparison has run, and finishes warming the LaTeX
  parser once idle for a second (later forks inherit that).
- ``submit`` is thread-safe and returns a ``concurrent.futures.Future``; ``verify_many``
  streams results in input order with a bounded window of tasks in flight.

Workers exit when the verifier closes, or within a second of its process dying.
"""
from __future__ import annotations

import itertools
import logging
import os
import struct
import threading
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from dataclasses import replace
from multiprocessing.connection import wait

from ._procs import START_TIMEOUT as _START_TIMEOUT
from ._procs import _Slot, _Zygote
from ._vcache import VerdictCache
from .extract import find_answer
from .mathcheck import Gold, fast_verdict, parse_gold
from .verdict import INCORRECT, UNKNOWN, Verdict

__all__ = ["MathVerifier", "default_workers"]

log = logging.getLogger(__name__)

_GOLD_CACHE = 4096
_START_FAILURES = 5      # consecutive workers dying before "ready": the pool is broken


def default_workers() -> int:
    """The CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


class _Pool:
    """State shared with the dispatcher thread (kept apart from MathVerifier so that the
    verifier can be garbage-collected and finalized while the thread runs)."""

    def __init__(self, workers: int, timeout: float, memory_mb: int) -> None:
        self.n, self.timeout, self.memory_mb = workers, timeout, memory_mb
        self.lock = threading.Lock()
        self.queue: deque = deque()
        self.closed = False
        self.broken = False
        self.thread: threading.Thread | None = None
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.ids = itertools.count()
        self.slots: list = []

    def wake(self) -> None:
        try:
            os.write(self.wake_w, b"x")
        except (BlockingIOError, OSError):
            pass  # a wake-up is already pending (or we are closing)

    def put(self, op: str, gold: str, answer: str, fut: Future, t0: float) -> None:
        with self.lock:
            if self.closed or self.broken:
                fut.set_result(Verdict(UNKNOWN, "error", answer, time.perf_counter() - t0))
                return
            self.queue.append((next(self.ids), op, gold, answer, fut, t0))
            if self.thread is None:
                self.thread = threading.Thread(target=self.run, name="verifiers-dispatch",
                                               daemon=True)
                self.thread.start()
        self.wake()

    @staticmethod
    def finish(task: tuple, label: str, reason: str) -> None:
        _, _, _, answer, fut, t0 = task
        if not fut.done():
            fut.set_result(Verdict(label, reason, answer, time.perf_counter() - t0))

    def run(self) -> None:
        try:
            self._loop()
        except BaseException:  # the dispatcher must never leave futures hanging
            log.exception("verifier dispatcher failed; pending and later checks are unknown")
            self.broken = True
        finally:
            with self.lock:
                pending, self.queue = list(self.queue), deque()
            for task in pending:
                self.finish(task, UNKNOWN, "error")

    def _spawn(self, state: dict) -> _Slot | None:
        """A new worker, restarting the zygote if it died; None (and maybe broken) on failure."""
        for _ in range(2):
            try:
                if state.get("zygote") is None:
                    state["zygote"] = _Zygote(self.memory_mb)
                return _Slot(state["zygote"])
            except (OSError, ValueError, struct.error):
                state["failures"] = state.get("failures", 0) + 1
                if state["failures"] >= _START_FAILURES:
                    self.broken = True
                    return None
                if state.get("zygote") is not None:
                    state["zygote"].close()
                state["zygote"] = None
        return None

    def _loop(self) -> None:
        state: dict = {}
        slots: list[_Slot | None] = [self._spawn(state) for _ in range(self.n)]
        self.slots = slots  # introspection for tests (worker pids); owned by this thread
        try:
            while not self.closed and not self.broken:
                for i, s in enumerate(slots):
                    if s is None:
                        slots[i] = s = self._spawn(state)
                        if s is None:
                            time.sleep(0.05)  # back off; broken after repeated failures
                            continue
                    if s.ready and s.task is None:  # hand out work to idle, ready workers
                        with self.lock:
                            task = self.queue.popleft() if self.queue else None
                        if task is None:
                            continue
                        try:
                            s.conn.send((task[0], task[1], task[2], task[3]))
                        except (OSError, ValueError):
                            self.finish(task, UNKNOWN, "error")
                            continue
                        s.task, s.deadline = task, time.monotonic() + self.timeout
                live = [s for s in slots if s is not None]
                now = time.monotonic()
                ends = [s.deadline for s in live if s.task is not None]
                ends += [s.born + _START_TIMEOUT for s in live if not s.ready]
                if len(live) < len(slots):
                    ends.append(now + 0.05)
                wait_s = max(0.0, min(ends) - now) if ends else None
                ready = wait([s.conn for s in live] + [self.wake_r], wait_s)
                if self.wake_r in ready:
                    try:
                        while os.read(self.wake_r, 4096):
                            pass
                    except BlockingIOError:
                        pass
                for i, s in enumerate(slots):
                    if s is None:
                        continue
                    dead = False
                    if s.conn in ready:
                        try:
                            msg = s.conn.recv()
                        except (EOFError, OSError):
                            dead = True
                        else:
                            if msg[0] == "ready":
                                s.ready, state["failures"] = True, 0
                            elif s.task is not None and msg[0] == s.task[0]:
                                self.finish(s.task, msg[1], msg[2])
                                s.task = None
                    now = time.monotonic()
                    overrun = s.task is not None and now >= s.deadline
                    stuck = not s.ready and now >= s.born + _START_TIMEOUT
                    if dead or overrun or stuck:
                        if not s.ready:
                            state["failures"] = state.get("failures", 0) + 1
                        s.kill()  # SIGKILL: the only stop that works inside C code
                        # replace before resolving, so a caller who sees "timeout" sees a
                        # full pool with the culprit already dead
                        slots[i] = None if state.get("failures", 0) >= _START_FAILURES \
                            else self._spawn(state)
                        if state.get("failures", 0) >= _START_FAILURES:
                            self.broken = True
                        if s.task is not None:
                            self.finish(s.task, UNKNOWN, "timeout" if overrun else "error")
        finally:
            for s in slots:
                if s is None:
                    continue
                if s.task is not None:
                    self.finish(s.task, UNKNOWN, "error")
                else:
                    s.stop()
                # harmless on an exiting worker; a pidfd makes it exact. Waiting for the exit
                # (milliseconds) lets the zygote, still alive, reap it.
                s.kill(wait=1.0)
            if state.get("zygote") is not None:
                state["zygote"].close()

    def close(self) -> None:
        with self.lock:
            self.closed = True
            thread = self.thread
        self.wake()
        if thread is not None and thread is not threading.current_thread():
            thread.join(10.0)
        for fd in (self.wake_r, self.wake_w):
            try:
                os.close(fd)
            except OSError:
                pass


class MathVerifier:
    """Bounded math checking (see the module docstring). Use as a context manager.

    >>> with MathVerifier(timeout=3.0) as mv:
    ...     mv.verify("18", "So the answer is 18.").label
    'correct'
    """

    def __init__(self, workers: int | None = None, timeout: float = 3.0,
                 memory_mb: int = 2048) -> None:
        if workers is not None and (not isinstance(workers, int) or workers < 1):
            raise ValueError(f"workers must be a positive int or None, got {workers!r}")
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
        if not isinstance(memory_mb, int) or memory_mb < 256:
            raise ValueError(f"memory_mb must be an int >= 256, got {memory_mb!r}")
        self.workers = workers or default_workers()
        self.timeout = float(timeout)
        self.memory_mb = memory_mb
        self._pool = _Pool(self.workers, self.timeout, memory_mb)
        self._golds: OrderedDict[str, Gold] = OrderedDict()
        self._golds_lock = threading.Lock()
        self._verdicts = VerdictCache()  # repeats of (gold, answer) are compared once
        self._finalizer = weakref.finalize(self, self._pool.close)

    def gold(self, gold: str | Gold) -> Gold:
        """The parsed gold, from a small LRU cache (each problem's gold is parsed once)."""
        if isinstance(gold, Gold):
            return gold
        with self._golds_lock:
            g = self._golds.get(gold) if isinstance(gold, str) else None
            if g is not None:
                self._golds.move_to_end(gold)
                return g
        g = parse_gold(gold)
        if isinstance(gold, str):
            with self._golds_lock:
                self._golds[gold] = g
                if len(self._golds) > _GOLD_CACHE:
                    self._golds.popitem(last=False)
        return g

    def submit(self, gold: str | Gold, completion: str, *, extract: bool = True) -> Future:
        """Start one check; the Future's result is a Verdict. Thread-safe; never raises."""
        t0 = time.perf_counter()
        fut: Future = Future()
        try:
            ans, problem = find_answer(completion) if extract else (completion, None)
            if problem:  # different final answers stated: unknown, never correct
                fut.set_result(Verdict(UNKNOWN, problem, ans, time.perf_counter() - t0))
                return fut
            if ans is None or not isinstance(ans, str):
                fut.set_result(Verdict(INCORRECT, "no_answer", None, time.perf_counter() - t0))
                return fut
            g = self.gold(gold)
            v, tree = fast_verdict(g, ans)
            if v is not None:
                fut.set_result(replace(v, extracted=ans, seconds=time.perf_counter() - t0))
                return fut
            if not self._verdicts.lookup((g.raw, ans), fut, ans, t0):
                self._pool.put("check", g.raw, ans, fut, t0)
        except Exception:
            if not fut.done():
                fut.set_result(Verdict(UNKNOWN, "error", None, time.perf_counter() - t0))
        return fut

    def verify(self, gold: str | Gold, completion: str, *, extract: bool = True) -> Verdict:
        """Check one completion (or bare answer) against ``gold``; blocks at most about
        ``timeout`` seconds of worker time (plus queueing behind other tasks)."""
        return self.submit(gold, completion, extract=extract).result()

    def verify_many(self, items: Iterable[tuple[str, str]], *, extract: bool = True,
                    window: int | None = None) -> Iterator[Verdict]:
        """Verdicts for (gold, completion) pairs, in input order, computed in parallel.

        Lazy: input is pulled only while fewer than ``window`` tasks are unfinished, and every
        finished head-of-line result is yielded before more input is pulled, so a caller can
        feed batches as they arrive."""
        window = window or max(32, 8 * self.workers)
        pending: deque[Future] = deque()
        for gold, completion in items:
            pending.append(self.submit(gold, completion, extract=extract))
            while pending and (pending[0].done() or len(pending) >= window):
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

    def _debug(self, op: str, arg: str) -> Verdict:
        """Test hook: run a raw worker op ("_sleep" seconds, "_alloc" MiB, "_warm_left")."""
        fut: Future = Future()
        self._pool.put(op, "", arg, fut, time.perf_counter())
        return fut.result()

    def _worker_pids(self) -> list[int]:
        """Test hook: pids of the current workers (empty before the first sympy task)."""
        return [s.pid for s in list(self._pool.slots) if s is not None]

    def close(self) -> None:
        """Stop the workers; unfinished tasks resolve as unknown/error. Idempotent."""
        self._finalizer()

    def __enter__(self) -> "MathVerifier":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
