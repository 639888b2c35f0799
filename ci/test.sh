#!/usr/bin/env bash
# Set everything up on a fresh machine, lint the code (ruff) and run the whole test suite.
# Extra arguments go to pytest (e.g. ci/test.sh -m "not slow" -x).
set -euo pipefail
cd "$(dirname "$0")/.."
ci/setup.sh
ci/tools.sh
venv="${MLSM_VENV:-.venv}"
echo "test: ruff check (the rules in pyproject.toml)"
"$venv/bin/ruff" check --quiet .
exec "$venv/bin/python" -m pytest -p no:cacheprovider "$@"
