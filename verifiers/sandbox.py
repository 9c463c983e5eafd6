"""Run untrusted Python (model-written programs) in a bubblewrap sandbox, fast.
Over 350 lines on purpose: the threat model above and the bwrap mounts that make it true are read together.

One long-lived `bwrap` per worker runs a small fork-per-job server (verifiers/_sandbox_server.py)
with Python, and the allowed libraries, already imported: each job is a fork of it (no
interpreter start, no import), ~2-5 ms per trivial program. See docs/sandbox.md for the design
and measured rates.

What it protects against (mode "bwrap", the default):
- network: a new network namespace with only a loopback: no internet, and the host's
  127.0.0.1 services are on a different loopback.
- host files: the sandbox sees read-only /usr (+ /bin /lib /lib64 links into it),
  /etc/ld.so.cache, the Python installation it runs (bound at its own path, e.g.
  /root/.pyenv/versions/X, so /root shows only that; its site-packages covered by an empty
  directory), and under /opt/site-packages only the allowed libraries (`libraries`, default
  DEFAULT_LIBRARIES) with the distributions they require; nothing else: no /home, /work, /var,
  /sys, rest of /etc or /root, no other installed package. A private size-capped tmpfs /tmp (the
  job's cwd is a fresh /tmp/job) and /dev/shm; / and /dev are read-only. Writes elsewhere fail.
- the parent's environment: bwrap starts with only PATH and --clearenv; the job sees PATH, HOME,
  LANG, TMPDIR, PYTHONHASHSEED=0 (so hash/set order is reproducible) and *_NUM_THREADS=1 (no
  BLAS thread pools in a process that forks), nothing from os.environ.
- runaway jobs: per-job rlimits (CPU, address space, file size, processes, no core files), a
  wall-clock kill, an output cap (stop reading and kill). A job that kills its server only ends
  that sandbox (verdict unknown/sandbox_error): the next job gets a fresh one.
- dangerous system calls: a seccomp filter (installed by bwrap, so it binds the server and every
  job, as root and as an ordinary user) makes these fail with EPERM: unshare, setns, clone with
  any CLONE_NEW* flag (clone3 fails with ENOSYS so glibc uses clone, whose flags it checks),
  mount, umount2, pivot_root and the new mount API, ptrace, process_vm_readv/writev, bpf,
  keyctl/add_key/request_key, SysV IPC (shm*, sem*, msg*) and POSIX message queues,
  userfaultfd, perf_event_open, io_uring. Other ABIs (i386 int 0x80) are killed, x32 gets
  ENOSYS. Supported machines: x86_64, aarch64 (elsewhere SandboxUnavailable).
- one job against the next (one long-lived server runs many jobs): after every job kill(-1) in
  the sandbox's PID namespace ends every process it left (setsid daemons included); /tmp and
  /dev/shm are emptied whatever permissions the job set (chmod 000 trees included) and get
  their modes back; then the server checks it is as it started: scratch dirs empty, no other
  process, no SysV IPC object. A server that cannot get there exits and is replaced, so the
  next job never runs in a dirty sandbox. The server is non-dumpable (PR_SET_DUMPABLE 0): a job
  (same uid) can neither ptrace it nor read its /proc/PID/mem, fd/ or environ.
- privileges: no capabilities, no_new_privs, nosuid mounts. As an ordinary user bwrap uses
  --unshare-all (user namespace included). As root it unshares ipc/pid/net/uts/cgroup but no
  user namespace, and the server drops to a spare unprivileged uid before any job runs: a user
  namespace would map jobs to host uid 0, for which the kernel does not enforce RLIMIT_NPROC.

What it does NOT cover:
- kernel exploits through the system calls the filter allows (it denies the listed ones, not
  all but an allow-list), CPU side channels (Spectre-style), and timing: run time is
  shared-machine noise, not a guarantee.
- confidentiality of /usr, the Python installation and the allowed libraries: every job can
  read them.
- the server's memory image: every job is a fork of the same server, so a job can read what
  earlier requests left in that process's memory (earlier programs' source and stdin, which the
  server received and compiled). Jobs of one worker also share its namespaces and kernel state
  that outlives processes without being a file or IPC object (e.g. TCP TIME_WAIT entries on
  its loopback). The server compile()s each program before forking (it runs nothing; a program
  that crashed the compiler would only end that sandbox).
- total memory: RLIMIT_AS is per process (a job may have up to max_procs of them) and includes
  the preloaded libraries (~130 MB of address space for the defaults); tmpfs writes use host
  memory up to the tmpfs caps. No cgroups; CPU and I/O are not throttled.
- mode "unisolated-UNSAFE": rlimits, a process-group kill and a scratch cwd only; no seccomp
  filter, and the directories holding the allowed libraries are on sys.path whole. The program
  can use the network, read and write host files, and leave setsid daemons behind; as root,
  RLIMIT_NPROC is not enforced. Never use it for untrusted code.
"""
from __future__ import annotations

