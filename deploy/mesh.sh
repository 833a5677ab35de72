#!/usr/bin/env bash
# Run the whole Dormant mesh on this machine: bootstrap, then `dormant dev` with the given arguments
# (none: the example user-service on 2 replicas, a third pooled pod spare for your own service, and its
# TypeScript twin examples/user-service-node on 2 Node.js pods).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash deploy/bootstrap.sh
export PATH="$ROOT/.venv/bin:$PATH"  # Node.js from .venv when bootstrap put it there
if [ "$#" -eq 0 ]; then
  set -- examples/user-service examples/user-service-node --pods 3 --replicas 2
fi
exec .venv/bin/dormant dev "$@"
