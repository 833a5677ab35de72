#!/usr/bin/env bash
# Dormant's benchmark: set up (as deploy/bootstrap.sh does), add the peer to compare with, run.
# Arguments go to bench/run.py (--quick for a smoke run).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash deploy/bootstrap.sh
.venv/bin/python -c 'import faststream.mqtt' 2>/dev/null || .venv/bin/pip install -q -e '.[bench]'
exec .venv/bin/python bench/run.py "$@"
