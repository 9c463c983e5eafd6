"""Stage progress on the console: a tqdm bar on a terminal; otherwise (a file, `| cat`, CI) one
line at most every $SELFPLAY_PROGRESS_SECONDS (30 s) and one when the stage ends, never longer than
MAX_LINE characters and without carriage returns.

The ETA:
  * work measured in units that take their own time (DPO steps): the mean of the last steps;
  * continuous generation (vLLM): the engine reports every step (paths finished, the lengths of
    those still decoding) and the ETA replays the rest of the schedule: a Kaplan-Meier estimate
    of the path lengths (finished paths, and the running ones as censored; beyond the longest
    path seen, falling linearly to 0 at REACH times it, or at the token budget while none has
    finished), the engine's slots refilled from the waiting paths, and a step time fitted as
    a + b x running paths. Counting only finished problems, or only finished paths, misses that
    every slot is busy long before anything finishes (the first ETA of a solve stage was 37x the
    real time);
  * otherwise (hf batches): elapsed x remaining / done, paths counted when a batch is generated.

A stage opens `counting_paths(progress)` around its generation; a backend reports finished paths
(`paths_done`) and its engine steps (`engine_trace`) to it, and nothing happens outside such a
block (e.g. while posing).
"""
from __future__ import annotations

import contextlib
import math
import os
import sys
import threading
import time
from typing import Any, Callable, Iterator, Sequence, TextIO

import numpy as np

PROGRESS_ENV = "SELFPLAY_PROGRESS_SECONDS"
PROGRESS_SECONDS = 30.0
MAX_LINE = 300  # the longest console line when stderr is not a terminal


def clip(line: str, width: int = MAX_LINE) -> str:
    """One line cut to `width` characters, saying how much was cut."""
    if len(line) <= width:
        return line
    cut = f" ...[cut, {len(line)} chars]"
    return line[:width - len(cut)] + cut


def duration(s: float | None) -> str:
    """An ETA or elapsed time: 45 s, 3:05, 1:02:03; "?" when unknown."""
    if s is None or not math.isfinite(s):
        return "?"
    s = max(0, round(s))
    if s < 60:
        return f"{s} s"
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


