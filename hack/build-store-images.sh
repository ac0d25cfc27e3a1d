#!/usr/bin/env bash
# Local stand-ins for the data-store images the operator pins (operator/render/constants.ts),
# built under those very names, so managed stores run on the local cluster where no registry can
# be pulled from: etcd and nats-server from the pinned Go builds, DragonflyDB as redis-server
# (same protocol) and PostgreSQL from the host's Debian packages, on the local base image.
#   hack/build-store-images.sh    # prints "IMAGE <name>" per image
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$HACK_DIR/container-engine.sh"

require redis-server "Install it: apt-get install redis-server"
PG="$(ls -d /usr/lib/postgresql/*/ 2>/dev/null | sort -V | tail -1)"
[ -n "$PG" ] || die "PostgreSQL server binaries not found. Install them: apt-get install postgresql"
PG="${PG%/}"
PG_MAJOR="${PG##*/}"
BASE="$(bash "$HACK_DIR/build-base-image.sh")"
bash "$HACK_DIR/build-binaries.sh" etcd nats-server >/dev/null 2>&1

# The names, from the operator's own constants (Node 24 runs the .ts directly).
names="$(cd "$REPO_ROOT" && node_modules/.bin/node -e '
  const { STORES } = await import("./operator/render/constants.ts");
  const { DEFAULT_DRAGONFLY_IMAGE } = await import("./operator/api/index.ts");
  console.log(STORES.etcd.image, STORES.nats.image, DEFAULT_DRAGONFLY_IMAGE, STORES.postgres.image, STORES.postgres.uid);
' --input-type=module)"
read -r ETCD_IMAGE NATS_IMAGE DRAGONFLY_IMAGE POSTGRES_IMAGE POSTGRES_UID <<<"$names"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

build() {
  local image="$1" dir="$2"
  # Host network: the builds fetch nothing, and a build network would leave podman's netavark
  # chains in the host's netfilter tables (the local node's stop checks the host is as before).
  "${CE[@]}" build "${CE_LIMITS[@]}" --network=host -q -t "$image" "$dir" >/dev/null
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

# Copies binaries' shared libraries into a root filesystem, at the paths the loader looks in.
libs() {
  local root="$1" lib
  shift
  for lib in $(ldd "$@" | grep -oE '/[^ ]+\.so[^ ]*' | sort -u); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
}

# redis-server with the shared libraries it links, and an entrypoint that speaks Dragonfly's
# flags: --flag=value becomes redis' --flag value; --tls with --tls_cert_file/--tls_key_file serves
# TLS on the --port (redis: --tls-port there, no plain port; redis insists on a CA file, the
# ca.crt beside the certificate, but asks clients for none, as Dragonfly without
# --tls_ca_cert_file); DFLY_requirepass (Dragonfly reads flags from DFLY_<flag>) is the password,
# passed in a file rather than on the command line.
d="$work/dragonfly"
mkdir -p "$d/root/usr/local/bin"
cp -L "$(command -v redis-server)" "$d/root/usr/local/bin/redis-server"
libs "$d/root" "$(command -v redis-server)"
cat >"$d/root/usr/local/bin/dragonfly" <<'SH'
#!/bin/sh
# DragonflyDB stand-in for the local cluster: redis-server speaks the same protocol.
set -e
port=6379 tls= cert= key=
for a in "$@"; do
  shift
  case "$a" in
    --port=*) port="${a#*=}" ;;
    --tls) tls=1 ;;
    --tls_cert_file=*) cert="${a#*=}" ;;
    --tls_key_file=*) key="${a#*=}" ;;
    --*=*) set -- "$@" "${a%%=*}" "${a#*=}" ;;
    *) set -- "$@" "$a" ;;
  esac
done
umask 077
conf=/tmp/dragonfly-standin.conf
: >"$conf"
[ -z "$DFLY_requirepass" ] || printf 'requirepass "%s"\n' "$DFLY_requirepass" >>"$conf"
if [ -n "$tls" ]; then
  set -- "$@" --port 0 --tls-port "$port" --tls-cert-file "$cert" --tls-key-file "$key" \
    --tls-ca-cert-file "${cert%/*}/ca.crt" --tls-auth-clients no
