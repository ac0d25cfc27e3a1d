#!/usr/bin/env bash
# Builds the pinned control-plane, node and data-service binaries through the Go module proxy
# into $BIN_DIR (outside the clone, see lib.sh), skipping any binary already built.
#   hack/build-binaries.sh                 # the default set
#   hack/build-binaries.sh kube-scheduler  # just the named ones
#   hack/build-binaries.sh node            # what the local cluster's node runs (testkit/local/node.ts)
set -euo pipefail
. "$(dirname "$0")/lib.sh"

require go "Install Go 1.24 or newer (Debian: apt-get install golang-go, or https://go.dev/dl)."

DEFAULT=(etcd kube-apiserver kubectl nats-server helm)
# The node: kubelet and kube-proxy from the same module as the control plane, containerd with its
# runc shim and ctr, crictl (stops pods through the CRI, so their networks are torn down too),
# CoreDNS, kube-router (NetworkPolicies), local-path-provisioner (the default StorageClass, as on
# kind) with its helper image (Debian's static busybox), and the pause image. Images are
# docker-archive tars ($BIN_DIR/<name>-image.tar) for `ctr images import`.
NODE=(kubelet kube-proxy containerd containerd-shim-runc-v2 ctr crictl coredns kube-router local-path-provisioner
  pause-image coredns-image local-path-provisioner-image busybox-image)
targets=()
for t in "$@"; do
  if [ "$t" = node ]; then targets+=("${NODE[@]}"); else targets+=("$t"); fi
done
[ ${#targets[@]} -gt 0 ] || targets=("${DEFAULT[@]}")

version_of() {
  case "$1" in
    kube-router) echo "$KUBE_ROUTER_VERSION" ;;
    kube-*|kubectl|kubelet) echo "$KUBE_VERSION" ;;
    etcd) echo "$ETCD_VERSION" ;;
    nats-server) echo "$NATS_VERSION" ;;
    # "+k8s": built with the Kubernetes version stamped (below); the name keeps older builds apart.
    helm) echo "$HELM_VERSION+k8s" ;;
    containerd|containerd-shim-runc-v2|ctr) echo "$CONTAINERD_VERSION" ;;
    crictl) echo "$CRICTL_VERSION" ;;
    coredns|coredns-image) echo "$COREDNS_VERSION" ;;
    local-path-provisioner|local-path-provisioner-image) echo "$LOCAL_PATH_PROVISIONER_VERSION" ;;
    busybox-image) dpkg-query -W -f '${Version}' busybox-static 2>/dev/null | sed 's/^[0-9]*://; s/-.*//' || echo none ;;
    pause-image) echo "$PAUSE_VERSION" ;;
    *) die "unknown binary '$1' (known: ${DEFAULT[*]} kube-controller-manager kube-scheduler ${NODE[*]}; 'node' for all the node's)" ;;
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
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
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