import importlib.metadata as metadata
import importlib.util
import logging
import os
import re
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

from selfplay_verifiers._sandbox_proc import (
    UNSAFE,
    Died,
    SandboxUnavailable,
    Server,
    Spawner,
    bwrap_path,
    probe_bwrap,
    seccomp_filter,
    server_command,
)
from selfplay_verifiers.verdict import CORRECT, INCORRECT, UNKNOWN, Verdict

__all__ = ["DEFAULT_LIBRARIES", "ExecResult", "Sandbox", "SandboxUnavailable", "UNSAFE",
           "bwrap_available"]

# Importable inside the sandbox by default (with what they need at import: sympy -> mpmath).
DEFAULT_LIBRARIES = ("sympy", "numpy", "mpmath")

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


_REQ_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def _entries(dist: metadata.Distribution) -> list[str]:
    """The top-level names a distribution installed (packages, modules, .libs dirs of vendored
    shared libraries, its .dist-info), from its RECORD, else its top_level.txt."""
    if dist.files is not None:
        tops = (f.parts[0] for f in dist.files if f.parts)
        return [t for t in dict.fromkeys(tops) if t not in ("..", "/", "__pycache__")
                and not t.endswith(".pth")]
    names = (dist.read_text("top_level.txt") or "").split()
    return [e for n in names for e in (n, n + ".py")]  # those that exist are bound


def _requirements(dist: metadata.Distribution) -> list[metadata.Distribution]:
    """Installed distributions this one needs at import (requirements without an `extra` marker;
    one whose marker excludes this platform is simply not installed)."""
    found = []
    for req in dist.requires or []:
        if ";" in req and "extra" in req.split(";", 1)[1]:
            continue
        m = _REQ_NAME.match(req)
        if m is None:
            continue
        try:
            found.append(metadata.distribution(m.group(1)))
        except metadata.PackageNotFoundError:
            continue
    return found


def _distribution(name: str) -> metadata.Distribution | None:
    """The installed distribution that provides top-level module `name`."""
    try:
        dist = metadata.distribution(name)
        if any(e == name or e.startswith(name + ".") for e in _entries(dist)):
            return dist
    except metadata.PackageNotFoundError:
        pass
    for dist_name in metadata.packages_distributions().get(name, []):
        return metadata.distribution(dist_name)
    return None


