"""Isolation between jobs of ONE long-lived sandbox server, and the seccomp filter.

Each test runs its programs as separate jobs of one server, as the pipeline does: through the
CLI (`python -m selfplay_verifiers run-code A.py B.py`, workers=1) or one Sandbox(workers=1). Jobs print
`os.readlink('/proc/self/ns/pid')`: equal values prove two jobs ran in the same sandbox (a
replaced server has a new PID namespace).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import selfplay_verifiers
from selfplay_verifiers._sandbox_proc import AUDIT_ARCH, CLONE, DENIED, seccomp_filter
from selfplay_verifiers.sandbox import Sandbox, SandboxUnavailable, bwrap_available

ROOT = Path(selfplay_verifiers.__file__).resolve().parent.parent
NOBODY = 65534
BWRAP_OK = bwrap_available()
pytestmark = pytest.mark.skipif(
    not BWRAP_OK, reason="bubblewrap cannot create namespaces here (apt-get install -y bubblewrap)")

NS = "import os\nNS = os.readlink('/proc/self/ns/pid')\n"
CALL = ("import ctypes, json, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "def call(name, *args):\n"
        "    ret = getattr(libc, name)(*args)\n"
        "    return [ret, os.strerror(ctypes.get_errno()) if ret == -1 else None]\n")
EPERM = os.strerror(1)


@pytest.fixture(scope="module")
def unprivileged():
    """(command prefix, cwd, uid) that run `python -m selfplay_verifiers` as an ordinary user: this process
    itself when it is not root; as root, user 65534 via setpriv, with a world-readable copy of the
    verifiers package and an interpreter that user can run (the venv's may live under /root).
    Skips, naming why, only where no such interpreter exists."""
    if os.geteuid() != 0:
        yield [sys.executable], str(ROOT), os.geteuid()
        return
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is needed to run the CLI as user 65534")
    d = tempfile.mkdtemp(prefix="isolation-pkg-")
    try:
        os.chmod(d, 0o755)
        shutil.copytree(ROOT / "verifiers", os.path.join(d, "selfplay_verifiers"),  # the folder, under its import name
                        ignore=shutil.ignore_patterns("__pycache__"))
        start = "from selfplay_verifiers.sandbox import Sandbox\nSandbox(libraries=(), workers=1).close()"
        setpriv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
        tried = []
        for exe in dict.fromkeys((os.path.realpath(sys.executable), "/usr/bin/python3")):
            probe = subprocess.run([*setpriv, exe, "-c", start], cwd=d, capture_output=True,
                                   text=True, timeout=60)
            if probe.returncode == 0:
                yield [*setpriv, exe], d, NOBODY
                return
            tried.append(f"{exe}: {(probe.stderr.strip().splitlines() or ['?'])[-1]}")
        pytest.skip(f"no interpreter user {NOBODY} can start a sandbox with ({'; '.join(tried)})")
    finally:
        shutil.rmtree(d)


def run_code(programs: list[str], *args: str, as_user: tuple | None = None
             ) -> tuple[int, list[tuple[str, dict]]]:
    """Run the programs with one `run-code` call; (exit status, [(stdout, verdict json)]).
    as_user: the `unprivileged` fixture's value, to run it as an ordinary user."""
    prefix, cwd = ([sys.executable], str(ROOT)) if as_user is None else as_user[:2]
    d = tempfile.mkdtemp(prefix="isolation-")
    try:
        os.chmod(d, 0o755)  # readable by user 65534 too
        files = []
        for i, code in enumerate(programs):
            files.append(os.path.join(d, f"p{i}.py"))
            Path(files[-1]).write_text(code)
            os.chmod(files[-1], 0o644)
        res = subprocess.run([*prefix, "-m", "selfplay_verifiers", "run-code", *args, *files], cwd=cwd,
                             capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(d)
    out, results, buf = res.stdout.splitlines(), [], []
    for line in out:
        if files[len(results):] and line.startswith('{"file": ') \
                and json.loads(line)["file"] == files[len(results)]:
            results.append(("\n".join(buf), json.loads(line)))
            buf = []
        else:
            buf.append(line)
    assert len(results) == len(programs), res.stdout + res.stderr
    return res.returncode, results


def outputs(results: list[tuple[str, dict]]) -> list[dict]:
    for stdout, verdict in results:
        assert (verdict["verdict"], verdict["reason"]) == ("correct", "ok"), verdict
    return [json.loads(stdout) for stdout, _ in results]


# ---- leftovers of one job never reach the next ------------------------------------------------

LEAVE_UNREMOVABLE = NS + (
    "import json\nos.makedirs('a/b/c')\n"
    "for p in ('a/f', 'a/b/g', 'a/b/c/h', '/tmp/top', '/dev/shm/seg'):\n"
    "    open(p, 'w').write('x')\n"
    "os.makedirs('/tmp/deep/er')\nopen('/tmp/deep/er/f', 'w').write('x')\n"
    "for p in ('a/b/c', 'a/b', 'a', '/tmp/deep/er', '/tmp/deep', '.'):\n"
    "    os.chmod(p, 0)\n"
    "chmod_tmp = {}\n"
    "for p in ('/tmp', '/dev/shm'):\n"  # only possible where the job's uid owns them (userns)
    "    try:\n        os.chmod(p, 0)\n        chmod_tmp[p] = 'done'\n"
    "    except OSError as e:\n        chmod_tmp[p] = e.strerror\n"
    "print(json.dumps({'ns': NS, 'chmod': chmod_tmp}))\n")
LOOK = NS + "import json\n" + (
    "print(json.dumps({'ns': NS, 'tmp': sorted(os.listdir('/tmp')), 'cwd': os.listdir('.'),\n"
    "                  'shm': os.listdir('/dev/shm'), 'modes': [oct(os.stat(p).st_mode & 0o7777)\n"
    "                  for p in ('/tmp', '/dev/shm')]}))\n")


@pytest.mark.parametrize("user", ["self", "unprivileged"])
def test_unremovable_files_are_gone_before_the_next_job(user, request):
    as_user = request.getfixturevalue("unprivileged") if user == "unprivileged" else None
    status, results = run_code([LEAVE_UNREMOVABLE, LOOK], "--no-libraries", as_user=as_user)
    first, second = outputs(results)
    assert status == 0
    assert second["ns"] == first["ns"]  # the same server: it cleaned up, it was not replaced
    assert (second["tmp"], second["cwd"], second["shm"]) == (["job"], [], [])
    assert second["modes"] == ["0o1777", "0o1777"]
    if as_user is not None:  # in a user namespace the job owns /tmp: its chmod worked, was undone
        assert first["chmod"] == {"/tmp": "done", "/dev/shm": "done"}


LOOK_SHM = NS + "import json\nrows = open('/proc/sysvipc/shm').read().splitlines()[1:]\n" \
    "print(json.dumps({'ns': NS, 'rows': rows}))\n"


def test_sysv_shared_memory_is_refused_and_never_seen_by_the_next_job():
    make = NS + CALL + "print(json.dumps({'ns': NS, 'shmget': call('shmget', 0, 4096, 0o1600),\n" \
        "    'semget': call('semget', 0, 1, 0o1600), 'msgget': call('msgget', 0, 0o1600)}))\n"
    look = LOOK_SHM
    status, results = run_code([make, look], "--no-libraries")
    first, second = outputs(results)
    assert first["shmget"] == first["semget"] == first["msgget"] == [-1, EPERM]
    assert second == {"ns": first["ns"], "rows": []} and status == 0


def test_ipc_left_by_a_job_retires_the_server(monkeypatch):
    # Defence behind the filter: with seccomp off, a segment is created; the server notices it
    # after the job and is replaced, so the next job sees none.
    monkeypatch.setattr("selfplay_verifiers.sandbox.seccomp_filter", lambda: None)
    make = NS + CALL + "print(json.dumps({'ns': NS, 'shmget': call('shmget', 0, 4096, 0o1600)}))\n"
    look = LOOK_SHM
    with Sandbox(workers=1, libraries=()) as sb:
        first, second = outputs([(r.stdout, {"verdict": r.verdict.label, "reason": r.verdict.reason})
                                 for r in (sb.run(make), sb.run(look))])
    assert first["shmget"][0] >= 0  # without the filter the segment exists
    assert second["rows"] == [] and second["ns"] != first["ns"]


# ---- the seccomp filter ------------------------------------------------------------------------

PTRACE = NS + CALL + (
    "out = {'ns': NS, 'uid': os.getuid(), 'attach': call('ptrace', 16, os.getppid(), 0, 0)}\n"
    "try:\n    open(f'/proc/{os.getppid()}/mem', 'rb').read(1)\n    out['mem'] = 'read'\n"
    "except OSError as e:\n    out['mem'] = e.strerror\n"
    "buf = ctypes.create_string_buffer(8)\n"
    "iov = (ctypes.c_void_p * 2)(ctypes.addressof(buf), 8)\n"
    "out['vm_readv'] = call('process_vm_readv', os.getppid(), iov, 1, iov, 1, 0)\n"
    "print(json.dumps(out))\n")


@pytest.mark.parametrize("user", ["self", "unprivileged"])
def test_ptrace_of_the_server_fails(user, request):
    as_user = request.getfixturevalue("unprivileged") if user == "unprivileged" else None
    status, results = run_code([PTRACE], "--no-libraries", as_user=as_user)
    (out,) = outputs(results)
    assert out["attach"] == out["vm_readv"] == [-1, EPERM] and status == 0
    assert out["mem"] in (EPERM, os.strerror(13))  # non-dumpable server: no /proc/PID/mem
    if as_user is not None:
        assert out["uid"] == as_user[2]  # really the unprivileged (user namespace) path
    elif os.geteuid() == 0:
        assert out["uid"] >= 1_900_000_000  # the per-server spare uid


def test_namespaces_cannot_be_created_but_threads_and_fork_work():
    code = NS + CALL + (
        "import threading\nout = {'unshare_user': call('unshare', 0x10000000),\n"
        "    'unshare_net': call('unshare', 0x40000000),\n"
        "    'clone_newuser': call('syscall', 56 if os.uname().machine == 'x86_64' else 220,\n"
        "                          0x10000000 | 17, 0, 0, 0, 0),\n"
        "    'clone3': call('syscall', 435, 0, 0), 'setns': call('setns', 0, 0),\n"
        "    'mount': call('mount', b'none', b'/tmp', b'tmpfs', 0, None)}\n"
        "t = threading.Thread(target=lambda: out.setdefault('thread', 'ran'))\nt.start()\nt.join()\n"
        "pid = os.fork()\nif pid == 0:\n    os._exit(7)\n"
        "out['fork'] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])\n"
        "status = dict(line.split(':\\t', 1) for line in open('/proc/self/status').read().splitlines())\n"
        "out['status'] = {k: status[k].strip() for k in ('Seccomp', 'NoNewPrivs', 'CapEff')}\n"
        "print(json.dumps(out))\n")
    status, results = run_code([code], "--no-libraries")
    (out,) = outputs(results)
    for name in ("unshare_user", "unshare_net", "clone_newuser", "setns", "mount"):
        assert out[name] == [-1, EPERM], (name, out)
    assert out["clone3"] == [-1, os.strerror(38)]  # ENOSYS: glibc falls back to clone
    assert (out["thread"], out["fork"], status) == ("ran", 7, 0)
    assert out["status"] == {"Seccomp": "2", "NoNewPrivs": "1", "CapEff": "0000000000000000"}


# ---- libraries ---------------------------------------------------------------------------------

def test_allowed_libraries_work_and_others_are_not_importable():
    sym = "import sympy\nx = sympy.symbols('x')\nprint(sympy.factor(x**2 - 1))\n"
    num = "import numpy as np\nprint(int(np.arange(10).sum()), float(np.ones(5_000_000).sum()))\n"
    bomb = "import numpy as np\nprint(np.ones(300_000_000).sum())\n"  # 2.4 GB > memory_mb
    status, results = run_code([sym, num, "import torch\n", "import tqdm\nprint('tqdm')\n", bomb])
    # 40 MB, not 400: a 400 MB page-in took 0.1-4 s here under load, near the 5 s job timeout
    assert [r[0] for r in results[:2]] == ["(x - 1)*(x + 1)", "45 5000000.0"], results[:2]
    assert [(v["verdict"], v["reason"]) for _, v in results] == [
        ("correct", "ok"), ("correct", "ok"), ("incorrect", "runtime_error"),
        ("incorrect", "runtime_error"), ("incorrect", "memory")]
    assert results[2][1]["stderr"].endswith("ModuleNotFoundError: No module named 'torch'\n")
    assert "No module named 'tqdm'" in results[3][1]["stderr"] and status == 1
    status, results = run_code(["import tqdm, sympy\nprint('tqdm')\n"], "--no-libraries",
                               "--library", "tqdm")
    assert results[0][0] == "" and "No module named 'sympy'" in results[0][1]["stderr"]
    status, results = run_code(["import tqdm\nprint('tqdm')\n"], "--library", "tqdm")
    assert (status, results[0][0]) == (0, "tqdm")


def test_unknown_library_is_a_usage_error():
    res = subprocess.run([sys.executable, "-m", "selfplay_verifiers", "run-code", "--library",
                          "no_such_lib_xyz", __file__], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.strip().splitlines() == [
        f"error: Sandbox.libraries: 'no_such_lib_xyz' is not installed in this environment "
        f"({sys.executable})"]


# ---- run-code verdicts and exit status ---------------------------------------------------------

def test_run_code_exit_status_is_the_worst_verdict():
    ok, wrong, empty, bad = "print(18)\n", "print(19)\n", "x = 1\n", "def f(:\n"
    kill_server = "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n"
    assert run_code([ok, ok], "--no-libraries", "--gold", "18")[0] == 0
    status, results = run_code([empty, bad, ok, wrong], "--no-libraries", "--gold", "18")
    assert [(v["verdict"], v["reason"]) for _, v in results] == [
        ("incorrect", "no_output"), ("incorrect", "syntax_error"), ("correct", "ok"),
        ("incorrect", "wrong")]
    assert "SyntaxError" in results[1][1]["stderr"] and status == 1
    status, results = run_code([empty, bad], "--no-libraries")  # no --gold: still incorrect
    assert status == 1 and [v["reason"] for _, v in results] == ["no_output", "syntax_error"]
    status, results = run_code([wrong, kill_server, ok], "--no-libraries", "--gold", "18")
    assert [(v["verdict"], v["reason"]) for _, v in results] == [
        ("incorrect", "wrong"), ("unknown", "sandbox_error"), ("correct", "ok")]
    assert status == 3


def _bpf_run(prog: bytes, arch: int, nr: int, arg0: int = 0) -> int:
    """Evaluate a seccomp classic-BPF program (the opcodes seccomp_filter uses) on one call."""
    data = struct.pack("=iIQ6Q", nr, arch, 0, arg0, 0, 0, 0, 0, 0)
    insns = [struct.unpack("=HBBI", prog[i:i + 8]) for i in range(0, len(prog), 8)]
    pc, acc = 0, 0
    while True:
        code, jt, jf, k = insns[pc]
        if code == 0x20:  # ld [k]
            acc = struct.unpack_from("=I", data, k)[0]
            pc += 1
        elif code in (0x15, 0x35, 0x45):  # jeq, jge, jset
            hit = {0x15: acc == k, 0x35: acc >= k, 0x45: bool(acc & k)}[code]
            pc += 1 + (jt if hit else jf)
        elif code == 0x06:
            return k
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")


@pytest.mark.parametrize("machine", sorted(AUDIT_ARCH))
def test_seccomp_program_decisions(machine):
    # The program for each supported ABI, evaluated here (aarch64 too, on any host).
    prog, arch = seccomp_filter(machine), AUDIT_ARCH[machine]
    col = 0 if machine == "x86_64" else 1  # DENIED's columns
    allow, eperm, enosys, kill = 0x7FFF0000, 0x00050001, 0x00050026, 0x80000000
    for name, nrs in DENIED.items():
        assert _bpf_run(prog, arch, nrs[col]) == eperm, name
    clone = CLONE[col]
    assert _bpf_run(prog, arch, clone, 0x01200011) == allow  # fork: CHILD_SETTID|CLEARTID|SIGCHLD
    assert _bpf_run(prog, arch, clone, 0x003D0F00) == allow  # pthread_create's flags
    for flag in (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000,
                 0x40000000):
        assert _bpf_run(prog, arch, clone, flag | 17) == eperm, hex(flag)
    assert _bpf_run(prog, arch, 435) == enosys  # clone3
    for nr in (0, 1, 3, 9, 60, 63, 93, 231):  # read/write/close/mmap/exit... on either ABI
        if nr not in {nrs[col] for nrs in DENIED.values()} | {clone}:
            assert _bpf_run(prog, arch, nr) == allow, nr
    assert _bpf_run(prog, 0x40000003, 1) == kill  # i386 (int 0x80) on this kernel
    if machine == "x86_64":
        assert _bpf_run(prog, arch, 0x40000000 | 1) == enosys  # x32
    header = {"x86_64": "/usr/include/x86_64-linux-gnu/asm/unistd_64.h",
              "aarch64": "/usr/include/asm-generic/unistd.h"}[machine]
    if os.path.exists(header):  # cross-check the table with the kernel headers where installed
        defs = dict(re.findall(r"#define __NR_(\w+)\s+(\d+)\b", Path(header).read_text()))
        for name, nrs in DENIED.items():
            assert int(defs[name]) == nrs[col], name
        assert int(defs["clone"]) == clone and int(defs["clone3"]) == 435


def test_seccomp_on_an_unsupported_machine_is_unavailable():
    with pytest.raises(SandboxUnavailable, match="no seccomp filter for machine 'ppc64le'"):
        seccomp_filter("ppc64le")
