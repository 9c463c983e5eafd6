#!/usr/bin/env bash
# Test command: sets everything up on a fresh machine, then runs the whole test suite
# (including a real round and real DPO steps on the embedded model). Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q -ra "$@"
