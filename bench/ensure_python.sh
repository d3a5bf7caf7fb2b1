#!/usr/bin/env bash
# Installs what bench/baseline.py needs into the system Python (/usr/bin/python3): kafka-python
# and psycopg2 from Debian's packages. Idempotent: does nothing when both already import.
set -euo pipefail

PY=/usr/bin/python3
PACKAGES=(python3-kafka python3-psycopg2)

if [[ -x "$PY" ]] && "$PY" -c 'import kafka, psycopg2' 2>/dev/null; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "ensure_python: apt-get not found; install ${PACKAGES[*]} (kafka-python, psycopg2) for $PY" >&2
  exit 1
fi
SUDO=()
if [[ $(id -u) -ne 0 ]]; then SUDO=(sudo); fi
echo "ensure_python: installing ${PACKAGES[*]}" >&2
"${SUDO[@]}" apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends \
  "${PACKAGES[@]}" >&2
"$PY" -c 'import kafka, psycopg2'
