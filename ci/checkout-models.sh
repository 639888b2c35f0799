#!/usr/bin/env bash
# Stage "check out models": the data scientists' notebooks at the branch's latest commit.
# MODELS_REPO (a git URL) and MODELS_BRANCH choose a separate models repository, MODELS_PATH
# the notebooks' folder in it; without MODELS_REPO the notebooks/ folder of this checkout is used.
# Credentials come from the Jenkinsfile's bindings: MODELS_SSH_KEY (a private key file, for
# ssh URLs) or GIT_ASKPASS (set by the git plugin's gitUsernamePassword, for https URLs).
source "$(dirname "$0")/lib.sh"

branch="${MODELS_BRANCH:-${BRANCH_NAME:-$(git -C "$WORKSPACE" rev-parse --abbrev-ref HEAD 2>/dev/null || echo unknown)}}"
if [ -n "${MODELS_REPO:-}" ]; then
  rm -rf "$BUILD/models"
  export GIT_TERMINAL_PROMPT=0  # a missing credential fails the clone instead of waiting for a password
  if [ -n "${MODELS_SSH_KEY:-}" ]; then
    export GIT_SSH_COMMAND="ssh -i '$MODELS_SSH_KEY' -o IdentitiesOnly=yes -o BatchMode=yes"
  fi
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
