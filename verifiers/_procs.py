"""Parent-side handles for the verifier's worker processes (see ``selfplay_verifiers.pool``).

``_Zygote`` is a warm process started with ``subprocess``; ``_Slot`` is one worker forked from
it, with its socket and (where the kernel has them) a pidfd so that a kill can never hit a
recycled pid. The child side of both lives in ``selfplay_verifiers._worker``.
"""
from __future__ import annotations

import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from multiprocessing.connection import Connection

START_TIMEOUT = 120.0  # a cold zygote imports sympy once; be generous on a loaded machine


class _Zygote:
    """A warm, single-threaded process that forks workers on request.

    Started with ``subprocess`` (fork+exec: safe from a threaded parent, allowed inside daemonic
    processes, and it never re-imports the caller's ``__main__`` the way multiprocessing's
    spawn/forkserver do). It imports sympy and the LaTeX parser once; each worker is a fork of
    it, ready in milliseconds. The worker's end of a fresh socketpair is passed with SCM_RIGHTS.
    """

    def __init__(self, memory_mb: int) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "selfplay_verifiers._worker", str(theirs.fileno()), str(memory_mb),
             str(os.getpid())],
            pass_fds=[theirs.fileno()], env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,  # never mix into a caller's stdout (the CLI writes JSONL)
            start_new_session=True)  # Ctrl-C goes to the caller; the zygote exits on socket EOF
        theirs.close()
        self.sock = ours

    def fork(self, timeout: float) -> tuple[int, Connection, int | None]:
        """(pid, connection, pidfd or None) of a new worker; raises OSError on failure."""
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.settimeout(timeout)
            socket.send_fds(self.sock, [b"F"], [b.fileno()])
            data = b""
            while len(data) < 8:
                chunk = self.sock.recv(8 - len(data))
                if not chunk:
                    raise OSError("verifier zygote exited")
                data += chunk
        except BaseException:
            a.close()
            raise
        finally:
            b.close()
        pid = struct.unpack("q", data)[0]
        pidfd = None
        try:  # a pidfd makes the later SIGKILL immune to pid reuse
            pidfd = os.pidfd_open(pid)
        except (AttributeError, OSError):
            pass
        return pid, Connection(a.detach()), pidfd

    def close(self) -> None:
        try:
            self.sock.close()  # EOF: the zygote exits
            self.proc.wait(2.0)
        except Exception:
            self.proc.kill()
            self.proc.wait()


class _Slot:
    """One worker process and the task it is running."""

    def __init__(self, zygote: _Zygote) -> None:
        self.born = time.monotonic()
        self.pid, self.conn, self.pidfd = zygote.fork(START_TIMEOUT)
        self.ready = False
        self.task: tuple | None = None  # (tid, op, gold, answer, future, t0)
        self.deadline = 0.0

    def stop(self) -> None:
        """Ask politely (the worker exits at its next recv)."""
        try:
            self.conn.send(None)
        except Exception:
            pass

    def kill(self, wait: float = 0.0) -> None:
        """SIGKILL; with ``wait``, block until the worker has exited (at most ``wait`` s, and
        only where a pidfd tells): the verifier's close() does so before it lets the zygote go,
        so that the zygote (which ignores SIGCHLD) reaps the worker instead of leaving a zombie
        to an init that may never reap it."""
        try:
            if self.pidfd is not None:
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
            else:
                os.kill(self.pid, signal.SIGKILL)
        except (ProcessLookupError, OSError):
            pass  # already gone
        if wait > 0 and self.pidfd is not None:
            poller = select.poll()  # a pidfd turns readable when its process has exited
            poller.register(self.pidfd, select.POLLIN)
            poller.poll(wait * 1000)
        for close in (self.conn.close, lambda: self.pidfd is not None and os.close(self.pidfd)):
            try:
                close()
            except OSError:
                pass
