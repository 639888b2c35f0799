#!/usr/bin/env bash
# Refresh the pinned versions: ci/requirements.lock (every Python package ci/setup.sh
# installs, from pyproject.toml's ranges with the dev and dask extras, plus pip and the
# build backend) and ci/npm/package-lock.json (the npm tools ci/tools.sh installs).
# Run it on purpose, then run ci/test.sh in a fresh clone and commit both files together.
# Usage: ci/lock.sh
set -euo pipefail
cd "$(dirname "$0")/.."

uv_version=0.13.9  # the resolver, pinned too: a newer uv may resolve the same ranges differently
tools="$(mktemp -d)"
trap 'rm -rf "$tools"' EXIT
python3 -m venv "$tools/venv"
"$tools/venv/bin/python" -m pip install --quiet "uv==$uv_version"
# The header names this command without the temporary paths, so refreshing is reproducible.
"$tools/venv/bin/uv" pip compile pyproject.toml ci/requirements-build.in \
  --extra dev --extra dask --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
  --custom-compile-command ci/lock.sh --quiet --output-file ci/requirements.lock
(cd ci/npm && npm install --package-lock-only --no-audit --no-fund --loglevel=error)
echo "lock: ci/requirements.lock and ci/npm/package-lock.json refreshed; run ci/test.sh in a fresh clone before committing"
