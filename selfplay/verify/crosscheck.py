"""The second, independent checker: math-verify (`math_verify`) re-checks preference pairs.

Our verifier labelled each pair's chosen path correct and its rejected path incorrect. math-verify
(its own LaTeX/sympy parsing and comparison) re-checks both answers against the pair's gold
(metadata["gold"]). A pair lands in one class, first match wins:

    chosen_disputed    math-verify calls the chosen answer wrong
    rejected_disputed  math-verify calls the rejected answer right
    unparsed           math-verify cannot judge (it parses nothing, times out, runs out of memory,
                       the size screen refuses the answer, or it fails)
    agree              both checkers agree

`selfplay audit OUT` (selfplay.inspect.audit) prints the disagreements by class; `verify.crosscheck = true` drops the
disputed pairs at pair time (crosscheck_filter). Both use classify_pairs.

Why a child process: math-verify's own timeouts use signal.alarm, which fails off the main thread
and cannot interrupt C code (gmpy2 on \\boxed{100000000!} ran 33 s and took 1 GB here). So it runs
with its alarms off in one child process under RLIMIT_AS; the parent gives every check `timeout`
seconds of wall clock, then kills and restarts the child. Answers that verifiers' size screen
flags never reach it.
"""
from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from typing import Any, Sequence

from selfplay.core.records import Pair
from selfplay_verifiers import extract_answer
from selfplay_verifiers.numbers import screen

CLASSES = {"chosen_disputed": "chosen called wrong by math-verify",
           "rejected_disputed": "rejected called right by math-verify",
           "unparsed": "math-verify can't parse"}
INSTALL = "pip install math-verify==0.9.0"

# The child: parse + verify with math-verify's alarms off (the parent's kill is the timeout).
# A check that raises is reported as "error", the verdict of a checker that could not judge.
_CHILD = r"""
import json, logging, resource, sys
limit = int(sys.argv[1]) << 20
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
from math_verify import parse, verify
logging.getLogger("math_verify").setLevel(logging.CRITICAL)
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    req = json.loads(line)
    try:
        gold, pred = parse(req["gold"], parsing_timeout=None), parse(req["pred"], parsing_timeout=None)
        if not gold or not pred:
            out = "unparsed"
        else:
            out = "correct" if verify(gold, pred, timeout_seconds=None) else "incorrect"
    except MemoryError:
        out = "too_large"
    except Exception as e:  # reported to the parent as a verdict, never swallowed
        out = "error:" + type(e).__name__
    print(json.dumps({"r": out}), flush=True)
"""


def mv_text(answer: str) -> str:
    """math-verify needs a bare LaTeX answer inside $...$; without it, it falls back to the last
    number of the text (then "10, 4, 2" matches "4, 12, 2")."""
    a = answer.strip()
    return a if a.startswith("$") or "\\boxed" in a else f"${a}$"


class MathVerifyChecker:
    """math-verify in a killable child process: check(gold, answer) -> "correct" | "incorrect" |
    "unparsed" | "timeout" | "too_large" | "error:<exception>". Never hangs; not thread-safe."""

    def __init__(self, timeout: float = 5.0, memory_mb: int = 2048, start_timeout: float = 120.0) -> None:
        self.timeout, self.memory_mb, self.start_timeout = timeout, memory_mb, start_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._err: Any = None
        self._buf = b""

    def _start(self) -> None:
        # stderr goes to a file: a chatty child can never block on a full pipe
        if self._err is not None:
            self._err.close()
        self._err = tempfile.TemporaryFile()
        self._proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(self.memory_mb)], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=self._err)
        self._buf = b""
        if self._read_line(self.start_timeout) is None:
            self._kill()
            self._err.seek(0)
            err = self._err.read()[-2000:]
            last = (err.decode(errors="replace").strip().splitlines() or ["no reply"])[-1]
            raise RuntimeError(f"audit: math-verify did not start ({last}); {INSTALL}")

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            for f in (self._proc.stdin, self._proc.stdout):
                if f is not None:
                    f.close()
        self._proc = None

    def _read_line(self, timeout: float) -> dict[str, Any] | None:
        """The child's next reply, or None if it is silent for `timeout` s or has exited."""
        assert self._proc is not None and self._proc.stdout is not None
        fd, deadline = self._proc.stdout.fileno(), time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:  # the child died (killed by the memory limit, or crashed)
                return None
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return json.loads(line)

    def check(self, gold: str, answer: str) -> str:
        if screen(gold) or screen(answer):
            return "too_large"
        if self._proc is None:
            self._start()
        assert self._proc is not None and self._proc.stdin is not None
        try:
            self._proc.stdin.write(json.dumps({"gold": mv_text(gold), "pred": mv_text(answer)}).encode() + b"\n")
            self._proc.stdin.flush()
            reply = self._read_line(self.timeout)
        except BrokenPipeError:  # the child is gone: this check has no verdict
            reply = None
        if reply is None:
            dead = self._proc.poll() is not None
            self._kill()  # the next check starts a fresh child
            return "error:died" if dead else "timeout"
        return str(reply["r"])

    def close(self) -> None:
        self._kill()
        if self._err is not None:
            self._err.close()
            self._err = None

    def __enter__(self) -> "MathVerifyChecker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def pair_answer(pair: Pair, side: str) -> str | None:
    """The answer our verifier read from one side (metadata), else extracted from its text."""
    md = pair.metadata.get(f"{side}_extracted")
    if isinstance(md, str) and md.strip():
        return md
    msgs = getattr(pair, side)
    return extract_answer(str(msgs[-1].get("content", ""))) if msgs else None


def classify_pairs(pairs: Sequence[Pair], checker: MathVerifyChecker) -> list[tuple[str, dict[str, str]]]:
    """(class, {"chosen": verdict, "rejected": verdict}) per pair, in order; see the module doc.
    A rejected path without any answer cannot be called right, so it never disputes."""
    out = []
    for p in pairs:
        gold = str(p.metadata.get("gold", ""))
        chosen, rejected = pair_answer(p, "chosen"), pair_answer(p, "rejected")
        v = {"chosen": checker.check(gold, chosen) if chosen else "unparsed",
             "rejected": checker.check(gold, rejected) if rejected else "no_answer"}
        if v["chosen"] == "incorrect":
            cls = "chosen_disputed"
        elif v["rejected"] == "correct":
            cls = "rejected_disputed"
        elif v["chosen"] != "correct" or v["rejected"] not in ("incorrect", "no_answer"):
            cls = "unparsed"
        else:
            cls = "agree"
        out.append((cls, v))
    return out


def crosscheck_filter(pairs: Sequence[Pair], checker: MathVerifyChecker | None = None
                      ) -> tuple[list[Pair], dict[str, int], dict[str, int]]:
    """(kept, dropped, info): drop the pairs math-verify disputes ("chosen_disputed",
    "rejected_disputed"); keep the others with metadata["crosscheck"] = their class. info counts
    the pairs checked and those math-verify could not judge ("unparsed", kept)."""
    dropped = {"chosen_disputed": 0, "rejected_disputed": 0}
    info = {"checked": len(pairs), "unparsed": 0}
    if not pairs:
        return [], dropped, info
    own = checker is None
    checker = checker or MathVerifyChecker()
    try:
        classes = classify_pairs(pairs, checker)
    finally:
        if own:
            checker.close()
    kept = []
    for p, (cls, _v) in zip(pairs, classes):
        if cls in dropped:
            dropped[cls] += 1
            continue
        info["unparsed"] += cls == "unparsed"
        kept.append(replace(p, metadata={**p.metadata, "crosscheck": cls}))
    return kept, dropped, info
