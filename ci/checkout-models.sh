#!/usr/bin/env bash
# Stage "check out models": the data scientists' notebooks at the branch's latest commit.
# MODELS_REPO (a git URL) and MODELS_BRANCH choose a separate models repository;
# without MODELS_REPO the notebooks/ folder of this checkout is used.
source "$(dirname "$0")/lib.sh"

branch="${MODELS_BRANCH:-${BRANCH_NAME:-$(git -C "$WORKSPACE" rev-parse --abbrev-ref HEAD 2>/dev/null || echo unknown)}}"
if [ -n "${MODELS_REPO:-}" ]; then
  rm -rf "$BUILD/models"
  git clone --quiet --depth 1 --branch "$branch" "$MODELS_REPO" "$BUILD/models"
  dir="$BUILD/models/${MODELS_PATH:-notebooks}"
  [ -d "$dir" ] || dir="$BUILD/models"
  repo="$MODELS_REPO"
  commit="$(git -C "$BUILD/models" rev-parse HEAD)"
else
  dir="$WORKSPACE/notebooks"
  repo="$(git -C "$WORKSPACE" remote get-url origin 2>/dev/null || echo "$WORKSPACE")"
  commit="${GIT_COMMIT:-$(git -C "$WORKSPACE" rev-parse HEAD)}"
fi
cat > "$BUILD/models.env" <<ENV
MODELS_DIR=$(printf %q "$dir")
MODELS_REPO_URL=$(printf %q "$repo")
MODELS_BRANCH=$(printf %q "$branch")
MODELS_COMMIT=$(printf %q "$commit")
ENV
echo "models: $dir (branch $branch, commit $commit)"
