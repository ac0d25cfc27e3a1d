#!/usr/bin/env bash
# The main job: install what is missing, then run the local region in the foreground
# (control plane, kube-controller-manager, scheduler and a real node on this host: containerd,
# kubelet, kube-proxy, CoreDNS, kube-router; the images, the chart and the example region as
# pods) until Ctrl-C. `npm run local -- up` is the light variant:
# the operator as a local process and no pods.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
bash hack/ensure-deps.sh
exec node_modules/.bin/node hack/local/cli.ts up --cluster "$@"
