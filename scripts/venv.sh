#!/usr/bin/env bash
# Create .venv and install Isthmus into it (editable), with extras given as $1 (e.g. "test").
set -euo pipefail
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
  echo "Isthmus needs Python 3.11 or newer ($PY is $("$PY" --version 2>&1))" >&2; exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
  if ! "$PY" -m venv "$VENV" 2>/dev/null; then
    echo "python3-venv is missing; installing it"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq python3-venv >/dev/null
    rm -rf "$VENV"; "$PY" -m venv "$VENV"
  fi
fi
stamp="$VENV/.installed-${1:-base}"
if [ ! -e "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip 2>/dev/null || true
  extras=""; [ -n "${1:-}" ] && extras="[$1]"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".$extras"
  touch "$stamp"
fi
