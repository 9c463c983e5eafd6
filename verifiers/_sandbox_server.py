"""Fork-per-job server that runs inside the sandbox. Stdlib only; never imported by the parent.

verifiers.sandbox passes this file's *source* to `python -S -s -B -c SRC CONFIG_JSON` (so nothing
under /work has to be mounted). Protocol: requests on fd 0, responses on fd 1, each frame a 4-byte
big-endian length + UTF-8 JSON. The first response is a ready message.

Per job: fork; the child calls setsid, sets rlimits, chdirs to a fresh job dir, points fds 0/1/2
at stdin (a memfd) and two pipes, and runs the code with exec() in the already-warm interpreter
(no interpreter start per job: that is what makes it fast). The server enforces the wall clock and
the output cap, then kills every other process it may signal: kill(-1) inside the sandbox's PID
namespace (everything except bwrap's init and the server; setsid/daemon children included), or
only the job's process group in the unisolated mode. Then it empties the scratch dirs.
"""
import atexit
import builtins
import json
import linecache
import math
import os
import resource
import select
import shutil
import signal
import sys
import time
import traceback
import types

MiB = 1024 * 1024
MAX_SERVER_COMPILE = 200_000  # characters; larger programs are compiled in the job process


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


def _child(cfg, code, compiled, fds, jobdir):
    """Runs in the forked job process; never returns."""
    try:
        os.setsid()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        os.closerange(3, 1 << 16)  # the protocol pipes and the server's other fds
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
    try:
        if isinstance(compiled, BaseException):  # SyntaxError etc. from compiling in the server
            raise compiled
        exec(compiled or compile(code, "main.py", "exec"), main.__dict__)
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


def _clean(dirs):
    for d in dirs:
        try:
            entries = list(os.scandir(d))
        except OSError:
            continue
        for e in entries:
            try:
                if e.is_dir(follow_symlinks=False):
                    shutil.rmtree(e.path, ignore_errors=True)
                else:
                    os.unlink(e.path)
            except OSError:
                pass


def run_job(cfg, req):
    code, stdin = req["code"], req.get("stdin") or ""
    timeout, cap = float(req.get("timeout") or cfg["timeout"]), cfg["max_output"]
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
    t0 = time.monotonic()
    compiled = None
    if len(code) <= MAX_SERVER_COMPILE:
        # Compiling here, where the parser's memory is already warm, saves ~1.3 ms per job of
        # page faults in the fresh child. compile() runs no code; its size is capped here.
        try:
            compiled = compile(code, "main.py", "exec", dont_inherit=True)
        except Exception as exc:
            exc.__traceback__ = None
            compiled = exc
    pid = os.fork()
    if pid == 0:
        _child(dict(cfg, timeout=timeout), code, compiled, (in_fd, out_w, err_w), jobdir)
    del compiled
    for fd in (in_fd, out_w, err_w):
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
    clean = _kill_rest(cfg, pid)
    for fd in (out_r, err_r, pidfd):
        os.close(fd)
    _clean(cfg["clean"])
    sig = os.WTERMSIG(wstatus) if os.WIFSIGNALED(wstatus) else None
    return {"stdout": bytes(bufs[out_r][:cap]).decode("utf-8", "replace"),
            "stderr": bytes(bufs[err_r][:cap]).decode("utf-8", "replace"),
            "exit_code": os.WEXITSTATUS(wstatus) if os.WIFEXITED(wstatus) else None,
            "signal": sig, "status": status, "seconds": seconds, "dirty": not clean}


def main():
    cfg = json.loads(sys.argv[1])
    if cfg.get("uid") is not None:  # started as root without a user namespace: drop to the job uid
        os.setgroups([])
        os.setresgid(cfg["gid"], cfg["gid"], cfg["gid"])
        os.setresuid(cfg["uid"], cfg["uid"], cfg["uid"])
    if cfg["isolated"] and os.getpid() > 3:  # kill(-1) outside a fresh PID namespace: never
        send(1, {"ready": False, "error": f"not in a new PID namespace (pid {os.getpid()})"})
        return
    # A pathological compile() in the server fails with MemoryError, not by eating the host.
    server_mem = max(cfg["memory_mb"], 512) * MiB
    resource.setrlimit(resource.RLIMIT_AS, (server_mem, server_mem))
    builtins.exit = builtins.quit = _quit
    sys.path[:0] = cfg.get("paths", [])
    os.chdir(cfg["base"])
    _clean(cfg["clean"])
    send(1, {"ready": True, "pid": os.getpid(), "uid": os.getuid()})
    while True:
        req = recv(0)
        if req is None:
            return
        try:
            resp = run_job(cfg, req)
        except Exception as exc:  # the server itself failed: report it; the parent restarts us
            resp = {"error": f"{type(exc).__name__}: {exc}"}
        send(1, resp)


if __name__ == "__main__":
    main()
