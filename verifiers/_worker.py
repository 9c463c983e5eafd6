"""Worker processes of ``verifiers.pool``: the sympy half of a check, under an address-space
limit. ``python -m verifiers._worker FD MEMORY_MB PARENT_PID`` runs the *zygote*: it imports
sympy and warms the LaTeX parser once, then forks one worker per request, so every worker (and
every replacement after a kill) starts warm in milliseconds.

Protocol on one socket per worker: the worker sends ("ready", pid) once, then answers each
``(task_id, op, gold, pred)`` with ``(task_id, label, reason)``; ``None`` or EOF ends it.
"""
from __future__ import annotations

import os
import signal
import threading
import time
from collections import OrderedDict

import sympy  # noqa: F401  - imported once in the zygote; forks inherit it
from latex2sympy2_extended import latex2sympy

from .mathcheck import Gold, equivalent, parse_gold
from .verdict import UNKNOWN

_GOLD_CACHE = 512


_WARM_TEX = ("\\frac{1}{2}+x^2", "\\sqrt{2}\\pi", "(1,2]", "\\sin(x)+\\cos(2x)", "\\log_2 8",
             "\\ln(x)", "e^{x}", "x^2+y^2=1", "x \\leq 3", "\\binom{5}{2}", "\\infty",
             "\\{1,2\\}", "\\sqrt[3]{x}", "|x-1|", "\\tan^{-1}(1)", "\\exp(x)", "2^{10}",
             "\\begin{pmatrix}1\\\\2\\end{pmatrix}", "\\frac{x}{y}\\cdot 3", "3!", "0.5x")


def _warm() -> None:
    """Run each comparison path once in the zygote: the ANTLR tables and sympy's lazily
    imported modules are then built once and inherited by every fork."""
    try:
        for s in _WARM_TEX:  # ANTLR builds its DFA lazily: ~30 ms cold vs ~3 ms warm a parse
            latex2sympy(s)
        for g, p in (("x^2-1", "(x-1)(x+1)"), ("\\sqrt{8}", "2\\sqrt{2}"), ("\\pi", "3.1416"),
                     ("x+y=1", "2x+2y=2"), ("e^{x}", "\\exp(x)"), ("18", "9*2"),
                     ("\\sin(x)", "\\cos(x)"), ("\\log_2 8", "3")):
            equivalent(g, p)
    except Exception:
        pass


_warm()


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


def zygote(fd: int, memory_mb: int, parent_pid: int) -> None:
    """Fork a worker for every fd received on socket ``fd``; reply with its pid. Stays
    single-threaded so that forking is safe; exits when the parent closes the socket."""
    import socket
    import struct
    from multiprocessing.connection import Connection

    sock = socket.socket(fileno=fd)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # workers are reaped by the kernel
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(sock, 16, 1)
        except OSError:
            return
        if not msg:
            return  # the verifier closed the socket (or died)
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
