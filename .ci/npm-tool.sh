# Sourced by the .ci/install-*.sh scripts: install one pinned npm package into its own prefix (no global
# install), idempotently. Usage: install_npm_tool LABEL PACKAGE VERSION PREFIX BIN_NAME
install_npm_tool() {
    local label=$1 package=$2 version=$3 prefix=$4 bin="$4/node_modules/.bin/$5"
    local pkg_json="$prefix/node_modules/$package/package.json" tool got
    for tool in node npm; do
        if ! command -v "$tool" >/dev/null 2>&1; then
            echo "$label: '$tool' is not on PATH; $package $version needs Node >= 20 with npm" >&2
            exit 1
        fi
    done
    installed_version() {
        [ -f "$pkg_json" ] || return 0
        node -e 'process.stdout.write(require(process.argv[1]).version)' "$pkg_json" 2>/dev/null || true
    }
    if [ "$(installed_version)" = "$version" ] && [ -x "$bin" ]; then
        echo "$label: $package $version already installed at $bin" >&2
        return 0
    fi
    echo "$label: installing $package@$version into $prefix" >&2
    mkdir -p "$prefix"
    npm install --prefix "$prefix" --save-exact --no-audit --no-fund --loglevel=error "$package@$version" >&2
    got="$(installed_version)"
    if [ "$got" != "$version" ] || [ ! -x "$bin" ]; then
        echo "$label: install failed: found version '${got:-none}' at $bin" >&2
        exit 1
    fi
    echo "$label: installed $package $got at $bin" >&2
}
