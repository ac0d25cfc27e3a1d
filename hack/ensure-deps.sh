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

# Install only when package-lock.json changed since the last install. `npm install`, not
# `npm ci`: the lock honestly lacks some other platforms' optional binaries (the registry
# answers 404 for e.g. @biomejs/cli-darwin-x64), which npm ci treats as an out-of-sync lock.
stamp="$REPO_ROOT/node_modules/.hybridp2p-lock"
want="$(sha256sum "$REPO_ROOT/package-lock.json" | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  log "installing npm dependencies"
  (cd "$REPO_ROOT" && npm install --no-audit --no-fund --loglevel=error 2>&1 | grep -v EBADENGINE || true)
  [ -x "$REPO_ROOT/node_modules/.bin/node" ] || die "npm install did not install Node 24 (node_modules/.bin/node missing)"
  echo "$want" > "$stamp"
fi

bash "$HACK_DIR/build-binaries.sh"
# The optional "cluster" service (scheduler and controller manager, so pods really run).
bash "$HACK_DIR/build-binaries.sh" kube-controller-manager kube-scheduler
