#!/usr/bin/env bash
# Stage "lint": every notebook follows the contract.
source "$(dirname "$0")/lib.sh"
mlsm-nb lint "$MODELS_DIR"
