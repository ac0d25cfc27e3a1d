#!/usr/bin/env bash
# The main job: install what is missing, then run the local region in the foreground
# (control plane, data services, CRDs, the example region) until Ctrl-C.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
bash hack/ensure-deps.sh
exec node_modules/.bin/node hack/local/cli.ts up "$@"
