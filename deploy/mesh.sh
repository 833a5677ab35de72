#!/usr/bin/env bash
# Run the whole Dormant mesh on this machine: bootstrap, then `dormant dev` with the given arguments.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash deploy/bootstrap.sh
exec .venv/bin/dormant dev "$@"
