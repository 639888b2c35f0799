#!/usr/bin/env bash
# Stage "sample run": a sample of records through the notebooks (papermill, the audit
# path) and through the extracted bundle (in-process). SAMPLE_RECORDS may name a
# records file; otherwise SAMPLE_SIZE (default 500) synthetic leads are generated.
source "$(dirname "$0")/lib.sh"
records="${SAMPLE_RECORDS:-$BUILD/sample-leads.jsonl}"
if [ -z "${SAMPLE_RECORDS:-}" ]; then
  python -m mlsm_nb.leads "${SAMPLE_SIZE:-500}" --seed "${BUILD_NUMBER//[!0-9]/}0" --out "$records"
fi
rm -rf "$BUILD/runs/notebooks-$BUILD_NUMBER" "$BUILD/runs/bundle-$BUILD_NUMBER"
mlsm-nb run "$MODELS_DIR" --records "$records" --out "$BUILD/runs" --run-id "notebooks-$BUILD_NUMBER" \
  --branch "$MODELS_BRANCH" --no-progress
mlsm-nb run "$MODELS_DIR" --records "$records" --out "$BUILD/runs" --run-id "bundle-$BUILD_NUMBER" \
  --branch "$MODELS_BRANCH" --engine inprocess --bundle "$BUILD/bundle" --no-progress
