#!/usr/bin/env bash
# Local stand-ins for the data-store images the operator pins (operator/render/constants.ts),
# built under those very names, so managed stores run on the local cluster where no registry can
# be pulled from: etcd and nats-server from the pinned Go builds, DragonflyDB as redis-server
# (same protocol) from the host's package, on the local base image. Postgres is not covered yet.
#   hack/build-store-images.sh    # prints "IMAGE <name>" per image
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$HACK_DIR/container-engine.sh"

require redis-server "Install it: apt-get install redis-server"
BASE="$(bash "$HACK_DIR/build-base-image.sh")"
bash "$HACK_DIR/build-binaries.sh" etcd nats-server >/dev/null 2>&1

# The names, from the operator's own constants (Node 24 runs the .ts directly).
names="$(cd "$REPO_ROOT" && node_modules/.bin/node -e '
  const { STORES } = await import("./operator/render/constants.ts");
  const { DEFAULT_DRAGONFLY_IMAGE } = await import("./operator/api/index.ts");
  console.log(STORES.etcd.image, STORES.nats.image, DEFAULT_DRAGONFLY_IMAGE);
' --input-type=module)"
read -r ETCD_IMAGE NATS_IMAGE DRAGONFLY_IMAGE <<<"$names"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

build() {
  local image="$1" dir="$2"
  "${CE[@]}" build "${CE_LIMITS[@]}" -q -t "$image" "$dir" >/dev/null
  echo "IMAGE $image"
}

mkdir -p "$work/etcd"
cp "$BIN_DIR/etcd" "$work/etcd/etcd"
printf 'FROM %s\nCOPY etcd /usr/local/bin/etcd\nUSER 65532:65532\nENTRYPOINT ["etcd"]\n' "$BASE" >"$work/etcd/Containerfile"
build "$ETCD_IMAGE" "$work/etcd"

mkdir -p "$work/nats"
cp "$BIN_DIR/nats-server" "$work/nats/nats-server"
printf 'FROM %s\nCOPY nats-server /usr/local/bin/nats-server\nUSER 65532:65532\nENTRYPOINT ["nats-server"]\n' "$BASE" >"$work/nats/Containerfile"
build "$NATS_IMAGE" "$work/nats"

# redis-server with the shared libraries it links, and an entrypoint that turns Dragonfly's
# --flag=value into redis' --flag value.
d="$work/dragonfly"
mkdir -p "$d/root/usr/local/bin"
cp -L "$(command -v redis-server)" "$d/root/usr/local/bin/redis-server"
for lib in $(ldd "$(command -v redis-server)" | grep -oE '/[^ ]+\.so[^ ]*' | sort -u); do
  mkdir -p "$d/root$(dirname "$lib")"
  cp -L "$lib" "$d/root$lib"
done
cat >"$d/root/usr/local/bin/dragonfly" <<'SH'
#!/bin/sh
# DragonflyDB stand-in for the local cluster: redis-server speaks the same protocol.
for a in "$@"; do
  shift
  case "$a" in
    --*=*) set -- "$@" "${a%%=*}" "${a#*=}" ;;
    *) set -- "$@" "$a" ;;
  esac
done
exec redis-server --bind 0.0.0.0 --protected-mode no --save "" --appendonly no "$@"
SH
chmod 0755 "$d/root/usr/local/bin/dragonfly"
printf 'FROM %s\nCOPY root/ /\nUSER 65532:65532\nENTRYPOINT ["/usr/local/bin/dragonfly"]\n' "$BASE" >"$d/Containerfile"
build "$DRAGONFLY_IMAGE" "$d"
