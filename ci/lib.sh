# Sourced by the ci/ scripts: paths, the virtual environment, what Jenkins sets.
# Works the same from a terminal: every Jenkins variable has a local default.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${WORKSPACE:-$ROOT}"
WORKSPACE="$(pwd)"
BUILD="$WORKSPACE/build"
mkdir -p "$BUILD"
venv="${MLSM_VENV:-$ROOT/.venv}"
export PATH="$venv/bin:$PATH"

BUILD_NUMBER="${BUILD_NUMBER:-local}"
STAGE="$(basename "$0" .sh)"
trap 'status=$?; echo "ci: stage $STAGE failed (exit $status); see the lines above" >&2' ERR

# Where the models came from, written by ci/checkout-models.sh.
if [ -f "$BUILD/models.env" ]; then
  # shellcheck disable=SC1091
  source "$BUILD/models.env"
fi
