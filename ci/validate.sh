#!/usr/bin/env bash
# Stage "validate": nbval, robustness, examples, parity; JUnit XML for the junit step.
# RECORD_TIMEOUT (when set) is the seconds the model checks give each input, as the run gives each record.
source "$(dirname "$0")/lib.sh"
mlsm-nb validate "$MODELS_DIR" --junit "$BUILD/validate.xml" --record-timeout "${RECORD_TIMEOUT:-60}"
