"""The locks (requirements/lock.txt for .venv, requirements/lock-vllm.txt for .venv-vllm) agree
with pyproject.toml, and the venv the suite runs in was installed from its lock.

scripts/lock.sh makes the locks; scripts/setup.sh and scripts/install-vllm-cpu.sh install them.
These checks are offline; `scripts/lock.sh --check` (needs PyPI) re-resolves and diffs instead.
"""
import importlib.metadata as md
import re
import sys
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
REQ = ROOT / "requirements"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# the machine the locks are resolved for (scripts/lock.sh: --python-version 3.11, x86_64 manylinux)
ENV = {"python_version": "3.11", "python_full_version": "3.11.0", "sys_platform": "linux",
       "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
       "implementation_name": "cpython", "platform_python_implementation": "CPython"}


def lock_extras(var: str) -> list[str]:
    m = re.search(rf"^{var}=([a-z0-9_,-]+)", (ROOT / "scripts" / "lock.sh").read_text(), re.MULTILINE)
    assert m, f"scripts/lock.sh sets no {var}"
    return m.group(1).split(",")


LOCKS = {"lock.txt": lock_extras("MAIN_EXTRAS"), "lock-vllm.txt": lock_extras("VLLM_EXTRAS")}


def parse_lock(name: str) -> tuple[dict[str, str], dict[str, set[str]]]:
    """{package: version} and {package: what it is there for (uv's `# via` lines)}."""
    pins: dict[str, str] = {}
    via: dict[str, set[str]] = {}
    current = None
    for raw in (REQ / name).read_text().splitlines():
        line = raw.strip()
        if not line:
            continue
        if not line.startswith("#"):
            assert not raw[0].isspace() and re.fullmatch(r"[A-Za-z0-9._-]+==[A-Za-z0-9.+!-]+", line), \
                f"{name}: not an exact pin: {raw!r} (regenerate it with scripts/lock.sh)"
            pkg, version = line.split("==")
            current = canonicalize_name(pkg)
            assert current not in pins, f"{name}: {pkg} pinned twice"
            pins[current], via[current] = version, set()
        elif current is not None and raw.startswith("    #"):
            text = line.lstrip("#").strip()
            text = text.removeprefix("via").strip()
            if text:
                via[current].add(text)
    return pins, via


def wanted(extras: list[str]) -> list[Requirement]:
    """pyproject's requirements for these extras, on the locked platform."""
    reqs = []
    for group, lines in [(None, PYPROJECT.get("dependencies", []))] + \
            [(e, PYPROJECT["optional-dependencies"][e]) for e in extras]:
        for line in lines:
            r = Requirement(line)
            if r.marker is None or r.marker.evaluate({**ENV, "extra": group or ""}):
                reqs.append(r)
    return reqs


def test_lock_extras_exist_and_setup_installs_the_main_ones():
    for extras in LOCKS.values():
        unknown = set(extras) - set(PYPROJECT["optional-dependencies"])
        assert not unknown, f"scripts/lock.sh locks extras pyproject.toml lacks: {unknown}"
    assert set(LOCKS["lock.txt"]) == set(PYPROJECT["optional-dependencies"]), \
        "requirements/lock.txt should cover every extra (setup.sh installs them all)"
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    m = re.search(r"^EXTRAS=([a-z0-9_,-]+)", setup, re.MULTILINE)
    assert m and set(m.group(1).split(",")) == set(LOCKS["lock.txt"]), "setup.sh's EXTRAS != lock.sh's MAIN_EXTRAS"
    vllm = (ROOT / "scripts" / "install-vllm-cpu.sh").read_text()
    m = re.search(r"^LOCKED_EXTRAS=([a-z0-9_,-]+)", vllm, re.MULTILINE)
    assert m and set(m.group(1).split(",")) == set(LOCKS["lock-vllm.txt"]), \
        "install-vllm-cpu.sh's LOCKED_EXTRAS != lock.sh's VLLM_EXTRAS"


@pytest.mark.parametrize("lock", list(LOCKS))
def test_every_requirement_of_pyproject_is_pinned_at_a_version_it_allows(lock):
    pins, _ = parse_lock(lock)
    bad = []
    for r in wanted(LOCKS[lock]):
        got = pins.get(canonicalize_name(r.name))
        if got is None:
            bad.append(f"{r} is not in the lock")
        elif not r.specifier.contains(Version(got), prereleases=True):
            bad.append(f"{r} but the lock pins {got}")
    assert not bad, f"requirements/{lock} disagrees with pyproject.toml (run scripts/lock.sh): " + "; ".join(bad)


@pytest.mark.parametrize("lock", list(LOCKS))
def test_the_lock_holds_no_direct_dependency_pyproject_dropped(lock):
    _, via = parse_lock(lock)
    direct = {canonicalize_name(r.name) for r in wanted(LOCKS[lock])}
    stale = sorted(p for p, why in via.items() if "selfplay (pyproject.toml)" in why and p not in direct)
    assert not stale, \
        f"requirements/{lock} pins {stale} for pyproject.toml, which no longer asks for them: run scripts/lock.sh"
    orphans = sorted(p for p, why in via.items() if not why)
    assert not orphans, f"requirements/{lock}: pins nothing asks for: {orphans}"


@pytest.mark.parametrize("lock,inputs", [("lock.txt", ["torch-cpu.in"]), ("lock-vllm.txt", ["vllm.in"])])
def test_the_lock_pins_its_inputs_and_the_cpu_torch(lock, inputs):
    pins, _ = parse_lock(lock)
    for inp in inputs:
        for line in (REQ / inp).read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                r = Requirement(line)
                assert pins.get(canonicalize_name(r.name)) == str(r.specifier).removeprefix("=="), \
                    f"requirements/{inp} says {line}, requirements/{lock} pins {pins.get(canonicalize_name(r.name))}"
    # the CPU build only: the +cpu local version can't resolve to the CUDA wheel, and no CUDA package
    assert Version(pins["torch"]).local == "cpu", pins["torch"]
    assert not [p for p in pins if p.startswith("nvidia-")], "a CUDA package in the lock"


def test_the_vllm_lock_leaves_out_the_cuda_media_packages():
    pins, _ = parse_lock("lock-vllm.txt")
    excluded = [line.strip() for line in (REQ / "vllm-excludes.txt").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    assert set(excluded) == {"torchvision", "torchaudio", "torchcodec"}
    assert not set(excluded) & set(pins)


def test_the_running_venv_was_installed_from_its_lock():
    """The suite's results hold for the locked versions only: a package that drifted (a manual
    `pip install -U`) fails here. scripts/setup.sh (or install-vllm-cpu.sh) puts the venv back."""
    try:
        md.version("vllm-cpu")
        lock = "lock-vllm.txt"
    except md.PackageNotFoundError:
        lock = "lock.txt"
    pins, _ = parse_lock(lock)
    drift = []
    for pkg, version in pins.items():
        try:
            have = md.version(pkg)
        except md.PackageNotFoundError:
            drift.append(f"{pkg} missing (locked {version})")
            continue
        if Version(have) != Version(version):
            drift.append(f"{pkg} {have} (locked {version})")
    fix = "bash scripts/install-vllm-cpu.sh .venv-vllm" if lock == "lock-vllm.txt" else "bash scripts/setup.sh"
    assert not drift, f"{sys.prefix} differs from requirements/{lock}: {', '.join(drift)}; run {fix}"
