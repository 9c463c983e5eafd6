#!/usr/bin/env bash
# Main job: sets everything up on a fresh machine, then runs the default self-play job on the
# embedded model (configs/default.toml). Extra arguments go to `selfplay run`, e.g.
#   ./run.sh --out runs/mine --rounds 3
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh
exec .venv/bin/selfplay run --config configs/default.toml "$@"