# go_install NAME PKG@VERSION [go build flags...]: one main package from the module proxy to $1.tmp.
go_install() {
  local out="$1" pkg="$2" gobin
  shift 2
  gobin="$(mktemp -d "$BIN_DIR/.gobin-XXXXXX")"
  GOBIN="$gobin" CGO_ENABLED=0 go install -trimpath "$@" "$pkg"
  mv "$gobin"/* "$out.tmp" && rmdir "$gobin"
}

# image_archive OUT NAME:TAG ROOTFS RUN-CONFIG USER: a one-layer image as a docker-archive tar, the
# format `ctr images import` (and `podman load`) reads; RUN-CONFIG is '"Entrypoint":[...]' or
# '"Cmd":[...]'. Reproducible: fixed owners and times.
image_archive() {
  local out="$1" ref="$2" root="$3" runconfig="$4" user="$5" work diff cfg cfgsum
  work="$(mktemp -d)"
  tar --sort=name --numeric-owner --owner=0 --group=0 --mtime=@0 -C "$root" -cf "$work/layer.tar" .
  diff="$(sha256sum "$work/layer.tar" | cut -d' ' -f1)"
  cfg="{\"architecture\":\"$(go env GOARCH)\",\"os\":\"linux\",\"config\":{\"User\":\"$user\",$runconfig,\"Env\":[\"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"]},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"sha256:$diff\"]},\"created\":\"1970-01-01T00:00:00Z\"}"
  cfgsum="$(printf '%s' "$cfg" | sha256sum | cut -d' ' -f1)"
  printf '%s' "$cfg" > "$work/$cfgsum.json"
  mkdir "$work/$diff" && mv "$work/layer.tar" "$work/$diff/layer.tar"
  printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["%s/layer.tar"]}]' "$cfgsum" "$ref" "$diff" > "$work/manifest.json"
  tar --sort=name --numeric-owner --owner=0 --group=0 --mtime=@0 -C "$work" -cf "$out.tmp" manifest.json "$cfgsum.json" "$diff"
  rm -rf "$work"
}

build() {
  local name="$1" version out start suffix=""
  version="$(version_of "$name")"
  case "$name" in *-image) suffix=".tar" ;; esac
  out="$BIN_DIR/$name-$version$suffix"
  if [ -e "$out" ]; then
    ln -sfn "$name-$version$suffix" "$BIN_DIR/$name$suffix"
    return
  fi
  mkdir -p "$BIN_DIR"
  start=$(date +%s)
  log "building $name v$version (first time only; minutes on two cores)..."
  case "$name" in
    kube-router)
      go_install "$out" "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router@v$version" \
        -ldflags="-s -w -X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version=v$version" ;;
    kube-*|kubectl|kubelet)
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
      go_install "$out" "github.com/nats-io/nats-server/v2@v$version" -ldflags='-s -w' ;;
    helm)
      # Stamp what Helm's own release build stamps: its version, and the Kubernetes version of the
      # client-go it is built with, which `helm template` and `helm lint` assume when no cluster
      # and no --kube-version is given (an unstamped build assumes v1.20, older than the chart allows).
      local hv="${version%+*}" mod kminor ld
      mod="$(GOFLAGS=-mod=mod go mod download -json "helm.sh/helm/v3@v$hv" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
      kminor="$(sed -n 's/^[[:space:]]*k8s\.io\/client-go v0\.\([0-9]*\)\..*/\1/p' "$mod" | head -1)"
      [ -n "$kminor" ] || die "could not read helm v$hv's client-go version from its go.mod"
      ld="-s -w -X helm.sh/helm/v3/internal/version.version=v$hv"
      for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
        ld+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$kminor"
      done
      go_install "$out" "helm.sh/helm/v3/cmd/helm@v$hv" -ldflags="$ld" ;;
    containerd|containerd-shim-runc-v2|ctr)
      # The tags containerd's release builds use, minus the snapshotters this host lacks (the
      # node uses overlayfs); static, so no libc version matters.
      local vpkg=github.com/containerd/containerd/v2/version
      go_install "$out" "github.com/containerd/containerd/v2/cmd/$name@v$version" \
        -tags 'urfave_cli_no_docs no_btrfs no_devmapper no_zfs osusergo netgo static_build' \
        -ldflags="-s -w -X $vpkg.Version=v$version -X $vpkg.Revision=module-proxy" ;;
    crictl)
      go_install "$out" "sigs.k8s.io/cri-tools/cmd/crictl@v$version" \
        -ldflags="-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=v$version" ;;
    coredns)
      go_install "$out" "github.com/coredns/coredns@v$version" -ldflags='-s -w' ;;
    local-path-provisioner)
      go_install "$out" "github.com/rancher/local-path-provisioner@v$version" \
        -ldflags="-s -w -X main.VERSION=v$version" ;;
    pause-image)
      require gcc "Install it: apt-get install gcc libc6-dev (the pause container is a static C program)."
      local dir src tag root; dir="$(kube_module)"
      src="$(cd "$dir" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)/build/pause"
      tag="$(sed -n 's/^TAG ?= *//p' "$src/Makefile")"
      [ "$tag" = "$PAUSE_VERSION" ] || die "k8s.io/kubernetes v$KUBE_VERSION builds pause $tag, versions.env pins $PAUSE_VERSION"
      root="$(mktemp -d)"
      gcc -Os -Wall -Werror -static -DVERSION="v$tag-k8s.io/kubernetes@v$KUBE_VERSION" -o "$root/pause" "$src/linux/pause.c"
      strip "$root/pause" 2>/dev/null || true
      image_archive "$out" "registry.k8s.io/pause:$version" "$root" '"Entrypoint":["/pause"]' 65535:65535
      rm -rf "$root" ;;
    coredns-image)
      build coredns
      local root; root="$(mktemp -d)"
      cp "$BIN_DIR/coredns-$version" "$root/coredns"
      mkdir -p "$root/etc"
      # The coredns plugin's health/ready endpoints need no files; nsswitch for the forward plugin's Go resolver.
      echo 'hosts: files dns' > "$root/etc/nsswitch.conf"
      image_archive "$out" "registry.k8s.io/coredns/coredns:v$version" "$root" '"Entrypoint":["/coredns"]' 65532:65532
      rm -rf "$root" ;;
    local-path-provisioner-image)
      build local-path-provisioner
      local root; root="$(mktemp -d)"
      mkdir -p "$root/usr/bin"
      cp "$BIN_DIR/local-path-provisioner-$version" "$root/usr/bin/local-path-provisioner"
      image_archive "$out" "docker.io/rancher/local-path-provisioner:v$version" "$root" '"Entrypoint":["local-path-provisioner"]' 0:0
      rm -rf "$root" ;;
    busybox-image)
      # The provisioner's helper pods run its setup/teardown scripts with sh, mkdir and rm; tests
      # use the other applets (nc, httpd, nslookup).
      [ -x /bin/busybox ] || die "busybox-static is not installed (apt-get install busybox-static; hack/ensure-deps.sh does it)"
      local root t; root="$(mktemp -d)"
      mkdir -p "$root/bin" "$root/tmp"
      chmod 1777 "$root/tmp"
      cp /bin/busybox "$root/bin/busybox"
      for t in $(/bin/busybox --list); do [ "$t" = busybox ] || ln -s busybox "$root/bin/$t"; done
      image_archive "$out" "docker.io/library/busybox:$version" "$root" '"Cmd":["sh"]' 0:0
      rm -rf "$root" ;;
  esac
  mv "$out.tmp" "$out"
  ln -sfn "$name-$version$suffix" "$BIN_DIR/$name$suffix"
  log "built $name v$version in $(( $(date +%s) - start ))s"
}

for t in "${targets[@]}"; do build "$t"; done
log "binaries ready in $BIN_DIR"
