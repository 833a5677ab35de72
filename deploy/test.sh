#!/usr/bin/env bash
# Dormant's full check: bootstrap, then ruff, mypy and pytest. Runs all three and fails if any fails;
# the exit status is pytest's when lint and types pass (5, "no tests collected", counts as a failure).
# Extra arguments go to pytest. DORMANT_TEST_CPU_HOG=1 keeps one core busy with a spin loop while the
# tests run (the "busy machine" condition fault tests must hold under); it is stopped on exit.
# DORMANT_TEST_COVERAGE=1 measures line coverage (pytest-cov, config in pyproject's [tool.coverage.*],
# child processes included) and prints it per package at the end (deploy/coverage_report.py); it costs
# about a third more CPU, so the default run leaves it off. DORMANT_TEST_COVERAGE_MIN=PCT (with it on)
# fails the run when a package is below PCT.
# The tests run in DORMANT_TEST_WORKERS processes (pytest-xdist; default 2, 0 = in this process), each
# taking whole test files (--dist loadfile: a module's mesh or gateway fixture is started once); most
# of the suite waits on brokers, databases and pods, so two workers overlap those waits.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1
bash deploy/bootstrap.sh || exit 1
# Node.js from .venv first when bootstrap put it there (a machine without Node.js 20).
export PATH="$ROOT/.venv/bin:$PATH"
export PYTHONPATH="$ROOT/libs/python:$ROOT/codegen:$ROOT/catalog:$ROOT/sidecar:$ROOT/runtimes/python:$ROOT/gateway${PYTHONPATH:+:$PYTHONPATH}"

echo "== ruff check ." >&2
.venv/bin/ruff check .
ruff_status=$?
echo "== mypy" >&2
.venv/bin/mypy
mypy_status=$?
echo "== pytest" >&2
hog_pid=""
if [ "${DORMANT_TEST_CPU_HOG:-0}" = "1" ]; then
  bash -c 'while :; do :; done' &
  hog_pid=$!
  trap 'kill "$hog_pid" 2>/dev/null' EXIT
  echo "test.sh: CPU hog running (pid $hog_pid)" >&2
fi
worker_args=()
workers="${DORMANT_TEST_WORKERS:-2}"
if [ "$workers" != "0" ]; then
  worker_args=(-n "$workers" --dist loadfile)
fi
cov_args=()
if [ "${DORMANT_TEST_COVERAGE:-0}" = "1" ]; then
  # --cov with no value takes the packages from [tool.coverage.run] source; the report comes after.
  cov_args=(--cov --cov-report=)
fi
.venv/bin/python -m pytest -q -p no:cacheprovider "${worker_args[@]}" "${cov_args[@]}" "$@"
pytest_status=$?
if [ -n "$hog_pid" ]; then
  kill "$hog_pid" 2>/dev/null
  wait "$hog_pid" 2>/dev/null
fi
coverage_status=0
if [ "${#cov_args[@]}" -gt 0 ]; then
  echo "== coverage per package" >&2
  .venv/bin/python deploy/coverage_report.py ${DORMANT_TEST_COVERAGE_MIN:+--fail-under "$DORMANT_TEST_COVERAGE_MIN"}
  coverage_status=$?
fi

if [ "$pytest_status" -eq 5 ]; then
  echo "test.sh: pytest collected no tests; that is a failure" >&2
fi
if [ "$pytest_status" -ne 0 ]; then
  exit "$pytest_status"
fi
if [ "$ruff_status" -ne 0 ] || [ "$mypy_status" -ne 0 ] || [ "$coverage_status" -ne 0 ]; then
  echo "test.sh: ruff status $ruff_status, mypy status $mypy_status, coverage status $coverage_status" >&2
  exit 1
fi
exit 0
