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

ensure_wheelhouse() {
  # The example's pinned wheels, for its image's dependency layer (no index needed afterwards).
  local wheels="$ROOT/.tools/wheelhouse"
  if [[ ! -f "$wheels/done" ]]; then
    log "pip download the example's pinned wheels into $wheels"
    "$VENV/bin/pip" download -q --disable-pip-version-check --no-deps --require-hashes \
      -r "$ROOT/example-model-repo/requirements.lock" -d "$wheels"
    touch "$wheels/done"
  fi
}

ensure_job_wheelhouse() {
  # The job image's locked wheels (ci/job-image/requirements.lock, for its Debian bookworm Python), downloaded
  # hash-checked once; made again when the lock changes.
  local wheels="$ROOT/.tools/job-wheelhouse" want
  want=$(sha256sum "$ROOT/ci/job-image/requirements.lock" | cut -d' ' -f1)
  if [[ "$(cat "$wheels/done" 2>/dev/null)" != "$want" ]]; then
    log "pip download the job image's locked wheels into $wheels"
    rm -rf "$wheels" && mkdir -p "$wheels"
    "$VENV/bin/python" "$ROOT/ci/job-image/lock.py" download "$wheels"
    echo "$want" > "$wheels/done"
  fi
}

ensure_image_inputs() {
  # What the model-image and job-image tests build from, made once and cached under .tools/ (never in a test):
  # a Debian bookworm rootfs with python3, pip and git (debootstrap, ~90 s; debootstrap's downloaded .debs
  # removed), the example's pinned wheels and the job image's.
  local base="$ROOT/.tools/base" include="python3,python3-pip,python-is-python3,git"
  ensure_wheelhouse
  ensure_job_wheelhouse
  if [[ "$(cat "$base/done" 2>/dev/null)" != "$include" ]]; then
    log "debootstrap bookworm (minbase + $include) into $base/rootfs"
    rm -rf "$base" && mkdir -p "$base"
    debootstrap --variant=minbase --include="$include" bookworm "$base/rootfs" \
      "${MLCI_DEBIAN_MIRROR:-http://deb.debian.org/debian}" >"$base/debootstrap.log" 2>&1
    rm -f "$base"/rootfs/var/cache/apt/archives/*.deb
    echo "$include" > "$base/done"
  fi
}

stop_system_nginx() {
  # Installing Debian's nginx starts a system nginx on :80 (unless policy-rc.d forbids it, as in containers)
  # and enables it at boot. The tests run their own (tests/testing/nginx.py, a Nexus raw stand-in on a free
  # port), so the system one is stopped and disabled right after mlci's bootstrap installed it.
  if [[ -d /run/systemd/system ]]; then
    systemctl disable --now nginx >/dev/null 2>&1 || true
  else
    service nginx stop >/dev/null 2>&1 || true
    update-rc.d nginx disable >/dev/null 2>&1 || true
  fi
}

bootstrap() {
  local had_nginx=1
  dpkg -s nginx >/dev/null 2>&1 || had_nginx=0
  ensure_debs git rsync postgresql docker-registry buildah skopeo debootstrap nginx
  ((had_nginx)) || stop_system_nginx
  ensure_venv
  export PATH="$VENV/bin:$PATH"
}
