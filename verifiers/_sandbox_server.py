"""Fork-per-job server that runs inside the sandbox. Stdlib only; never imported by the parent.
Over 350 lines on purpose: its source goes whole into the sandboxed interpreter as one stdlib-only file.

selfplay_verifiers.sandbox passes this file's *source* to `python -S -s -B -c SRC CONFIG_JSON` (so nothing
under /work has to be mounted). Protocol: requests on fd 0, responses on fd 1, each frame a 4-byte
big-endian length + UTF-8 JSON. The first response is a ready message.

Per job: fork; the child calls setsid, sets rlimits, chdirs to a fresh job dir, points fds 0/1/2
at stdin (a memfd) and two pipes, and runs the code with exec() in the already-warm interpreter
(no interpreter start per job: that is what makes it fast). The server enforces the wall clock and
the output cap, then kills every other process it may signal: kill(-1) inside the sandbox's PID
namespace (everything except bwrap's init and the server; setsid/daemon children included), or
only the job's process group in the unisolated mode. Then it empties the scratch dirs (restoring
any permissions the job removed) and checks it is back to its start state: scratch dirs empty
with their original modes, no other process, no SysV IPC object. A server that cannot get back
there says so in the response and exits; the parent starts a fresh one.

Before reporting ready it makes itself non-dumpable (PR_SET_DUMPABLE 0: a job, same uid, cannot
open /proc/<server>/mem or ptrace it) and imports the allowed libraries (cfg "preload"), so a
forked job finds them in sys.modules; gc.freeze() keeps the child's collector off those pages.
"""
import atexit
import builtins
import ctypes
import gc
import importlib
import json
import linecache
import math
import os
import resource
import select
import signal
import sys
import time
import traceback
import types

MiB = 1024 * 1024
MAX_SERVER_COMPILE = 200_000  # characters; larger programs are compiled in the job process
PR_SET_DUMPABLE, PR_GET_DUMPABLE = 4, 3
SYNTAX = (SyntaxError, ValueError)  # what compile() raises for a malformed program (ValueError:
#                                     NUL bytes in 3.11); the interpreter reports both as a SyntaxError
SYSVIPC = ("/proc/sysvipc/shm", "/proc/sysvipc/sem", "/proc/sysvipc/msg")


