#!/usr/bin/env bash
# Stage "sample run": a sample of records through the notebooks (papermill, the audit
# path) and through the extracted bundle (in-process). SAMPLE_RECORDS may name a
# records file; otherwise SAMPLE_SIZE (default 500) records are made from the notebooks'
# own `fields` and `examples` (mlsm_nb.validate.samples), whatever fields they read.
# SAMPLE_MAX_ERROR_RATE (when set) is the share of records a model may fail; RECORD_TIMEOUT (when set)
# the seconds one record may take to score, per model (a record over it fails alone, as a timeout).
# Both runs always run; the stage fails when either does (a failed execution, or a
# model over the error-rate threshold), and the log names it. mlsm-nb prints one
# line per finished execution, so the Jenkins log shows progress.
source "$(dirname "$0")/lib.sh"
unset MLSM_MONGO_URI  # sample results never go to the production database
records="${SAMPLE_RECORDS:-$BUILD/sample-records.jsonl}"
if [ -z "${SAMPLE_RECORDS:-}" ]; then
  python -m mlsm_nb.validate.samples "${SAMPLE_SIZE:-500}" "$MODELS_DIR" --seed "${BUILD_NUMBER//[!0-9]/}0" \
    --out "$records"
fi
limit=(--record-timeout "${RECORD_TIMEOUT:-60}")
if [ -n "${SAMPLE_MAX_ERROR_RATE:-}" ]; then
  limit+=(--max-error-rate "$SAMPLE_MAX_ERROR_RATE")
fi
rm -rf "$BUILD/runs/notebooks-$BUILD_NUMBER" "$BUILD/runs/bundle-$BUILD_NUMBER"
status=0
mlsm-nb run "$MODELS_DIR" --records "$records" --out "$BUILD/runs" --run-id "notebooks-$BUILD_NUMBER" \
  --branch "$MODELS_BRANCH" "${limit[@]}" || status=$?
mlsm-nb run "$MODELS_DIR" --records "$records" --out "$BUILD/runs" --run-id "bundle-$BUILD_NUMBER" \
  --branch "$MODELS_BRANCH" --engine inprocess --bundle "$BUILD/bundle" "${limit[@]}" || status=$?
(exit "$status")
