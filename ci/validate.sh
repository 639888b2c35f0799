#!/usr/bin/env bash
# Stage "validate": nbval, robustness, examples, parity; JUnit XML for the junit step.
source "$(dirname "$0")/lib.sh"
mlsm-nb validate "$MODELS_DIR" --junit "$BUILD/validate.xml"