def _read_exact(fd, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def recv(fd):
    head = _read_exact(fd, 4)
    body = None if head is None else _read_exact(fd, int.from_bytes(head, "big"))
    return None if body is None else json.loads(body)


def send(fd, obj):
    data = json.dumps(obj).encode()
    view = memoryview(len(data).to_bytes(4, "big") + data)
    while view:
        view = view[os.write(fd, view):]


def _quit(code=None):  # -S skips site.py, which is what normally defines exit() and quit()
    raise SystemExit(code)


def _exit_status(exc):
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _child(cfg, code, compiled, fds, jobdir, syntax_fd):
    """Runs in the forked job process; never returns. syntax_fd (a program too large to compile
    in the server): written to when compile() fails, closed before the program runs, so the
    program cannot fake a syntax error."""
    try:
        os.setsid()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        if syntax_fd is not None:
            os.dup2(syntax_fd, 3)
            syntax_fd = 3
        os.closerange(3 if syntax_fd is None else 4, 1 << 16)  # protocol pipes, server's fds
        cpu = math.ceil(cfg["timeout"]) + 1
        limits = ((resource.RLIMIT_CPU, cpu, cpu + 1), (resource.RLIMIT_CORE, 0, 0),
                  (resource.RLIMIT_AS, cfg["memory_mb"] * MiB, cfg["memory_mb"] * MiB),
                  (resource.RLIMIT_FSIZE, cfg["max_file_mb"] * MiB, cfg["max_file_mb"] * MiB),
                  (resource.RLIMIT_NPROC, cfg["max_procs"], cfg["max_procs"]))
        for which, soft, hard in limits:
            resource.setrlimit(which, (soft, hard))
        os.chdir(jobdir)
        sys.argv[:] = ["main.py"]
        sys.path.insert(0, jobdir)
        main = types.ModuleType("__main__")
        main.__builtins__ = builtins
        sys.modules["__main__"] = main
        linecache.cache["main.py"] = (len(code), None, code.splitlines(True), "main.py")
    except BaseException as exc:
        os.write(2, f"sandbox: job setup failed: {exc!r}\n".encode())
        os._exit(126)
    status = 0
    if compiled is None:
        try:
            compiled = compile(code, "main.py", "exec", dont_inherit=True)
        except SYNTAX as exc:
            sys.stderr.write("".join(traceback.format_exception_only(type(exc), exc)))
            sys.stderr.flush()
            os.write(syntax_fd, b"S")
            os._exit(1)
        except BaseException as exc:  # MemoryError, RecursionError: raised below as the program's
            compiled = exc
    if syntax_fd is not None:
        os.close(syntax_fd)
    try:
        if isinstance(compiled, BaseException):  # e.g. MemoryError from compile()
            raise compiled
        exec(compiled, main.__dict__)
    except SystemExit as exc:
        status = _exit_status(exc)
    except BaseException as exc:
        # Print like the interpreter would, without the server's own frame (tb_next).
        tb = exc.__traceback__.tb_next if exc.__traceback__ else None
        traceback.print_exception(type(exc), exc, tb)
        status = 1
    try:  # what a normal interpreter exit does: join non-daemon threads, run atexit, flush
        if "threading" in sys.modules:
            sys.modules["threading"]._shutdown()
        atexit._run_exitfuncs()
    except BaseException:
        pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            status = status or 120
    os._exit(status)


def _drain(fd, buf, cap):
    """Read what is available without blocking; True at EOF. Stops once buf exceeds cap."""
    while len(buf) <= cap:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return False
        if not chunk:
            return True
        buf += chunk
    return False


def _pids():
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _kill_rest(cfg, pid):
    """Kill everything the job left behind; False when something survives (server then retires)."""
    if not cfg["isolated"]:
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
        return True
    me = os.getpid()
    end = time.monotonic() + 2.0
    while True:
        try:  # in a PID namespace: every process but its init (bwrap) and the caller
            os.kill(-1, signal.SIGKILL)
        except OSError:
            pass
        # Orphans are reaped by bwrap's init; wait until they are gone from /proc.
        if all(p in (1, me) for p in _pids()):
            return True
        if time.monotonic() > end:
            return False
        time.sleep(0.0005)


def _scan(problems):
    """Unlink every non-directory in the cwd; return the names of its subdirectories."""
    subdirs = []
    with os.scandir(".") as it:
        entries = list(it)
    for e in entries:
        try:
            if e.is_dir(follow_symlinks=False):
                subdirs.append(e.name)
            else:
                os.unlink(e.name)
        except OSError as exc:
            problems.append(f"cannot remove {e.path}: {exc.strerror}")
    return subdirs


def _empty(top, problems):
    """Delete everything under top, however deep, whatever modes the job set: each directory is
    made 0700 (its owner, the server's uid, may always do that) before it is entered. Walks with
    chdir and names, not paths or fds, so neither PATH_MAX nor the fd limit bounds the depth."""
    os.chdir(top)
    names, pending = [], [_scan(problems)]
    while pending:
        if not pending[-1]:
            pending.pop()
            if names:
                os.chdir("..")
                os.rmdir(names.pop())
            continue
        name = pending[-1].pop()
        os.chmod(name, 0o700)
        os.chdir(name)
        names.append(name)
        pending.append(_scan(problems))


def _ipc_objects():
    """SysV IPC objects in this IPC namespace: (file, key, id) of every row."""
    found = set()
    for path in SYSVIPC:
        if not os.path.exists(path):  # a kernel without SysV IPC
            continue
        with open(path) as f:
            for line in f.read().splitlines()[1:]:
                key, ident = line.split()[:2]
                found.add((path, key, ident))
    return found


def start_state(cfg):
    """What "clean" means for this server: the scratch dirs' modes, the SysV IPC objects."""
    return {"modes": {d: os.stat(d).st_mode & 0o7777 for d in cfg["clean"]},
            "ipc": _ipc_objects() if cfg["isolated"] else set()}


def make_clean(cfg, state):
    """Empty the scratch dirs and check the server is as it started; [] or what is wrong."""
    problems = []
    for d, mode in state["modes"].items():
        try:
            if os.stat(d).st_mode & 0o7777 != mode:  # a job that owns d (user namespace) chmod-ed it
                os.chmod(d, mode)
            _empty(d, problems)
            left = os.listdir(d)
            if left:
                problems.append(f"{d} not empty: {sorted(left)[:5]}")
        except OSError as exc:
            problems.append(f"cannot empty {d}: {exc.filename}: {exc.strerror}")
    try:
        os.chdir(cfg["base"])
        if cfg["isolated"] and _ipc_objects() != state["ipc"]:
            problems.append("SysV IPC objects left behind")
    except OSError as exc:
        problems.append(f"cannot check: {exc.filename}: {exc.strerror}")
    return problems


def run_job(cfg, req, state):
    code, stdin = req["code"], req.get("stdin") or ""
    timeout, cap = float(req.get("timeout") or cfg["timeout"]), cfg["max_output"]
    compiled = None
    t0 = time.monotonic()
    if len(code) <= MAX_SERVER_COMPILE:
        # Compiling here, where the parser's memory is already warm, saves ~1.3 ms per job of
        # page faults in the fresh child. compile() runs no code; its size is capped here.
        try:
            compiled = compile(code, "main.py", "exec", dont_inherit=True)
        except SYNTAX as exc:  # no job to run: report it as the interpreter would
            return {"stdout": "", "stderr": "".join(traceback.format_exception_only(type(exc), exc)),
                    "exit_code": 1, "signal": None, "status": "syntax_error",
                    "seconds": time.monotonic() - t0, "dirty": False}
        except Exception as exc:  # MemoryError, RecursionError: the job raises it
            exc.__traceback__ = None
            compiled = exc
    jobdir = os.path.join(cfg["base"], "job")
    os.mkdir(jobdir, 0o700)
    if stdin:
        in_fd = os.memfd_create("stdin")
        data = memoryview(stdin.encode("utf-8", "surrogateescape"))
        while data:
            data = data[os.write(in_fd, data):]
        os.lseek(in_fd, 0, os.SEEK_SET)
    else:
        in_fd = os.open(os.devnull, os.O_RDONLY)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    syn_r, syn_w = os.pipe() if compiled is None else (None, None)
    pid = os.fork()
    if pid == 0:
        _child(dict(cfg, timeout=timeout), code, compiled, (in_fd, out_w, err_w), jobdir, syn_w)
    del compiled
    for fd in (in_fd, out_w, err_w, syn_w):
        if fd is not None:
            os.close(fd)
    pidfd = os.pidfd_open(pid)
    poller = select.poll()
    bufs = {out_r: bytearray(), err_r: bytearray()}
    for fd in (out_r, err_r, pidfd):
        os.set_blocking(fd, False)
        poller.register(fd, select.POLLIN)
    status, exited, deadline = None, False, t0 + timeout
    while status is None:
        left = deadline - time.monotonic()
        if left <= 0:
            status = "timeout"
            break
        for fd, _ in poller.poll(math.ceil(left * 1000)):
            if fd == pidfd:
                exited = True
            elif _drain(fd, bufs[fd], cap):
                poller.unregister(fd)
        if exited:  # a lingering child may hold the pipes open: take what is there and stop
            for fd, buf in bufs.items():
                _drain(fd, buf, cap)
        if any(len(b) > cap for b in bufs.values()):
            status = "output_limit"
        elif exited:
            break
    seconds = time.monotonic() - t0
    if status is not None:
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
    _, wstatus = os.waitpid(pid, 0)
    problems = [] if _kill_rest(cfg, pid) else ["processes left behind"]
    if syn_r is not None:
        os.set_blocking(syn_r, False)
        try:
            if status is None and os.read(syn_r, 1) == b"S":
                status = "syntax_error"
        except BlockingIOError:
            pass
        os.close(syn_r)
    for fd in (out_r, err_r, pidfd):
        os.close(fd)
    problems += make_clean(cfg, state)
    sig = os.WTERMSIG(wstatus) if os.WIFSIGNALED(wstatus) else None
    return {"stdout": bytes(bufs[out_r][:cap]).decode("utf-8", "replace"),
            "stderr": bytes(bufs[err_r][:cap]).decode("utf-8", "replace"),
            "exit_code": os.WEXITSTATUS(wstatus) if os.WIFEXITED(wstatus) else None,
            "signal": sig, "status": status, "seconds": seconds,
            "dirty": "; ".join(problems) if problems else False}


def _no_dumping():
    """PR_SET_DUMPABLE 0: processes of the same uid (the jobs) can neither ptrace this server nor
    open its /proc/PID/mem, fd/ or environ. Forked jobs inherit it (they never exec)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0 or libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")


def _preload(names):
    """Import the allowed libraries once, here, so forked jobs do not pay for it. None, or why
    not: an import error, or a library that started threads (forking then would be unsafe)."""
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:  # reported to the parent, which raises it at Sandbox()
            return f"library {name!r} failed to import in the sandbox: {type(exc).__name__}: {exc}"
    threads = len(os.listdir("/proc/self/task"))
    if threads != 1:
        return f"importing {', '.join(names)} started {threads - 1} thread(s); forking jobs is unsafe"
    gc.collect()
    gc.freeze()  # the children's collections skip these objects: fewer copy-on-write faults
    return None


def _vm_size():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def main():
    cfg = json.loads(sys.argv[1])
    if cfg.get("uid") is not None:  # started as root without a user namespace: drop to the job uid
        os.setgroups([])
        os.setresgid(cfg["gid"], cfg["gid"], cfg["gid"])
        os.setresuid(cfg["uid"], cfg["uid"], cfg["uid"])
    if cfg["isolated"] and os.getpid() > 3:  # kill(-1) outside a fresh PID namespace: never
        send(1, {"ready": False, "error": f"not in a new PID namespace (pid {os.getpid()})"})
        return
    _no_dumping()  # after the uid change, which may reset it
    builtins.exit = builtins.quit = _quit
    sys.path[:0] = cfg.get("paths", [])
    why = _preload(cfg.get("preload", []))
    if why is not None:
        send(1, {"ready": False, "error": why, "library": True})
        return
    # A pathological compile() in the server fails with MemoryError, not by eating the host.
    server_mem = _vm_size() + max(cfg["memory_mb"], 512) * MiB
    resource.setrlimit(resource.RLIMIT_AS, (server_mem, server_mem))
    os.chdir(cfg["base"])
    state = start_state(cfg)
    problems = make_clean(cfg, state)
    if problems:
        send(1, {"ready": False, "error": "; ".join(problems)})
        return
    send(1, {"ready": True, "pid": os.getpid(), "uid": os.getuid(), "vm_size": _vm_size()})
    while True:
        req = recv(0)
        if req is None:
            return
        try:
            resp = run_job(cfg, req, state)
        except Exception as exc:  # the server itself failed: report it; the parent restarts us
            resp = {"error": f"{type(exc).__name__}: {exc}"}
        send(1, resp)
        if resp.get("dirty") or "error" in resp:  # not clean: leave; the parent starts a new one
            return


if __name__ == "__main__":
    main()
