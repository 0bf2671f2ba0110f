#!/usr/bin/env bash
# Install the pinned gitlab-ci-local into <repo>/.tools/gcl (no global install).
#
# Idempotent: does nothing when the pinned version is already there. Also makes
# sure Debian's rsync is present (gitlab-ci-local's --shell-isolation needs it).
# gitlab-ci-local 4.73.0 is the newest release that runs on Node 20 (4.75 needs 22).
# Keep GCL_VERSION in step with tests/testing/gitlab_ci_local.py (a test checks it).
set -euo pipefail

GCL_VERSION="4.73.0"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX="$REPO/.tools/gcl"

log() { echo "install-gitlab-ci-local: $*" >&2; }

apt_install() {
    if [ "$(id -u)" -ne 0 ]; then
        log "need root to apt-get install $*; install it by hand"
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if ! command -v rsync >/dev/null 2>&1; then
    log "installing rsync (apt)"
    apt_install rsync
fi

if ! command -v git >/dev/null 2>&1; then
    log "'git' is not on PATH; gitlab-ci-local needs it"
    exit 1
fi

# shellcheck source=.ci/npm-tool.sh
source "$REPO/.ci/npm-tool.sh"
install_npm_tool install-gitlab-ci-local gitlab-ci-local "$GCL_VERSION" "$PREFIX" gitlab-ci-local
