#!/usr/bin/env bash
# Install the non-Python tools the tests use, when missing: Java 17 and Node 20 with
# npm-groovy-lint at the version ci/npm/package-lock.json pins (Jenkinsfile lint), and
# Debian's chromium (browser tests).
set -euo pipefail
cd "$(dirname "$0")/.."

apt_install() {
  if [ "$(id -u)" != 0 ]; then
    echo "tools: need $* (install them, or run as root so this script can)" >&2
    exit 1
  fi
  if [ -z "${MLSM_APT_UPDATED:-}" ]; then
    apt-get update -qq >/dev/null
    export MLSM_APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

command -v java >/dev/null || apt_install openjdk-17-jre-headless
command -v npm >/dev/null || apt_install nodejs npm
command -v chromium >/dev/null || apt_install chromium

# npm tools at the exact versions of ci/npm/package-lock.json (ci/lock.sh refreshes it).
want="$(cat ci/npm/package.json ci/npm/package-lock.json | sha256sum | cut -d' ' -f1)"
if [ ! -x .tools/node_modules/.bin/npm-groovy-lint ] || [ "$(cat .tools/.mlsm-installed 2>/dev/null)" != "$want" ]; then
  echo "tools: installing the npm tools of ci/npm/package-lock.json into .tools/"
  mkdir -p .tools
  cp ci/npm/package.json ci/npm/package-lock.json .tools/
  npm ci --prefix .tools --no-audit --no-fund --loglevel=error >/dev/null
  echo "$want" > .tools/.mlsm-installed
fi
