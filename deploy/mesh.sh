#!/usr/bin/env bash
# Run the whole Dormant mesh on this machine: bootstrap, then `dormant dev` with the given arguments
# (none: the example user-service on 2 replicas, and a third pooled pod spare for your own service).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash deploy/bootstrap.sh
if [ "$#" -eq 0 ]; then
  set -- --pods 3 --replicas 2
fi
exec .venv/bin/dormant dev "$@"
