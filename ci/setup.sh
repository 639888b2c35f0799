#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment and install mlsm-nb with
# its test needs. Idempotent: reinstalls only when pyproject.toml changed.
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
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing mlsm-nb and its dependencies into $venv"
  log="$venv/pip-install.log"
  if ! { "$venv/bin/python" -m pip install --upgrade pip && "$venv/bin/python" -m pip install -e ".[dev,dask]"; } >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "setup: pip install failed; full log in $log" >&2
    exit 1
  fi
  echo "$want" > "$stamp"
fi
# A kernel named python3 that runs inside this environment, for papermill/nbval.
"$venv/bin/python" -m ipykernel install --sys-prefix --name python3 >/dev/null