else
  set -- "$@" --port "$port"
fi
exec redis-server "$conf" --bind 0.0.0.0 --protected-mode no --save "" --appendonly no "$@"
SH
chmod 0755 "$d/root/usr/local/bin/dragonfly"
printf 'FROM %s\nCOPY root/ /\nUSER 65532:65532\nENTRYPOINT ["/usr/local/bin/dragonfly"]\n' "$BASE" >"$d/Containerfile"
build "$DRAGONFLY_IMAGE" "$d"

# PostgreSQL: the server, its share files and time zones, and an entrypoint that does what the
# official image's does with the environment and arguments the operator sets: initialise an empty
# data directory (POSTGRES_PASSWORD becomes the superuser's scram-sha-256 password, as initdb
# --pwfile; without one only POSTGRES_HOST_AUTH_METHOD=trust starts, as there), create
# POSTGRES_DB on a socket-only server started with the same arguments (so an hba_file or ssl given
# there holds from the start), then serve. A first argument "postgres" is the official CMD's.
d="$work/postgres"
mkdir -p "$d/root/usr/lib/postgresql" "$d/root/usr/share/postgresql" "$d/root/usr/share" "$d/root/usr/local/bin"
cp -a "$PG" "$d/root/usr/lib/postgresql/"
cp -a "/usr/share/postgresql/$PG_MAJOR" "$d/root/usr/share/postgresql/"
cp -aL /usr/share/zoneinfo "$d/root/usr/share/"
libs "$d/root" "$PG"/bin/*
cat >"$d/root/usr/local/bin/docker-entrypoint.sh" <<SH
#!/bin/sh
set -e
export PATH=$PG/bin:\$PATH
[ "\$1" = postgres ] && shift
user="\${POSTGRES_USER:-postgres}"
if [ ! -s "\$PGDATA/PG_VERSION" ]; then
  mkdir -p "\$PGDATA"
  if [ -n "\$POSTGRES_PASSWORD" ]; then
    method="\${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"
    (umask 077; printf '%s\n' "\$POSTGRES_PASSWORD" >/tmp/pwfile)
    initdb -D "\$PGDATA" -U "\$user" --pwfile=/tmp/pwfile --auth=scram-sha-256 -E UTF8 --locale=C >/dev/null
    rm -f /tmp/pwfile
  elif [ "\$POSTGRES_HOST_AUTH_METHOD" = trust ]; then
    method=trust
    initdb -D "\$PGDATA" -U "\$user" --auth=trust -E UTF8 --locale=C >/dev/null
  else
    echo "Database is uninitialized and superuser password is not specified: set POSTGRES_PASSWORD" >&2
    exit 1
  fi
  echo "host all all all \$method" >>"\$PGDATA/pg_hba.conf"
  if [ -n "\$POSTGRES_DB" ] && [ "\$POSTGRES_DB" != postgres ]; then
    pg_ctl -D "\$PGDATA" -o "\$* -c listen_addresses= -k /tmp" -w start >/dev/null
    PGPASSWORD="\$POSTGRES_PASSWORD" psql -h /tmp -U "\$user" -d postgres -qc "create database \\"\$POSTGRES_DB\\""
    pg_ctl -D "\$PGDATA" -m fast -w stop >/dev/null
  fi
fi
exec postgres -D "\$PGDATA" -c listen_addresses='*' -k /tmp "\$@"
SH
chmod 0755 "$d/root/usr/local/bin/docker-entrypoint.sh"
# STOPSIGNAL SIGINT as the official image: PostgreSQL's fast shutdown. On SIGTERM (a "smart"
# shutdown) it waits for every client to disconnect, so a pod deletion took the whole grace period.
printf 'FROM %s\nCOPY root/ /\nRUN echo "postgres:x:%s:%s::/var/lib/postgresql:/bin/sh" >>/etc/passwd\nUSER %s:%s\nSTOPSIGNAL SIGINT\nENTRYPOINT ["docker-entrypoint.sh"]\nCMD []\n' \
  "$BASE" "$POSTGRES_UID" "$POSTGRES_UID" "$POSTGRES_UID" "$POSTGRES_UID" >"$d/Containerfile"
build "$POSTGRES_IMAGE" "$d"
