#!/usr/bin/env bash
# Installs what the tests and the local region need, idempotently: Debian packages for the
# data services, the npm dependencies (which bring Node 24), and the pinned Go builds.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

require npm "Install Node.js and npm (any version; the project pins Node 24 itself)."

missing=()
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing+=(postgresql)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing Debian packages: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; } \
      || die "could not install ${missing[*]}"
    # The Debian package starts its own cluster/server; ours run on throwaway ports instead.
    command -v systemctl >/dev/null 2>&1 && systemctl disable --now redis-server postgresql >/dev/null 2>&1 || true
  else
    die "missing: ${missing[*]}. Install them (Debian/Ubuntu: sudo apt-get install ${missing[*]})."
  fi
fi

# A container engine for the images and the local node agent: podman (with runc, as crun
# refuses hybrid cgroup hosts) unless a Docker daemon answers. Not fatal when missing: the
# node agent then runs pods as local processes; only image builds need an engine.
if ! command -v podman >/dev/null 2>&1 && ! docker info >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing podman and runc"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc >/dev/null \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc >/dev/null; } \
      || log "warning: could not install podman: no image builds; pods run as local processes"
  else
    log "note: no podman and no Docker daemon: no image builds (Debian: sudo apt-get install podman runc)"
  fi
fi

# Install only when package-lock.json changed since the last install, with `npm ci`: it installs
# exactly what the lock names and fails when package.json and the lock disagree, so what the
# tests run is what a new user installs. The lock lists every platform's optional binaries.
stamp="$REPO_ROOT/node_modules/.hybridp2p-lock"
want="$(sha256sum "$REPO_ROOT/package-lock.json" | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  log "installing npm dependencies (npm ci)"
  (cd "$REPO_ROOT" && npm ci --no-audit --no-fund --loglevel=error) \
    || die "npm ci failed: package.json and package-lock.json disagree, or the registry refused a package. Run 'npm install' and commit package-lock.json."
  [ "$(sha256sum "$REPO_ROOT/package-lock.json" | cut -d' ' -f1)" = "$want" ] \
    || die "the install changed package-lock.json; commit the lock the install wants"
  [ -x "$REPO_ROOT/node_modules/.bin/node" ] || die "npm ci did not install Node 24 (node_modules/.bin/node missing)"
  echo "$want" > "$stamp"
fi

bash "$HACK_DIR/build-binaries.sh"
# The optional "cluster" service (scheduler and controller manager, so pods really run).
bash "$HACK_DIR/build-binaries.sh" kube-controller-manager kube-scheduler
