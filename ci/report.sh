#!/usr/bin/env bash
# Post step "report": the reviewer report of this build's sample run (papermill) into
# build/report/, which the Jenkinsfile publishes (HTML Publisher) and archives. Runs
# also when a stage failed; without a sample run (an earlier stage failed) there is
# nothing to report and it says so.
source "$(dirname "$0")/lib.sh"
run="$BUILD/runs/notebooks-$BUILD_NUMBER"
rm -rf "$BUILD/report"
if [ ! -f "$run/manifest.json" ]; then
  echo "report: no sample run in this build (an earlier stage failed); nothing to report"
  exit 0
fi
compare=()
if [ -f "$BUILD/runs/bundle-$BUILD_NUMBER/manifest.json" ]; then
  compare=(--compare "$BUILD/runs/bundle-$BUILD_NUMBER")  # papermill and in-process side by side
fi
mlsm-nb report "$run" --out "$BUILD/report" "${compare[@]}"
