#!/usr/bin/env bash
# Create .venv and install Isthmus into it (editable), with extras given as $1 (e.g. "test").
# Python: $PYTHON if set, else the first of python3.13, python3.12, python3 (on PATH, then in
# pyenv's /root/.pyenv/versions/3.1[23]*) that runs and is >= 3.12 — p2p sharing needs
# aiolibdatachannel, whose wheels are CPython 3.12+. 3.11 still works, without p2p.
set -euo pipefail
VENV=${VENV:-.venv}
runs_at_least() { "$1" -c "import sys; assert sys.version_info >= ($2)" >/dev/null 2>&1; }
pick_python() {
  local c
  for c in python3.13 python3.12 python3 ${PYENV_ROOT:-$HOME/.pyenv}/versions/3.13*/bin/python3 \
           ${PYENV_ROOT:-$HOME/.pyenv}/versions/3.12*/bin/python3; do
    if runs_at_least "$c" "3, 12"; then echo "$c"; return 0; fi
  done
  for c in python3.11 python3; do
    if runs_at_least "$c" "3, 11"; then
      echo "warning: no Python 3.12+ found; using $c ($("$c" --version 2>&1)): p2p sharing (aiolibdatachannel) is unavailable" >&2
      echo "$c"; return 0
    fi
  done
  return 1
}
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON; else PY=$(pick_python) || true; fi
if [ -z "${PY:-}" ] || ! runs_at_least "$PY" "3, 11"; then
  echo "Isthmus needs Python 3.11 or newer (3.12+ for p2p sharing); none found" >&2; exit 1
fi
missing=$("$PY" -c '
import importlib.util
bad = [m for m in ("sqlite3", "ssl", "ctypes", "lzma", "zlib", "venv") if importlib.util.find_spec(m) is None]
print(" ".join(bad))' 2>/dev/null || echo "?")
if [ -n "$missing" ] && [ "$missing" != "venv" ]; then
  echo "$PY ($("$PY" --version 2>&1)) lacks stdlib modules: $missing (rebuild it with their -dev libraries)" >&2; exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "creating $VENV with $PY ($("$PY" --version 2>&1))"
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
  if ! "$VENV/bin/python" -c 'import sys; assert sys.version_info >= (3, 12)' 2>/dev/null; then
    echo "warning: $VENV is Python < 3.12; p2p sharing will be unavailable" >&2
  fi
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".$extras"
  touch "$stamp"
fi
