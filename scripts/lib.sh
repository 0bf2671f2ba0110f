# Shared set-up for scripts/demo and scripts/test: installs what mlci needs on a fresh Debian 12
# machine (Debian packages, a pinned venv, gitlab-ci-local), skipping whatever is already there.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv"
export DVC_NO_ANALYTICS=1

log() { printf '==> %s\n' "$*" >&2; }

ensure_debs() {
  local missing=() pkg
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  if ((${#missing[@]})); then
    log "apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

ensure_venv() {
  # The model's runtime deps come from its hash-pinned lock (the committed dvc.lock depends on their
  # exact versions); mlci and the test tools from ci/constraints.txt (exact pins).
  local stamp="$VENV/.mlci-stamp" want
  want=$(cat "$ROOT/pyproject.toml" "$ROOT/ci/constraints.txt" "$ROOT/example-model-repo/requirements.lock" | sha256sum | cut -d' ' -f1)
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then return; fi
  log "creating $VENV (pinned)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check --require-hashes --no-deps \
    -r "$ROOT/example-model-repo/requirements.lock"
  "$VENV/bin/pip" install -q --disable-pip-version-check -c "$ROOT/ci/constraints.txt" -e "$ROOT[test]"
  echo "$want" > "$stamp"
}

bootstrap() {
  ensure_debs git rsync postgresql docker-registry buildah
  ensure_venv
  export PATH="$VENV/bin:$PATH"
}
