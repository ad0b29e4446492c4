#!/usr/bin/env bash
# Installs what the project needs on a fresh machine of our kind: Debian packages (Java 17,
# Maven, Python venv support), the Python virtual environment with pinned packages, and the
# local stack's jars (Kafka, Apicurio Registry) resolved by Maven into caches outside the repo.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v java >/dev/null || need_apt+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need_apt+=(maven)
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
# Source databases for the adapters' tests and the demo (servers run from temporary folders).
[ -x /usr/lib/postgresql/15/bin/postgres ] || need_apt+=(postgresql-15)
[ -e /usr/lib/postgresql/15/lib/wal2json.so ] || need_apt+=(postgresql-15-wal2json)
command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] || need_apt+=(mariadb-server)
if ((${#need_apt[@]})); then
  echo "setup: installing Debian packages: ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e '.[dev]'

# Kafka classpath and the Apicurio distribution: resolved once, cached under ~/.cache/backbone and ~/.m2.
.venv/bin/backbone prepare