def resolve_libraries(names: Sequence[str] | None) -> tuple[list[tuple[str, list[str]]], list[str]]:
    """([(host directory, [entries to bind from it])], [modules to preload]) for the allowed
    top-level import names: each library's distribution files plus those of its requirements,
    transitively. ValueError naming a library that is not installed. Standard-library names are
    accepted and need nothing."""
    if isinstance(names, str):
        raise ValueError(f"Sandbox.libraries must be a sequence of names, not the string {names!r}")
    binds: dict[str, list[str]] = {}
    preload: list[str] = []
    seen: set[str] = set()

    def add(base: str, entries: list[str]) -> None:
        have = binds.setdefault(base, [])
        have += [e for e in entries if e not in have and os.path.lexists(os.path.join(base, e))]

    for name in dict.fromkeys(names or ()):
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"Sandbox.libraries: {name!r} is not a top-level module name")
        if name in sys.stdlib_module_names:
            continue
        spec = importlib.util.find_spec(name)
        if spec is None:
            raise ValueError(f"Sandbox.libraries: {name!r} is not installed in this environment "
                             f"({sys.executable})")
        preload.append(name)
        locs = list(spec.submodule_search_locations or [])
        path = locs[0] if locs else spec.origin
        if not path or not os.path.exists(path):
            raise ValueError(f"Sandbox.libraries: cannot locate the files of {name!r}")
        path = os.path.abspath(path)
        add(os.path.dirname(path), [os.path.basename(path)])  # the module itself, always
        dist = _distribution(name)
        todo = [dist] if dist is not None else []  # no metadata: the module alone
        while todo:
            d = todo.pop()
            key = (d.metadata["Name"] or "").lower()
            if key in seen:
                continue
            seen.add(key)
            add(os.path.abspath(str(d.locate_file(""))), _entries(d))
            todo += _requirements(d)
    return [(base, entries) for base, entries in binds.items() if entries], preload


def _classify(resp: dict[str, Any]) -> Verdict:
    status, code, sig = resp.get("status"), resp.get("exit_code"), resp.get("signal")
    secs = float(resp.get("seconds", 0.0))
    if status in ("timeout", "output_limit", "syntax_error"):
        return Verdict(INCORRECT, status, seconds=secs)
    if code == 0:
        return Verdict(CORRECT, "ok", seconds=secs)
    # The traceback's last line names the exception: MemoryError, or a subclass such as
    # numpy's "numpy._core._exceptions._ArrayMemoryError: Unable to allocate ...".
    tail = resp.get("stderr", "").strip().rsplit("\n", 1)[-1].split(":", 1)[0]
    if tail.rsplit(".", 1)[-1].endswith("MemoryError"):
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
    libraries: top-level import names jobs may import besides the standard library (default
    DEFAULT_LIBRARIES; () or None: stdlib only). Their files, and those of what they require,
    are bound read-only; nothing else of site-packages is visible. ValueError names one that is
    not installed. preload: import them in the server once, before any job, so jobs do not pay
    the import (they count toward memory_mb: ~130 MB of address space for the default set).
    """

    def __init__(self, *, timeout: float = 5.0, memory_mb: int = 1024, max_output: int = 65536,
                 max_procs: int = 64, max_file_mb: int = 16, mode: str = "bwrap",
                 workers: int | None = None,
                 libraries: Sequence[str] | None = DEFAULT_LIBRARIES,
                 preload: bool = True) -> None:
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
        self._libs, names = resolve_libraries(libraries)
        self._preload = names if preload else []
        self._seccomp: bytes | None = None
        self._scratch: str | None = None
        self._cond = threading.Condition()
        self._idle: list[Server] = []
        self._count, self._closed = 0, False
        if mode == "bwrap":
            bwrap_path()  # SandboxUnavailable, one line, when bwrap is not installed
            self._seccomp = seccomp_filter()
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
        argv, env, cwd = server_command(self.mode, self._limits, self._libs, self._preload,
                                        self._scratch)
        return Spawner.call(lambda: Server(argv, env, cwd, self._seccomp))

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
            # A server that could not get back to a clean state, or failed itself, has exited:
            # it is replaced.
            srv.dirty = bool(resp.get("dirty")) or "error" in resp
            if resp.get("dirty"):
                log.warning("sandbox server retired after a job: %s", resp["dirty"])
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


if __name__ == "__main__":  # rate check: python -m selfplay_verifiers.sandbox [N] [WORKERS] [MODE]
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
