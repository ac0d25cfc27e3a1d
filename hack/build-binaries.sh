#!/usr/bin/env bash
# Builds the pinned control-plane and data-service binaries through the Go module proxy
# into $BIN_DIR (outside the clone, see lib.sh), skipping any binary already built.
#   hack/build-binaries.sh                 # the default set
#   hack/build-binaries.sh kube-scheduler  # just the named ones
set -euo pipefail
. "$(dirname "$0")/lib.sh"

require go "Install Go 1.24 or newer (Debian: apt-get install golang-go, or https://go.dev/dl)."

DEFAULT=(etcd kube-apiserver kubectl nats-server helm)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${DEFAULT[@]}")

version_of() {
  case "$1" in
    kube-*|kubectl) echo "$KUBE_VERSION" ;;
    etcd) echo "$ETCD_VERSION" ;;
    nats-server) echo "$NATS_VERSION" ;;
    helm) echo "$HELM_VERSION" ;;
    *) die "unknown binary '$1' (known: etcd kube-apiserver kubectl kube-controller-manager kube-scheduler nats-server helm)" ;;
  esac
}

# k8s.io/kubernetes requires its staging modules at v0.0.0, which no proxy serves: pin each
# one to v0.<minor>.<patch>, read from the module's own go.mod so a version bump needs no edit.
kube_module() {
  local dir="$CACHE_DIR/src/kubernetes-$KUBE_VERSION"
  if [ ! -f "$dir/.ready" ]; then
    mkdir -p "$dir"
    local mod
    mod="$(cd "$dir" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@v$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
    [ -f "$mod" ] || die "could not download k8s.io/kubernetes@v$KUBE_VERSION from the Go module proxy"
    local staging="v0.${KUBE_VERSION#1.}"
    {
      echo "module hybridp2p.local/kubebuild"
      echo "go 1.24"
      echo "require k8s.io/kubernetes v$KUBE_VERSION"
      grep -E '^\s+k8s\.io/[a-z0-9-]+ v0\.0\.0$' "$mod" | awk -v v="$staging" '{print "replace " $1 " => " $1 " " v}'
    } > "$dir/go.mod"
    cat > "$dir/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
    (cd "$dir" && GOFLAGS=-mod=mod go mod tidy -e >/dev/null 2>&1 || true)
    (cd "$dir" && GOFLAGS=-mod=mod go mod download) || die "resolving Kubernetes modules failed"
    touch "$dir/.ready"
  fi
  echo "$dir"
}

etcd_module() {
  local dir="$CACHE_DIR/src/etcd-$ETCD_VERSION"
  if [ ! -f "$dir/.ready" ]; then
    mkdir -p "$dir"
    printf 'module hybridp2p.local/etcdbuild\n\ngo 1.24\n' > "$dir/go.mod"
    # etcd's own main.go lives in a module the proxy may not serve; etcdmain is the same entry point.
    cat > "$dir/main.go" <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
    (cd "$dir" && GOFLAGS=-mod=mod go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION" && GOFLAGS=-mod=mod go mod tidy) \
      || die "resolving etcd v$ETCD_VERSION failed"
    touch "$dir/.ready"
  fi
  echo "$dir"
}

build() {
  local name="$1" version out start
  version="$(version_of "$name")"
  out="$BIN_DIR/$name-$version"
  if [ -x "$out" ]; then
    ln -sfn "$name-$version" "$BIN_DIR/$name"
    return
  fi
  mkdir -p "$BIN_DIR"
  start=$(date +%s)
  log "building $name v$version (first time only; minutes on two cores)..."
  case "$name" in
    kube-*|kubectl)
      local dir; dir="$(kube_module)"
      # Stamp the version as Kubernetes' own build does (hack/lib/version.sh): clients, helm
      # and version-skew checks read it, and an unstamped build reports v0.0.0-master.
      local ld="-s -w" pkg minor="${KUBE_VERSION#*.}"; minor="${minor%%.*}"
      for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ld+=" -X $pkg.gitVersion=v$KUBE_VERSION -X $pkg.gitMajor=${KUBE_VERSION%%.*} -X $pkg.gitMinor=$minor"
        ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
      done
      (cd "$dir" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags="$ld" -o "$out.tmp" "k8s.io/kubernetes/cmd/$name") ;;
    etcd)
      local dir; dir="$(etcd_module)"
      (cd "$dir" && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$out.tmp" .) ;;
    nats-server)
      GOBIN="$BIN_DIR/.gobin-nats" CGO_ENABLED=0 go install -trimpath -ldflags='-s -w' "github.com/nats-io/nats-server/v2@v$version"
      mv "$BIN_DIR/.gobin-nats/nats-server" "$out.tmp" && rmdir "$BIN_DIR/.gobin-nats" ;;
    helm)
      GOBIN="$BIN_DIR/.gobin-helm" CGO_ENABLED=0 go install -trimpath -ldflags='-s -w' "helm.sh/helm/v3/cmd/helm@v$version"
      mv "$BIN_DIR/.gobin-helm/helm" "$out.tmp" && rmdir "$BIN_DIR/.gobin-helm" ;;
  esac
  mv "$out.tmp" "$out"
  ln -sfn "$name-$version" "$BIN_DIR/$name"
  log "built $name v$version in $(( $(date +%s) - start ))s"
}

for t in "${targets[@]}"; do build "$t"; done
log "binaries ready in $BIN_DIR"
