"""Parent-side plumbing for selfplay_verifiers.sandbox: bwrap command line, server processes, framing.

The server itself is verifiers/_sandbox_server.py; its source is passed with `python -c`, so
nothing under the project directory has to be visible inside the sandbox.
"""
from __future__ import annotations

import itertools
import json
import os
import queue
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

BWRAP = "bwrap"
UNSAFE = "unisolated-UNSAFE"
INSTALL = "apt-get install -y bubblewrap"
START_TIMEOUT = 15.0
SERVER_SRC = Path(__file__).with_name("_sandbox_server.py").read_text()
PATH = "/usr/local/bin:/usr/bin:/bin"
# Libraries must not start thread pools at import: the server imports them, then forks jobs.
THREADS_ENV = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                 "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")}
LIB_ROOT = "/opt/site-packages"  # allowed libraries are bound under LIB_ROOT/N, one N per host dir
_uids = itertools.count()

# ---- seccomp ------------------------------------------------------------------------------------
# A classic-BPF program handed to bwrap (--seccomp FD), which installs it (no_new_privs is set)
# right before it execs the server: the server and every job run under it. Denied calls fail
# with EPERM (a Python OSError), not a kill. Numbers: asm/unistd_64.h (x86_64) and
# asm-generic/unistd.h (aarch64).
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
DENIED = {  # name: (x86_64, aarch64)
    # namespaces and mounts: what containment rests on
    "unshare": (272, 97), "setns": (308, 268), "mount": (165, 40), "umount2": (166, 39),
    "pivot_root": (155, 41), "open_tree": (428, 428), "move_mount": (429, 429),
    "fsopen": (430, 430), "fsconfig": (431, 431), "fsmount": (432, 432), "fspick": (433, 433),
    "mount_setattr": (442, 442),
    # reading or writing other processes
    "ptrace": (101, 117), "process_vm_readv": (310, 270), "process_vm_writev": (311, 271),
    # kernel keyrings, eBPF: shared kernel state, large attack surface
    "keyctl": (250, 219), "add_key": (248, 217), "request_key": (249, 218), "bpf": (321, 280),
    # IPC objects that outlive a process (the IPC namespace is per sandbox, not per job)
    "shmget": (29, 194), "shmat": (30, 196), "shmctl": (31, 195), "semget": (64, 190),
    "semop": (65, 193), "semtimedop": (220, 192), "semctl": (66, 191), "msgget": (68, 186),
    "msgsnd": (69, 189), "msgrcv": (70, 188), "msgctl": (71, 187), "mq_open": (240, 180),
    "mq_unlink": (241, 181), "mq_timedsend": (242, 182), "mq_timedreceive": (243, 183),
    "mq_notify": (244, 184), "mq_getsetattr": (245, 185),
    # rarely needed kernel surfaces with a history of exploits
    "userfaultfd": (323, 282), "perf_event_open": (298, 241), "io_uring_setup": (425, 425),
    "io_uring_enter": (426, 426), "io_uring_register": (427, 427),
}
CLONE, CLONE3 = (56, 220), 435
# CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET (CLONE_NEWTIME exists
# only for clone3/unshare, both refused).
CLONE_NEW_MASK = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 \
    | 0x40000000
X32_BIT = 0x40000000
_RET_ALLOW, _RET_KILL_PROCESS, _RET_ERRNO = 0x7FFF0000, 0x80000000, 0x00050000
_EPERM, _ENOSYS = 1, 38
_LD_ABS_W, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06


