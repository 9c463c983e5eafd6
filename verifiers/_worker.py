"""Worker processes of ``selfplay_verifiers.pool``: the sympy half of a check, under an address-space
limit. ``python -m selfplay_verifiers._worker FD MEMORY_MB PARENT_PID`` runs the *zygote*: it imports
sympy and the LaTeX parser once, runs one parse and one comparison, then forks one worker per
request, so every worker (and every replacement after a kill) starts in milliseconds. The rest
of the warm-up (the parser's other paths) runs in the zygote once it has been idle for 1 s.

Protocol on one socket per worker: the worker sends ("ready", pid) once, then answers each
``(task_id, op, gold, pred)`` with ``(task_id, label, reason)``; ``None`` or EOF ends it.
"""
from __future__ import annotations

import os
import signal
import threading
import time
from collections import OrderedDict, deque

import sympy  # noqa: F401  - imported once in the zygote; forks inherit it
from latex2sympy2_extended import latex2sympy

from .mathcheck import Gold, equivalent, parse_gold
from .verdict import UNKNOWN

_GOLD_CACHE = 512


# Warm-up: ANTLR builds its DFA lazily (~30 ms a cold parse vs ~3 ms warm) and sympy imports
# modules on first use. What a fork inherits it never pays again, so the zygote runs each path
# once. Only _WARM_FIRST (the one-time costs every worker would pay on its first task: ~0.25 s)
# runs before the first fork; _WARM_LATER (~0.6 s) runs step by step once no fork was asked for
# during _IDLE_BEFORE_WARM, so a short run's workers neither wait for it nor share the CPU with
# it, and later forks (replacements after a kill) inherit all of it.
_WARM_FIRST = (("tex", "\\frac{1}{2}+x^2"), ("eq", "x^2-1", "(x-1)(x+1)"))
_WARM_LATER = tuple(("tex", t) for t in (
    "\\sqrt{2}\\pi", "(1,2]", "\\sin(x)+\\cos(2x)", "\\log_2 8", "\\ln(x)", "e^{x}",
    "x^2+y^2=1", "x \\leq 3", "\\binom{5}{2}", "\\infty", "\\{1,2\\}", "\\sqrt[3]{x}",
    "|x-1|", "\\tan^{-1}(1)", "\\exp(x)", "2^{10}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}",
    "\\frac{x}{y}\\cdot 3", "3!", "0.5x")) + tuple(("eq", g, p) for g, p in (
    ("\\sqrt{8}", "2\\sqrt{2}"), ("\\pi", "3.1416"), ("x+y=1", "2x+2y=2"), ("e^{x}", "\\exp(x)"),
    ("18", "9*2"), ("\\sin(x)", "\\cos(x)"), ("\\log_2 8", "3")))


_IDLE_BEFORE_WARM = 1.0  # seconds without a fork request before the deferred warm-up runs
_PENDING_WARM: deque = deque()  # the zygote's _WARM_LATER steps not run yet (a fork's copy
                                # tells what it did not inherit: the "_warm_left" test hook)


def _warm(step: tuple) -> None:
    """One warm-up step; the inputs are fixed and parse (tests/verifiers/test_startup.py)."""
    if step[0] == "tex":
        latex2sympy(step[1])
    else:
        equivalent(step[1], step[2])


def _limit_memory(memory_mb: int) -> None:
    try:
        import resource
        limit = int(memory_mb) * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, ValueError, OSError):
        pass  # not fatal: the wall-clock kill still bounds the worker


def _watch_parent(parent_pid: int) -> None:
    """Exit if the verifier's process is gone (our OS parent is the zygote, not it)."""
    while True:
        time.sleep(1.0)
        try:
            os.kill(parent_pid, 0)
        except ProcessLookupError:
            os._exit(0)
        except PermissionError:
            pass


def main(conn, memory_mb: int, parent_pid: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's business
    _limit_memory(memory_mb)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()
    golds: OrderedDict[str, Gold] = OrderedDict()
    conn.send(("ready", os.getpid()))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        tid, op, gold, pred = msg
        try:
            if op == "check":
                g = golds.get(gold)
                if g is None:
                    g = golds[gold] = parse_gold(gold)
                    if len(golds) > _GOLD_CACHE:
                        golds.popitem(last=False)
                else:
                    golds.move_to_end(gold)
                v = equivalent(g, pred)
                out = (tid, v.label, v.reason)
            elif op == "_sleep":  # test hook: a task that overruns its budget
                time.sleep(float(pred))
                out = (tid, UNKNOWN, "error")
            elif op == "_alloc":  # test hook: a task that hits the address-space limit
                _ = bytearray(int(pred) * 1024 * 1024)
                out = (tid, UNKNOWN, "error")
            elif op == "_warm_left":  # test hook: warm-up steps this worker did not inherit
                out = (tid, UNKNOWN, str(len(_PENDING_WARM)))
            else:
                out = (tid, UNKNOWN, "error")
        except MemoryError:
            out = (tid, UNKNOWN, "too_large")
        except Exception:
            out = (tid, UNKNOWN, "error")
        try:
            conn.send(out)
        except (EOFError, OSError):
            return


def _reap_workers(limit: float) -> None:
    """Wait (at most ``limit`` s) until every worker has exited. A closing verifier has killed
    them already; after the verifier's death they exit within a second. While the zygote lives
    it reaps them (SIGCHLD is ignored); once it is gone they would be left to init, and an init
    that never reaps (some containers) would keep them as zombies."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        try:
            os.waitpid(-1, os.WNOHANG)  # with SIGCHLD ignored: (0, 0) while any child lives
        except ChildProcessError:
            return  # none left
        time.sleep(0.01)


def zygote(fd: int, memory_mb: int, parent_pid: int) -> None:
    """Fork a worker for every fd received on socket ``fd``; reply with its pid. Stays
    single-threaded so that forking is safe; exits when the parent closes the socket."""
    import select
    import socket
    import struct
    from multiprocessing.connection import Connection

    sock = socket.socket(fileno=fd)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # workers are reaped by the kernel
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for step in _WARM_FIRST:
        _warm(step)
    _PENDING_WARM.extend(_WARM_LATER)
    idle = _IDLE_BEFORE_WARM
    poller = select.poll()  # not select.select: fd may be >= 1024 (it keeps the caller's number)
    poller.register(sock, select.POLLIN)
    while True:
        # No request for `idle` seconds: warm one more step (a fork asked for meanwhile waits at
        # most one step, <= ~0.1 s), then look again after 20 ms. After a fork it waits longer,
        # so a short run (or a burst of forks) is not slowed down by steps it would not use.
        if _PENDING_WARM and not poller.poll(idle * 1000):
            _warm(_PENDING_WARM.popleft())
            idle = 0.02
            continue
        idle = _IDLE_BEFORE_WARM
        try:
            msg, fds, _, _ = socket.recv_fds(sock, 16, 1)
        except OSError:
            return
        if not msg:  # the verifier closed the socket (or died)
            _reap_workers(2.0)
            return
        if not fds:
            continue
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                sock.close()
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                main(Connection(fds[0]), memory_mb, parent_pid)
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        os.close(fds[0])
        try:
            sock.sendall(struct.pack("q", pid))
        except OSError:
            return


if __name__ == "__main__":
    import sys
    zygote(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
    # The verifier waits for this exit when it closes: skip the interpreter's teardown of
    # sympy's modules (~0.1-0.2 s); there is nothing to flush (stdout is /dev/null).
    os._exit(0)
