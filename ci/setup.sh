#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment and install mlsm-nb with
# its test needs, every Python package at the version pinned in ci/requirements.lock
# (ci/lock.sh refreshes it). Idempotent: reinstalls only when pyproject.toml or the
# lock changed.
# Usage: ci/setup.sh            (prints nothing on success but progress)
# Env:   MLSM_VENV  where the virtual environment lives (default: .venv)
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${MLSM_VENV:-.venv}"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
  echo "setup: creating virtual environment $venv"
  "$python" -m venv "$venv"
fi

stamp="$venv/.mlsm-installed"
want="$(cat pyproject.toml ci/requirements.lock | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing mlsm-nb and its dependencies into $venv"
  log="$venv/pip-install.log"
  # PIP_CONSTRAINT reaches pip's isolated build environment too (the pinned setuptools).
  export PIP_CONSTRAINT="$PWD/ci/requirements.lock"
  if ! { "$venv/bin/python" -m pip install pip setuptools && "$venv/bin/python" -m pip install -e ".[dev,dask]"; } >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "setup: pip install failed; full log in $log" >&2
    exit 1
  fi
  echo "$want" > "$stamp"
fi
# A kernel named python3 that runs inside this environment, for papermill/nbval.
"$venv/bin/python" -m ipykernel install --sys-prefix --name python3 >/dev/null
