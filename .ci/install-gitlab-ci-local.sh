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
BIN="$PREFIX/node_modules/.bin/gitlab-ci-local"
PKG_JSON="$PREFIX/node_modules/gitlab-ci-local/package.json"

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

for tool in node npm git; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        log "'$tool' is not on PATH; gitlab-ci-local $GCL_VERSION needs Node >= 20 with npm, and git"
        exit 1
    fi
done

installed_version() {
    [ -f "$PKG_JSON" ] || return 0
    node -e 'process.stdout.write(require(process.argv[1]).version)' "$PKG_JSON" 2>/dev/null || true
}

if [ "$(installed_version)" = "$GCL_VERSION" ] && [ -x "$BIN" ]; then
    log "gitlab-ci-local $GCL_VERSION already installed at $BIN"
    exit 0
fi

log "installing gitlab-ci-local@$GCL_VERSION into $PREFIX"
mkdir -p "$PREFIX"
npm install --prefix "$PREFIX" --save-exact --no-audit --no-fund --loglevel=error \
    "gitlab-ci-local@$GCL_VERSION" >&2

got="$(installed_version)"
if [ "$got" != "$GCL_VERSION" ] || [ ! -x "$BIN" ]; then
    log "install failed: found version '${got:-none}' at $BIN"
    exit 1
fi
log "installed gitlab-ci-local $got at $BIN"
