#!/usr/bin/env bash
# Stage "extract": the bundle of Model modules, with where the notebooks came from;
# git-flow rules force draft on development branches.
source "$(dirname "$0")/lib.sh"
rm -rf "$BUILD/bundle"
mlsm-nb extract "$MODELS_DIR" --out "$BUILD/bundle" \
  --branch "$MODELS_BRANCH" --repo-url "$MODELS_REPO_URL" --commit "$MODELS_COMMIT"
