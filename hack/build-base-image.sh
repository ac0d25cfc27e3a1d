#!/usr/bin/env bash
# Makes the local base image, a stand-in for node:24-bookworm-slim where no registry can be
# pulled from: Node from the npm package node-linux-<arch> (the version package-lock.json pins),
# npm, /bin/sh and a few core tools, the shared libraries they link (found with ldd on this host),
# CA certificates, and a non-root user node (1000:1000). Same layout as the official image
# (/usr/local/bin/node, /usr/local/lib/node_modules/npm), so one Containerfile builds on both.
#   hack/build-base-image.sh           # prints the image name; skips the build if it exists
#   hack/build-base-image.sh --force   # rebuild
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$HACK_DIR/container-engine.sh"

NPM_VERSION="${HYBRIDP2P_BASE_NPM_VERSION:-11.19.1}"
NODE_VERSION="$(sed -n '/"node_modules\/node": {/,/}/s/.*"version": "\(.*\)".*/\1/p' "$REPO_ROOT/package-lock.json" | head -1)"
[ -n "$NODE_VERSION" ] || die "package-lock.json pins no node package version"
case "$(uname -m)" in
  x86_64) ARCH=x64 ;;
  aarch64) ARCH=arm64 ;;
  *) die "no node-linux package for $(uname -m)" ;;
esac
IMAGE="localhost/hybrid-p2p/node-base:$NODE_VERSION"

if [ "${1:-}" != "--force" ] && "${CE[@]}" image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "$IMAGE"
  exit 0
fi
require ldd "It comes with glibc (Debian: libc-bin)."
require npm "Install Node.js and npm."

start=$(date +%s)
dl="$CACHE_DIR/base"
mkdir -p "$dl"
for pkg in "node-linux-$ARCH@$NODE_VERSION" "npm@$NPM_VERSION"; do
  tgz="$dl/$(echo "${pkg%@*}-${pkg#*@}" | tr -d @).tgz"
  [ -f "$tgz" ] || (cd "$dl" && npm pack --silent "$pkg" >/dev/null) || die "npm pack $pkg failed"
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
root="$work/rootfs"
# Debian's merged /usr: /bin, /lib, /lib64 and /sbin point into /usr.
mkdir -p "$root"/usr/{bin,lib,lib64,sbin,local/bin,local/lib/node_modules} "$root"/{etc/ssl/certs,tmp,root,home/node}
for d in bin lib lib64 sbin; do ln -s "usr/$d" "$root/$d"; done
chmod 1777 "$root/tmp"

tar -xzf "$dl/node-linux-$ARCH-$NODE_VERSION.tgz" -C "$work" package/bin/node
# The package ships the binary with its debug info; stripping it saves tens of MB per image.
if command -v strip >/dev/null 2>&1; then strip --strip-debug "$work/package/bin/node"; fi
install -m 0755 "$work/package/bin/node" "$root/usr/local/bin/node"
mkdir -p "$root/usr/local/lib/node_modules/npm"
tar -xzf "$dl/npm-$NPM_VERSION.tgz" -C "$root/usr/local/lib/node_modules/npm" --strip-components=1
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"
# A shell and the few tools Containerfile RUN steps use, from the host (slim Debian has them too).
TOOLS=(sh env cat cp find id ls mkdir mv rm)
tools=()
for t in "${TOOLS[@]}"; do
  p="$(command -v "$t")" || die "'$t' not found on this host"
  cp -L "$p" "$root/usr/bin/$t"
  tools+=("$p")
done

# Every shared library these binaries link, at the path the loader looks for it.
for lib in $(ldd "$root/usr/local/bin/node" "${tools[@]}" | grep -oE '/[^ ]+\.so[^ ]*' | sort -u); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done

# The host's CA bundle, which Node is told to trust: a TLS-intercepting proxy's CA (as on these
# machines) then works inside builds as it does on the host.
[ -f /etc/ssl/certs/ca-certificates.crt ] && cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
cat > "$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
node:x:1000:1000::/home/node:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
PASSWD
cat > "$root/etc/group" <<'GROUP'
root:x:0:
node:x:1000:
nogroup:x:65534:
GROUP
echo 'hosts: files dns' > "$root/etc/nsswitch.conf"
chown 1000:1000 "$root/home/node" 2>/dev/null || true

tar --sort=name --numeric-owner --mtime=@0 -C "$root" -cf "$work/rootfs.tar" .
"${CE[@]}" import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change "ENV NODE_VERSION=$NODE_VERSION" \
  --change 'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt' \
  --change 'CMD ["node"]' \
  "$work/rootfs.tar" "$IMAGE" >/dev/null
log "built $IMAGE in $(( $(date +%s) - start ))s ($(du -sh "$work/rootfs.tar" | cut -f1) uncompressed)"
echo "$IMAGE"
