"""Parent-side plumbing for verifiers.sandbox: bwrap command line, server processes, framing.

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
_uids = itertools.count()


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


def server_command(mode: str, limits: dict[str, Any], site: list[str], scratch: str | None
                   ) -> tuple[list[str], dict[str, str], str | None]:
    """(argv, env, cwd) that start one server. Only PATH/HOME/LANG/... reach it: never os.environ."""
    exe = os.path.realpath(sys.executable)
    env = {"PATH": PATH, "HOME": "/tmp", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0",
           "TMPDIR": "/tmp"}
    py = [exe, "-S", "-s", "-B", "-c", SERVER_SRC]  # -S: no site, no .pth; PYTHONHASHSEED applies
    if mode == UNSAFE:
        assert scratch is not None
        cfg = dict(limits, isolated=False, base=scratch, clean=[scratch], paths=site, uid=None)
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
    paths = [f"/opt/site-packages/{i}" for i in range(len(site))]
    if site:
        args += ["--perms", "0755", "--dir", "/opt", "--perms", "0755", "--dir", "/opt/site-packages"]
    for src, dest in zip(site, paths):
        args += ["--ro-bind", src, dest]
    tmp_bytes = max(64, 4 * limits["max_file_mb"]) * 2**20
    args += ["--perms", "1777", "--size", str(tmp_bytes), "--tmpfs", "/tmp",
             "--proc", "/proc", "--dev", "/dev",
             "--perms", "1777", "--size", str(16 * 2**20), "--tmpfs", "/dev/shm",
             "--remount-ro", "/dev", "--remount-ro", "/", "--clearenv"]
    for key, value in env.items():
        args += ["--setenv", key, value]
    cfg = dict(limits, isolated=True, base="/tmp", clean=["/tmp", "/dev/shm"], paths=paths,
               uid=None, gid=None)
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

    def __init__(self, argv: list[str], env: dict[str, str], cwd: str | None) -> None:
        self._err = tempfile.TemporaryFile()  # a file, not a pipe: it can never fill and block
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._err, env=env, cwd=cwd, close_fds=True,
                                     start_new_session=True)
        self.dirty = False
        try:
            hello = self._recv(time.monotonic() + START_TIMEOUT)
        except Died as exc:
            why = self._first_stderr_line() or str(exc)
            self.kill()
            raise unavailable(why) from None
        if not hello.get("ready"):
            self.kill()
            raise unavailable(hello.get("error", "server refused to start"))

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
