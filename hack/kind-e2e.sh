#!/usr/bin/env bash
# The e2e suite on kind: creates a cluster, loads the repository's images, runs `npm run e2e`
# against it, deletes the cluster. Needs docker and kind; neither exists on this machine, so this
# script has not been run here (the local cluster runs the same suite: `npm run e2e` without KUBECONFIG).
#   hack/kind-e2e.sh            # KEEP_CLUSTER=1 keeps it afterwards
# The managed stores' images (etcd, nats, postgres, dragonfly) are pulled by kind's nodes. The
# suite reads the Region's etcd at its pod IP, so the host needs a route to the pod network.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require kind "Install kind: https://kind.sigs.k8s.io/"
require docker "kind needs docker."

CLUSTER="${KIND_CLUSTER:-hybridp2p-e2e}"
KUBECONFIG_FILE="$(mktemp)"
cleanup() { [ -n "${KEEP_CLUSTER:-}" ] || kind delete cluster --name "$CLUSTER"; rm -f "$KUBECONFIG_FILE"; }
trap cleanup EXIT

kind create cluster --name "$CLUSTER" --kubeconfig "$KUBECONFIG_FILE" --wait 120s
bash "$HACK_DIR/build-images.sh" | tee /dev/stderr | awk '$1 == "IMAGE" { print $2 }' | while read -r image; do
  kind load docker-image "$image" --name "$CLUSTER"
done
# Pod IPs live on the kind node's container: route the pod CIDR through it (needs root).
node_ip="$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$CLUSTER-control-plane")"
sudo ip route replace 10.244.0.0/16 via "$node_ip" || log "no route to the pod network: the etcd checks will fail"
cd "$REPO_ROOT" && KUBECONFIG="$KUBECONFIG_FILE" npm run e2e
