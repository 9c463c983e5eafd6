"""Run untrusted Python (model-written programs) in a bubblewrap sandbox, fast.

One long-lived `bwrap` per worker runs a small fork-per-job server (verifiers/_sandbox_server.py)
with Python already warm: each job is a fork of it (no interpreter start), ~1.5 ms of CPU for a
trivial program. See docs/sandbox.md for the design and measured rates.

What it protects against (mode "bwrap", the default):
- network: a new network namespace with only a loopback: no internet, and the host's
  127.0.0.1 services are on a different loopback.
- host files: the sandbox sees read-only /usr (+ /bin /lib /lib64 links into it),
  /etc/ld.so.cache, and the Python installation it runs (bound at its own path, e.g.
  /root/.pyenv/versions/X, so /root shows only that); nothing else: no /home, /work, /var, /sys,
  rest of /etc or /root. A private size-capped tmpfs /tmp (the job's cwd is a fresh /tmp/job)
  and /dev/shm; / and /dev are read-only. Writes anywhere else fail.
- the parent's environment: bwrap starts with only PATH and --clearenv; the job sees PATH, HOME,
  LANG, TMPDIR, PYTHONHASHSEED=0 (so hash/set order is reproducible), nothing from os.environ.
- runaway jobs: per-job rlimits (CPU, address space, file size, processes, no core files), a
  wall-clock kill, an output cap (stop reading and kill), and after every job kill(-1) inside
  the sandbox's PID namespace, so setsid/daemon children that outlive the job die too (a server
  that cannot clean up is replaced); /tmp and /dev/shm are emptied. A job that kills its server
  only ends that sandbox (verdict unknown/sandbox_error): the next job gets a fresh one.
- privileges: no capabilities, no_new_privs, nosuid mounts. As an ordinary user bwrap uses
  --unshare-all (user namespace included). As root it unshares ipc/pid/net/uts/cgroup but no
  user namespace, and the server drops to a spare unprivileged uid before any job runs: a user
  namespace would map jobs to host uid 0, for which the kernel does not enforce RLIMIT_NPROC.

What it does NOT cover:
- kernel exploits (no seccomp filter: the full syscall surface is reachable), CPU side
  channels (Spectre-style), and timing: run time is shared-machine noise, not a guarantee.
- confidentiality of /usr and the Python installation: every job can read them.
- isolation between jobs of one worker: they run one after another in the same long-lived
  sandbox and PID namespace, forked from the same server, so a job can read what earlier
  requests left in the server's memory image. The server also compile()s each program before
  forking (it runs nothing; a program that crashed the compiler would only end that sandbox).
- total memory: RLIMIT_AS is per process (a job may have up to max_procs of them), and tmpfs
  writes use host memory up to the tmpfs caps. No cgroups; CPU and I/O are not throttled.
- mode "unisolated-UNSAFE": rlimits, a process-group kill and a scratch cwd only. The program
  can use the network, read and write host files, and leave setsid daemons behind; as root,
  RLIMIT_NPROC is not enforced. Never use it for untrusted code.
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from verifiers._sandbox_proc import (UNSAFE, Died, SandboxUnavailable, Server, Spawner,
                                     bwrap_path, probe_bwrap, server_command)
from verifiers.verdict import CORRECT, INCORRECT, UNKNOWN, Verdict

__all__ = ["ExecResult", "Sandbox", "SandboxUnavailable", "UNSAFE", "bwrap_available"]

log = logging.getLogger(__name__)
_GRACE = 5.0  # the server enforces the wall clock; the parent waits this much longer, then kills


@dataclass(frozen=True)
class ExecResult:
    """One execution. exit_code is None when the program was killed (timeout, cap, signal)."""

    stdout: str
    stderr: str
    exit_code: int | None
    verdict: Verdict
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"stdout": self.stdout, "stderr": self.stderr, "exit_code": self.exit_code,
                "verdict": self.verdict.to_dict(), "seconds": self.seconds}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ExecResult":
        return cls(stdout=d["stdout"], stderr=d["stderr"], exit_code=d.get("exit_code"),
                   verdict=Verdict.from_dict(d["verdict"]), seconds=float(d.get("seconds", 0.0)))


def bwrap_available() -> bool:
    """True when bwrap is on PATH and can create the namespaces the sandbox uses."""
    return probe_bwrap()


def _classify(resp: dict[str, Any]) -> Verdict:
    status, code, sig = resp.get("status"), resp.get("exit_code"), resp.get("signal")
    secs = float(resp.get("seconds", 0.0))
    if status in ("timeout", "output_limit"):
        return Verdict(INCORRECT, status, seconds=secs)
    if code == 0:
        return Verdict(CORRECT, "ok", seconds=secs)
    tail = resp.get("stderr", "").strip().rsplit("\n", 1)[-1]
    if tail.startswith("MemoryError"):
        return Verdict(INCORRECT, "memory", seconds=secs)
    if sig == signal.SIGXCPU:
        return Verdict(INCORRECT, "timeout", seconds=secs)
    return Verdict(INCORRECT, "killed" if code is None else "runtime_error", seconds=secs)


class Sandbox:
    """Run Python code isolated; see the module docstring for what is and is not covered.

    Limits apply per job: timeout (wall seconds; CPU time is capped at ceil(timeout) + 1),
    memory_mb (address space per process), max_output (bytes kept per stream; more kills the
    job), max_procs (processes of the sandbox's uid, its server included), max_file_mb (largest
    file it may write). workers: servers run_many may use in parallel (default min(4, cpus)).
    site_packages: also mount the running environment's site-packages read-only so jobs can
    import e.g. sympy; off by default (jobs get the standard library only).
    """

    def __init__(self, *, timeout: float = 5.0, memory_mb: int = 1024, max_output: int = 65536,
                 max_procs: int = 64, max_file_mb: int = 16, mode: str = "bwrap",
                 workers: int | None = None, site_packages: bool = False) -> None:
        for name, value in (("timeout", timeout), ("memory_mb", memory_mb),
                            ("max_output", max_output), ("max_procs", max_procs),
                            ("max_file_mb", max_file_mb), ("workers", workers or 1)):
            if not value > 0:
                raise ValueError(f"Sandbox.{name} must be > 0, got {value!r}")
        if mode not in ("bwrap", UNSAFE):
            raise ValueError(f"Sandbox.mode must be 'bwrap' or {UNSAFE!r}, got {mode!r}")
        self.mode, self.timeout = mode, float(timeout)
        self.workers = workers or min(4, os.cpu_count() or 1)
        self._limits = {"timeout": float(timeout), "memory_mb": int(memory_mb),
                        "max_output": int(max_output), "max_procs": int(max_procs),
                        "max_file_mb": int(max_file_mb)}
        self._site = [p for p in dict.fromkeys(sys.path) if p.endswith("-packages")
                      and os.path.isdir(p)] if site_packages else []
        self._scratch: str | None = None
        self._cond = threading.Condition()
        self._idle: list[Server] = []
        self._count, self._closed = 0, False
        if mode == "bwrap":
            bwrap_path()  # SandboxUnavailable, one line, when bwrap is not installed
        else:
            log.warning("Sandbox mode %s: programs run WITHOUT isolation (network, host files, "
                        "environment); only rlimits apply. Never use it for untrusted code.", UNSAFE)
            self._scratch = tempfile.mkdtemp(prefix="selfplay-UNSAFE-")
        try:
            self._idle.append(self._spawn())  # fail here, loudly, rather than on the first job
        except BaseException:
            self.close()
            raise
        self._count = 1

    def _spawn(self) -> Server:
        argv, env, cwd = server_command(self.mode, self._limits, self._site, self._scratch)
        return Spawner.call(lambda: Server(argv, env, cwd))

    def _acquire(self) -> Server:
        with self._cond:
            while True:
                if self._closed:
                    raise RuntimeError("Sandbox is closed")
                if self._idle:
                    return self._idle.pop()
                if self._count < self.workers:
                    self._count += 1
                    break
                self._cond.wait()
        try:  # outside the lock: starting a server takes tens of ms
            return self._spawn()
        except BaseException:
            self._release(None)
            raise

    def _release(self, srv: Server | None) -> None:
        with self._cond:
            if srv is not None and srv.alive() and not self._closed:
                self._idle.append(srv)
                srv = None
            else:
                self._count -= 1
            self._cond.notify()
        if srv is not None:
            srv.kill()

    def run(self, code: str, stdin: str = "") -> ExecResult:
        """Run one program. Never raises for the program's or the sandbox's failures (those are
        verdicts); raises RuntimeError only when called after close()."""
        t0 = time.monotonic()
        for _ in range(3):
            try:
                srv = self._acquire()
            except (SandboxUnavailable, OSError) as exc:
                return _error(str(exc), t0)
            if not srv.alive():  # died while idle: replace it transparently
                self._release(srv)
                continue
            try:
                resp = srv.call({"code": code, "stdin": stdin}, self.timeout + _GRACE)
            except Died as exc:
                srv.dirty = True
                self._release(srv)
                if exc.before_job:  # it never saw the job: safe to run it on a fresh server
                    continue
                return _error(str(exc), t0)
            # A server that could not kill everything, or failed itself, is replaced.
            srv.dirty = bool(resp.get("dirty")) or "error" in resp
            self._release(srv)
            if "error" in resp:
                return _error(f"sandbox server error: {resp['error']}", t0)
            verdict = _classify(resp)
            return ExecResult(resp["stdout"], resp["stderr"], resp["exit_code"], verdict,
                              verdict.seconds)
        return _error("sandbox server kept dying before the job started", t0)

    def run_many(self, codes: Sequence[str]) -> list[ExecResult]:
        """Run programs on up to `workers` servers in parallel; results in input order."""
        codes = list(codes)
        if len(codes) <= 1 or self.workers == 1:
            return [self.run(c) for c in codes]
        with ThreadPoolExecutor(min(self.workers, len(codes))) as pool:
            return list(pool.map(self.run, codes))

    def close(self) -> None:
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._cond.notify_all()
        for srv in idle:
            srv.kill()
        if self._scratch:
            shutil.rmtree(self._scratch, ignore_errors=True)

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Sandbox(mode={self.mode!r}, timeout={self.timeout}, workers={self.workers})"


def _error(why: str, t0: float) -> ExecResult:
    secs = time.monotonic() - t0
    return ExecResult("", why, None, Verdict(UNKNOWN, "sandbox_error", seconds=secs), secs)


def _tree_cpu(pid: int) -> float:
    """CPU seconds of a live process tree: own + reaped children's, summed over live members."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += sum(int(f) for f in fields[11:15]) / tick  # utime stime cutime cstime
        for tid in os.listdir(f"/proc/{pid}/task"):
            for child in Path(f"/proc/{pid}/task/{tid}/children").read_text().split():
                total += _tree_cpu(int(child))
    except OSError:
        pass
    return total


if __name__ == "__main__":  # rate check: python -m verifiers.sandbox [N] [WORKERS] [MODE]
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    w = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    mode = sys.argv[3] if len(sys.argv) > 3 else "bwrap"
    with Sandbox(workers=w, mode=mode) as sb:
        sb.run_many(["print(1)"] * (4 * w))  # start and warm every server
        c0, t0 = _tree_cpu(os.getpid()), time.perf_counter()
        res = sb.run_many(["print(1)"] * n)
        wall, cpu = time.perf_counter() - t0, _tree_cpu(os.getpid()) - c0
    ok = sum(r.verdict.is_correct and r.stdout == "1\n" for r in res)
    print(f"{n} x print(1), mode={mode}, workers={w}: {n / wall:.0f} exec/s wall, "
          f"{n / cpu:.0f} exec per CPU-second (parent + servers + jobs; {ok}/{n} ok)")
