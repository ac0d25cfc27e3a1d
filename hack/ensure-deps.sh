#!/usr/bin/env bash
# Installs what the tests and the local region need, idempotently: Debian packages for the
# data services and the local node, the npm dependencies (which bring Node 24), and the pinned
# Go builds (control plane, data services, the node's parts and images).
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

# The local cluster's node (testkit/local/node.ts; needs root): podman builds the images (with
# runc, as crun refuses hybrid cgroup hosts; a Docker daemon that answers builds them instead),
# containerd runs them with Debian's runc and CNI plugins; the kubelet, kube-proxy and
# kube-router use iptables, nftables, ipset and conntrack; gcc builds the pause container;
# busybox-static is the storage provisioner's helper image. Not fatal when missing: only the
# "cluster" service (the e2e suite, the main job) needs them.
node_missing=()
command -v podman >/dev/null 2>&1 || docker info >/dev/null 2>&1 || node_missing+=(podman)
command -v runc >/dev/null 2>&1 || node_missing+=(runc)
[ -x /usr/lib/cni/bridge ] || node_missing+=(containernetworking-plugins)
for tool in iptables:iptables nft:nftables ipset:ipset conntrack:conntrack gcc:gcc ip:iproute2; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || node_missing+=("${tool#*:}")
done
[ -f /usr/include/stdio.h ] || node_missing+=(libc6-dev)
[ -x /bin/busybox ] || node_missing+=(busybox-static)
if [ ${#node_missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing Debian packages for the local node: ${node_missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${node_missing[@]}" >/dev/null \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${node_missing[@]}" >/dev/null; } \
      || log "warning: could not install ${node_missing[*]}: no local cluster"
  else
    log "note: the local cluster needs ${node_missing[*]} (Debian: sudo apt-get install ${node_missing[*]})"
  fi
fi

# Debian's chromium for the browser tests (workloads/web/browser.int.test.ts drives it headless
# with playwright-core; nothing downloads a browser). Not fatal: only those tests need it.
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing chromium (browser tests)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
      || log "warning: could not install chromium: the browser tests will fail"
  else
    log "note: the browser tests need chromium (Debian: sudo apt-get install chromium)"
  fi
fi

# Debian's prometheus (prometheus and promtool) for the monitoring tests: promtool checks the
# chart's rules and dashboard queries, and the e2e suite runs Prometheus beside the local cluster.
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing prometheus (monitoring tests)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; } \
      || log "warning: could not install prometheus: the monitoring tests will fail"
    # The package starts its own server on :9090 where systemd runs; ours run on throwaway ports.
    command -v systemctl >/dev/null 2>&1 && systemctl disable --now prometheus >/dev/null 2>&1 || true
  else
    log "note: the monitoring tests need prometheus and promtool (Debian: sudo apt-get install prometheus)"
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
# The optional "cluster" service: scheduler, controller manager and the node, so pods really run.
bash "$HACK_DIR/build-binaries.sh" kube-controller-manager kube-scheduler node
