#!/usr/bin/env bash
# Stage "report": the reviewer report of the sample run, when this mlsm-nb has the command.
source "$(dirname "$0")/lib.sh"
if mlsm-nb report --help >/dev/null 2>&1; then
  mlsm-nb report "$BUILD/runs/notebooks-$BUILD_NUMBER"
else
  echo "report: this mlsm-nb has no report command; skipped"
fi