def seccomp_filter(machine: str | None = None) -> bytes:
    """The BPF program (struct sock_filter[]) for this machine's syscall ABI. A foreign ABI
    (i386 via int 0x80) kills the process; x32 numbers and clone3 get ENOSYS (glibc then uses
    clone, whose flags a filter can read; clone3's are behind a pointer)."""
    machine = machine or os.uname().machine
    if machine not in AUDIT_ARCH:
        raise SandboxUnavailable(f"no seccomp filter for machine {machine!r} (supported: "
                                 f"{', '.join(AUDIT_ARCH)}); pass mode={UNSAFE!r} to run code "
                                 "without isolation")
    col = 0 if machine == "x86_64" else 1
    prog: list[tuple[int, Any, Any, int]] = [
        (_LD_ABS_W, 0, 0, 4),                               # seccomp_data.arch
        (_JEQ, 1, 0, AUDIT_ARCH[machine]),
        (_RET, 0, 0, _RET_KILL_PROCESS),
        (_LD_ABS_W, 0, 0, 0)]                               # seccomp_data.nr
    if machine == "x86_64":
        prog.append((_JGE, "enosys", 0, X32_BIT))
    prog += [(_JEQ, "eperm", 0, nrs[col]) for nrs in DENIED.values()]
    prog += [(_JEQ, "clone", 0, CLONE[col]), (_JEQ, "enosys", 0, CLONE3),
             (_RET, 0, 0, _RET_ALLOW)]
    labels = {"clone": len(prog)}
    prog += [(_LD_ABS_W, 0, 0, 16),                         # low 32 bits of args[0]: the flags
             (_JSET, "eperm", 0, CLONE_NEW_MASK), (_RET, 0, 0, _RET_ALLOW)]
    labels["eperm"] = len(prog)
    prog.append((_RET, 0, 0, _RET_ERRNO | _EPERM))
    labels["enosys"] = len(prog)
    prog.append((_RET, 0, 0, _RET_ERRNO | _ENOSYS))
    out = bytearray()
    for i, (code, jt, jf, k) in enumerate(prog):
        jt, jf = (labels[j] - i - 1 if isinstance(j, str) else j for j in (jt, jf))
        out += struct.pack("=HBBI", code, jt, jf, k)
    return bytes(out)


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing or cannot create namespaces here (one-line message with the fix)."""


def unavailable(why: str) -> SandboxUnavailable:
    why = " ".join(why.split())[:300]
    return SandboxUnavailable(f"bubblewrap sandbox unavailable ({why}); install it with "
                              f"`{INSTALL}`, or pass mode={UNSAFE!r} to run code without isolation")


def bwrap_path() -> str:
    path = shutil.which(BWRAP)
    if not path:
        raise unavailable(f"`{BWRAP}` not found on PATH")
    return path


def unshare_args() -> list[str]:
    if os.geteuid() == 0:
        # As root, a user namespace would map the jobs to host uid 0, for which the kernel does
        # not enforce RLIMIT_NPROC. So: no user namespace; the server drops to a spare uid.
        return ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
                "--unshare-cgroup-try"]
    return ["--unshare-all"]


def system_binds() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64"):
        if os.path.islink(top):  # merged-/usr systems: /bin -> usr/bin
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    if os.path.exists("/etc/ld.so.cache"):
        args += ["--perms", "0755", "--dir", "/etc",  # else created 0700: unreadable as a uid
                 "--ro-bind", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    return args


def site_dirs() -> list[str]:
    """Every site-packages directory of this interpreter and of the one its venv is based on."""
    import site
    import sysconfig
    dirs = list(site.getsitepackages())
    for key in ("purelib", "platlib"):
        dirs.append(sysconfig.get_path(key, vars={"base": sys.base_prefix,
                                                   "platbase": sys.base_exec_prefix}))
    dirs += [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))]
    return [d for d in dict.fromkeys(os.path.realpath(d) for d in dirs) if os.path.isdir(d)]


def server_command(mode: str, limits: dict[str, Any], libs: list[tuple[str, list[str]]],
                   preload: list[str], scratch: str | None
                   ) -> tuple[list[str], dict[str, str], str | None]:
    """(argv, env, cwd) that start one server. Only PATH/HOME/LANG/... reach it: never os.environ.
    libs: (host directory, [top-level entries in it]) to bind read-only and put on sys.path, in
    order; preload: modules the server imports before it reports ready."""
    exe = os.path.realpath(sys.executable)
    env = {"PATH": PATH, "HOME": "/tmp", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0",
           "TMPDIR": "/tmp", **THREADS_ENV}
    py = [exe, "-S", "-s", "-B", "-c", SERVER_SRC]  # -S: no site, no .pth; PYTHONHASHSEED applies
    if mode == UNSAFE:
        assert scratch is not None
        cfg = dict(limits, isolated=False, base=scratch, clean=[scratch], uid=None,
                   paths=[src for src, _ in libs], preload=preload)
        return py + [json.dumps(cfg)], dict(env, HOME=scratch, TMPDIR=scratch), scratch
    args = [bwrap_path(), *unshare_args(), "--die-with-parent", "--new-session", *system_binds()]
    bound = ["/usr/"]
    for src in (os.path.realpath(sys.base_prefix), os.path.dirname(exe)):
        if not any((src + "/").startswith(b) for b in bound):  # the interpreter, read-only
            # bwrap would copy the parents' modes (/root is 0700): make them traversable.
            parents = Path(src).parents
            for parent in reversed([str(p) for p in parents if str(p) != "/"]):
                args += ["--perms", "0755", "--dir", parent]
            args += ["--ro-bind", src, src]
            bound.append(src + "/")
    # The interpreter's own site-packages dirs, where visible (under /usr or the bound prefix),
    # are covered with an empty read-only tmpfs: a job that adds them to sys.path finds nothing.
    for d in site_dirs():
        if any((d + "/").startswith(b) for b in bound):
            args += ["--tmpfs", d, "--remount-ro", d]
    paths = [f"{LIB_ROOT}/{i}" for i in range(len(libs))]
    if libs:
        args += ["--perms", "0755", "--dir", os.path.dirname(LIB_ROOT),
                 "--perms", "0755", "--dir", LIB_ROOT]
    for (src, entries), dest in zip(libs, paths):
        args += ["--perms", "0755", "--dir", dest]
        for entry in entries:  # only the allowed packages, not the whole directory
            args += ["--ro-bind", os.path.join(src, entry), os.path.join(dest, entry)]
    tmp_bytes = max(64, 4 * limits["max_file_mb"]) * 2**20
    args += ["--perms", "1777", "--size", str(tmp_bytes), "--tmpfs", "/tmp",
             "--proc", "/proc", "--dev", "/dev",
             "--perms", "1777", "--size", str(16 * 2**20), "--tmpfs", "/dev/shm",
             "--remount-ro", "/dev", "--remount-ro", "/", "--clearenv"]
    for key, value in env.items():
        args += ["--setenv", key, value]
    cfg = dict(limits, isolated=True, base="/tmp", clean=["/tmp", "/dev/shm"], paths=paths,
               preload=preload, uid=None, gid=None)
    if os.geteuid() == 0:
        # A spare uid per server, so RLIMIT_NPROC counts only this sandbox's processes.
        uid = 1_900_000_000 + (os.getpid() * 64 + next(_uids)) % 90_000_000
        cfg.update(uid=uid, gid=uid)
        args += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    return args + ["--chdir", "/tmp", *py, json.dumps(cfg)], {"PATH": PATH}, None


def probe_bwrap() -> bool:
    """True when bwrap exists and can create the namespaces the sandbox uses."""
    try:
        argv = [bwrap_path(), *unshare_args(), "--die-with-parent", *system_binds(),
                "--proc", "/proc", "--dev", "/dev", "/usr/bin/true"]
        return subprocess.run(argv, env={}, capture_output=True, timeout=10).returncode == 0
    except (SandboxUnavailable, OSError, subprocess.SubprocessError):
        return False


class Spawner:
    """Starts servers from one long-lived thread. --die-with-parent (PR_SET_PDEATHSIG) fires when
    the *thread* that forked bwrap exits: a server started from a short-lived thread (a
    ThreadPoolExecutor's) would otherwise die with it."""

    _lock = threading.Lock()
    _queue: queue.SimpleQueue | None = None

    @classmethod
    def call(cls, fn: Any) -> Any:
        with cls._lock:
            if cls._queue is None:
                cls._queue = queue.SimpleQueue()
                threading.Thread(target=cls._loop, args=(cls._queue,), name="sandbox-spawner",
                                 daemon=True).start()
        fut: Future = Future()
        cls._queue.put((fn, fut))
        return fut.result()

    @staticmethod
    def _loop(q: queue.SimpleQueue) -> None:
        while True:
            fn, fut = q.get()
            try:
                fut.set_result(fn())
            except BaseException as exc:  # handed to the caller
                fut.set_exception(exc)


class Died(Exception):
    def __init__(self, why: str, before_job: bool = False) -> None:
        super().__init__(why)
        self.before_job = before_job


class Server:
    """One sandbox: a bwrap (or plain) process running the fork-per-job server."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: str | None,
                 seccomp: bytes | None = None) -> None:
        self._err = tempfile.TemporaryFile()  # a file, not a pipe: it can never fill and block
        fds: tuple[int, ...] = ()
        if seccomp is not None:  # bwrap reads the BPF program from a pipe: --seccomp FD
            r, w = os.pipe()
            os.write(w, seccomp)  # a few hundred bytes: fits in the pipe buffer
            os.close(w)
            fds, argv = (r,), [argv[0], "--seccomp", str(r), *argv[1:]]
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=self._err, env=env, cwd=cwd, close_fds=True,
                                         pass_fds=fds, start_new_session=True)
        finally:
            for fd in fds:
                os.close(fd)
        self.dirty = False
        try:
            hello = self._recv(time.monotonic() + START_TIMEOUT)
        except Died as exc:
            why = self._first_stderr_line() or str(exc)
            self.kill()
            raise unavailable(why) from None
        if not hello.get("ready"):
            self.kill()
            if hello.get("library"):  # not a bwrap problem: no install hint
                raise SandboxUnavailable(hello["error"])
            raise unavailable(hello.get("error", "server refused to start"))
        self.vm_size = int(hello.get("vm_size", 0))

    def _first_stderr_line(self) -> str:
        try:
            self._err.seek(0)
            lines = self._err.read(4096).decode("utf-8", "replace").strip().splitlines()
        except (OSError, ValueError):
            return ""
        return lines[0] if lines else ""

    def alive(self) -> bool:
        return self.proc.poll() is None and not self.dirty

    def call(self, req: dict[str, Any], timeout: float) -> dict[str, Any]:
        data = json.dumps(req).encode()
        try:
            self.proc.stdin.write(len(data).to_bytes(4, "big") + data)
            self.proc.stdin.flush()
        except (OSError, ValueError):
            raise Died("sandbox server was gone before the job", before_job=True) from None
        return self._recv(time.monotonic() + timeout)

    def _recv(self, deadline: float) -> dict[str, Any]:
        head = self._read(4, deadline)
        return json.loads(self._read(int.from_bytes(head, "big"), deadline))

    def _read(self, n: int, deadline: float) -> bytes:
        fd, buf = self.proc.stdout.fileno(), bytearray()
        while len(buf) < n:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise Died("sandbox server did not answer in time")
            chunk = os.read(fd, n - len(buf))
            if not chunk:
                raise Died("sandbox server died during the job (the job may have killed it)")
            buf += chunk
        return bytes(buf)

    def kill(self) -> None:
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        try:  # stdin EOF makes an idle server exit; kill it if it does not, within a moment
            self.proc.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._err.close()