class EngineTrace:
    """What a continuous-generation engine reports about one stream of requests, and the ETA it
    implies (see the module docstring). requests: how many the stream submits; slots: how many
    the engine decodes at once (vLLM's max_num_seqs); cap: the token budget of a request."""

    REACH = 6.0  # beyond the longest path seen (A tokens), survival falls linearly to 0 at min(cap, REACH x A)
    NEW_SHARE = 0.1  # steps that start more than this share of their requests are mostly prefill: not fitted
    MAX_SIM_STEPS = 4000

    def __init__(self, requests: int, slots: int, cap: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.requests, self.slots, self.cap = int(requests), max(1, int(slots)), max(1, int(cap))
        self.clock = clock
        self.finished_len = np.zeros(self.cap + 1)  # finished requests by length
        self.finished = 0
        self.running: list[int] = []  # the lengths of the requests decoding at the last step
        self.steps: list[tuple[int, float]] = []  # (requests decoded, seconds) of fitted steps
        self.t_last = clock()

    def step(self, finished: Sequence[int], running: Sequence[int]) -> None:
        """One engine step: the lengths (tokens) of the requests it finished and of those still decoding."""
        now = self.clock()
        dt, self.t_last = now - self.t_last, now
        for n in finished:
            self.finished_len[min(max(int(n), 1), self.cap)] += 1
        self.finished += len(finished)
        self.running = [min(max(int(n), 1), self.cap) for n in running]
        out = len(finished) + len(running)
        new = sum(1 for n in running if n <= 1) + sum(1 for n in finished if n <= 1)
        if out and new <= self.NEW_SHARE * out:
            self.steps.append((out, dt))
            del self.steps[:-2000]

    def survival(self) -> np.ndarray:
        """S[l]: the estimated share of requests longer than l tokens, l = 0..cap (S[cap] = 0):
        Kaplan-Meier up to the longest length seen, then falling linearly to 0 at REACH times that
        (at most the budget): early in a stage only the short paths have finished, and the budget
        alone says little about how long the others run."""
        cap = self.cap
        ages = np.bincount(np.asarray(self.running, dtype=int), minlength=cap + 1)[:cap + 1].astype(float)
        seen = max([int(np.nonzero(self.finished_len)[0].max()) if self.finished else 0] + self.running)
        # at risk at length l: finished paths of length >= l, and running ones of age >= l - 1 (a
        # path of age a ends at length a + 1 at the earliest)
        ages_ge = np.cumsum(ages[::-1])[::-1]
        at_risk = np.cumsum(self.finished_len[::-1])[::-1] + np.concatenate(([ages_ge[0]], ages_ge[:-1]))
        hazard = np.divide(self.finished_len, at_risk, out=np.zeros(cap + 1), where=at_risk > 0)
        hazard[0] = 0.0
        s = np.cumprod(1.0 - hazard)
        end = min(cap, max(seen + 1, int(self.REACH * seen))) if self.finished else cap
        if seen < end:  # beyond the longest seen: falling linearly to 0 at `end`
            ls = np.arange(seen + 1, end + 1)
            s[seen + 1:end + 1] = s[seen] * (end - ls) / (end - seen)
        s[end:] = 0.0
        return s

    def step_time(self) -> tuple[float, float]:
        """(a, b): a step decoding r requests takes a + b r seconds, from the mean step times of
        the fuller (>= 3/4 of the most) and emptier (<= 1/2) steps; with no emptier steps yet, a
        tenth of a full step is taken as fixed."""
        if not self.steps:
            return 0.0, 0.0
        most = max(r for r, _ in self.steps)
        hi = [(r, d) for r, d in self.steps if r >= 0.75 * most]
        lo = [(r, d) for r, d in self.steps if r <= 0.5 * most]
        r_hi, d_hi = float(np.median([r for r, _ in hi])), float(np.median([d for _, d in hi]))
        a, b = 0.1 * d_hi, 0.9 * d_hi / max(r_hi, 1.0)
        if len(lo) >= 3:
            r_lo, d_lo = float(np.median([r for r, _ in lo])), float(np.median([d for _, d in lo]))
            b_fit = (d_hi - d_lo) / (r_hi - r_lo)
            a_fit = d_hi - b_fit * r_hi
            if a_fit >= 0 and b_fit >= 0:
                a, b = a_fit, b_fit
        return a, b

    def eta(self) -> float | None:
        """Seconds until the engine has finished every request; None before its first step."""
        if not self.steps:
            return None
        s = self.survival()
        ratio = np.divide(s[1:], s[:-1], out=np.zeros(self.cap), where=s[:-1] > 0)
        mass = np.bincount(np.asarray(self.running, dtype=int), minlength=self.cap + 1)[:self.cap + 1].astype(float)
        waiting = float(max(0, self.requests - self.finished - len(self.running)))
        a, b = self.step_time()
        t, started = 0.0, 0.0
        for _ in range(self.MAX_SIM_STEPS):
            run = float(mass.sum())
            if waiting <= 0 and run < 1.0:
                break
            add = min(waiting, max(0.0, self.slots - run))
            if add > 0:
                mass[0] += add
                waiting -= add
                started += add
                run += add
            t += a + b * run
            mass[1:] = mass[:-1] * ratio
            mass[0] = 0.0
        else:  # a long queue: the rest at the rate requests started in the replayed steps
            if waiting > 0 and started > 0:
                t += waiting * t / started
        return max(0.0, t - (self.clock() - self.t_last))


class Progress:
    """A stage's progress: units done of a total, a postfix (tqdm's API: update, set_postfix, n,
    total, refresh, close), an ETA, and the display (tqdm on a terminal, else a line every
    `interval` seconds and one at the end). style "steps" writes `desc k/N postfix ETA t` (DPO)."""

    def __init__(self, total: int, desc: str, unit: str, *, style: str = "stage", tty: bool | None = None,
                 interval: float | None = None, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.desc, self.unit, self.style = int(total), desc, unit, style
        self.n = 0  # units done (verified)
        self.generated = 0  # paths the backend finished, ahead of n (see counting_paths)
        self.postfix = ""
        self.clock = clock
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)()) if tty is None else tty
        self.interval = (float(os.environ.get(PROGRESS_ENV) or PROGRESS_SECONDS) if interval is None
                         else float(interval))
        self.engine: EngineTrace | None = None
        self.durations: list[float] = []
        self.t0 = self._last_line = clock()
        self._eta: tuple[float, float | None] | None = None  # (when, value): the engine ETA, cached 2 s
        self._lock = threading.RLock()
        self.closed = False
        self._bar = None
        if self.tty:
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, desc=desc, unit=unit, file=self.stream, dynamic_ncols=True,
                             bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} {unit} [{elapsed}{postfix}]")

    @property
    def position(self) -> int:
        return min(max(self.n, self.generated), self.total) if self.total else max(self.n, self.generated)

    def update(self, k: int = 1, *, seconds: float | None = None, refresh: bool = True) -> None:
        """k more units done; `seconds`: how long this one took (the ETA then uses unit times)."""
        with self._lock:
            self.n += k
            if seconds is not None:
                self.durations.append(float(seconds))
            if refresh:
                self.refresh()

    def paths_done(self, k: int) -> None:
        """The backend finished k more paths (they are verified later: update counts those)."""
        with self._lock:
            self.generated += k

    def set_postfix(self, ordered_dict: dict[str, Any] | None = None, refresh: bool = True, **kw: Any) -> None:
        items = {**(ordered_dict or {}), **kw}
        self.set_postfix_str(", ".join(f"{k}={v}" for k, v in items.items()), refresh=refresh)

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        with self._lock:
            self.postfix = str(s)
            if refresh:
                self.refresh()

    def elapsed(self) -> float:
        return self.clock() - self.t0

    def eta(self) -> float | None:
        """Seconds to the end of the stage (None: not known yet); see the module docstring."""
        pos, total = self.position, self.total
        if total and pos >= total:
            return 0.0
        if self.durations:
            recent = self.durations[-5:]
            return (total - pos) * sum(recent) / len(recent)
        if self.engine is not None and self.engine.steps:
            now = self.clock()
            if self._eta is None or now - self._eta[0] >= 2.0:
                self._eta = (now, self.engine.eta())
            when, value = self._eta
            return None if value is None else max(0.0, value - (now - when))
        if pos <= 0 or not total:
            return None
        return self.elapsed() * (total - pos) / pos

    def line(self, final: bool = False) -> str:
        pos, total = self.position, self.total
        post = f" {self.postfix}" if self.postfix else ""
        if self.style == "steps":
            tail = f" in {duration(self.elapsed())}" if final else f" ETA {duration(self.eta())}"
            return clip(f"[selfplay] {self.desc} {pos}/{total}{post}{tail}")
        pct = f" ({100 * pos / total:.0f}%)" if total else ""
        el = self.elapsed()
        rate = pos / el if el > 0 else 0.0
        if final:
            head = f"{self.desc}: {pos}/{total} {self.unit}s in {duration(el)} ({rate:.3g} {self.unit}s/s)"
        else:
            head = (f"{self.desc}: {pos}/{total} {self.unit}s{pct}, {duration(el)} elapsed, "
                    f"ETA {duration(self.eta())}")
        return clip(f"[selfplay] {head}" + (f"; {self.postfix}" if self.postfix else ""))

    def refresh(self) -> None:
        with self._lock:
            if self.closed:
                return
            if self._bar is not None:
                eta = duration(self.eta())
                self._bar.set_postfix_str(f"ETA {eta}" + (f", {self.postfix}" if self.postfix else ""),
                                          refresh=False)  # tqdm puts ", " before it
                self._bar.total = self.total
                self._bar.update(self.position - self._bar.n)
                return
            now = self.clock()
            if now - self._last_line >= self.interval and self.position < (self.total or sys.maxsize):
                self._last_line = now
                print(self.line(), file=self.stream, flush=True)

    def close(self) -> None:
        with self._lock:
            if self.closed:
                return
            if self._bar is not None:
                self._bar.total = self.total
                self._bar.n = self.position
                self._bar.set_postfix_str(self.postfix, refresh=False)
                self._bar.refresh()
                self._bar.close()
            elif self.position or self.n:
                print(self.line(final=True), file=self.stream, flush=True)
            self.closed = True

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# Paths finished by the backend count towards the stage that asked for them (solve, eval).
_sink: Progress | None = None


@contextlib.contextmanager
def counting_paths(progress: Any) -> Iterator[None]:
    global _sink
    old, _sink = _sink, progress if isinstance(progress, Progress) else None
    try:
        yield
    finally:
        _sink = old


def paths_done(k: int) -> None:
    """A backend finished k paths (samples) of the stage counting them."""
    if _sink is not None and k:
        _sink.paths_done(k)


def engine_trace(requests: int, slots: int, cap: int) -> EngineTrace | None:
    """A continuous-generation backend starts a stream: its trace, feeding the counting stage's
    ETA (None when no stage counts paths)."""
    if _sink is None:
        return None
    trace = EngineTrace(requests, slots, cap, clock=_sink.clock)
    _sink.engine = trace
    return trace
