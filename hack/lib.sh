# Shared helpers for hack/ scripts. Source it; it defines no side effects on its own.
HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$HACK_DIR/.." && pwd)"
# shellcheck source=versions.env
. "$HACK_DIR/versions.env"

# Built binaries live outside the clone so every checkout on the machine shares them,
# as setup-envtest does; names carry the version, so a bump rebuilds only what changed.
CACHE_DIR="${HYBRIDP2P_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hybrid-p2p}"
BIN_DIR="$CACHE_DIR/bin"

log() { printf '[hack] %s\n' "$*" >&2; }
die() { printf '[hack] error: %s\n' "$*" >&2; exit 1; }

# require CMD HINT: fail with a message naming what to install.
require() {
  command -v "$1" >/dev/null 2>&1 || die "'$1' is not installed. $2"
}
