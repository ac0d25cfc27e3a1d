#!/usr/bin/env bash
# Builds the operator and workload images from the repository root, with docker where its
# daemon answers and with podman otherwise (hack/container-engine.sh).
#   hack/build-images.sh                      # both: ghcr.io/hybrid-p2p/{operator,workload}:<version>
#   hack/build-images.sh workload             # just one
#   IMAGE_TAG=dev IMAGE_REPO=localhost/me hack/build-images.sh
# The default names are the ones the chart and the operator pin (package.json's version), so a
# locally built image is used as is, imported into the local node's containerd or after `kind load docker-image`.
# The base image: $BASE_IMAGE if set; with docker the public node:24-bookworm-slim; with podman
# (no registry reachable on these machines) the local one from hack/build-base-image.sh.
# Prints one line per image: "IMAGE <name> <size in bytes> <build seconds>".
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$HACK_DIR/container-engine.sh"

IMAGE_REPO="${IMAGE_REPO:-ghcr.io/hybrid-p2p}"
IMAGE_TAG="${IMAGE_TAG:-$(sed -n 's/^  "version": "\(.*\)",$/\1/p' "$REPO_ROOT/package.json" | head -1)}"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(operator workload)

if [ -z "${BASE_IMAGE:-}" ]; then
  if [ "$ENGINE" = docker ]; then BASE_IMAGE=node:24-bookworm-slim; else BASE_IMAGE="$(bash "$HACK_DIR/build-base-image.sh")"; fi
fi
# A registry mirror configured for npm on this machine is used inside the build too.
registry="$(cd "$REPO_ROOT" && npm config get registry 2>/dev/null || echo https://registry.npmjs.org/)"

for t in "${targets[@]}"; do
  case "$t" in
    operator) dir=operator ;;
    workload) dir=workloads ;;
    *) die "no image '$t' (known: operator workload)" ;;
  esac
  image="$IMAGE_REPO/$t:$IMAGE_TAG"
  start=$(date +%s)
  log "building $image on $BASE_IMAGE with $ENGINE"
  "${CE[@]}" build "${CE_LIMITS[@]}" --network=host \
    --build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "NPM_CONFIG_REGISTRY=$registry" \
    -f "$REPO_ROOT/$dir/Containerfile" -t "$image" "$REPO_ROOT" >&2
  size="$("${CE[@]}" image inspect --format '{{.Size}}' "$image")"
  echo "IMAGE $image $size $(( $(date +%s) - start ))"
done
