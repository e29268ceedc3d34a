#!/usr/bin/env bash
# Sets up .venv for `make demo` / `make test` on a fresh Debian machine.
# Finds Python 3.12 explicitly (uv cannot download interpreters here), makes sure uv exists,
# installs the Debian libraries MuJoCo rendering and lerobot's video decoder need, then syncs.
set -euo pipefail
cd "$(dirname "$0")/.."

is_312() { [ -n "$1" ] && "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null; }

find_python() {
  local cand
  cand=$(command -v python3.12 2>/dev/null || true)
  if is_312 "$cand"; then echo "$cand"; return; fi
  for cand in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3.12; do
    if is_312 "$cand"; then echo "$cand"; return; fi
  done
  if command -v uv >/dev/null 2>&1; then
    cand=$(uv python find 3.12 2>/dev/null || true)
    if is_312 "$cand"; then echo "$cand"; return; fi
  fi
  return 1
}

PY=$(find_python) || {
  echo "robopref needs Python 3.12 and found none: install it (e.g. 'pyenv install 3.12') or put python3.12 on PATH." >&2
  exit 1
}

# A pyenv shim named `uv` can exist yet fail; trust only a uv that runs.
if uv --version >/dev/null 2>&1; then
  UV=(uv)
else
  "$PY" -m uv --version >/dev/null 2>&1 || "$PY" -m pip install --quiet uv
  UV=("$PY" -m uv)
fi

need=()
dpkg -s libosmesa6 >/dev/null 2>&1 || need+=(libosmesa6)
dpkg -s ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian packages: ${need[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "note: Debian packages ${need[*]} are missing (offscreen rendering, video decoding); run: sudo apt-get install ${need[*]}" >&2
  fi
fi

"${UV[@]}" sync --frozen -p "$PY" --quiet
