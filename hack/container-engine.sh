# Picks the container engine for hack/ image scripts. Source it after lib.sh; it defines
# ENGINE (docker or podman), the array CE (the engine command with its global flags) and the
# array CE_LIMITS (flags for build and run), and nothing else.
#   HYBRIDP2P_ENGINE=podman  forces one engine.
#
# docker is used only when its daemon answers: a docker CLI without a daemon is common (it is
# installed on these machines) and must not win over a working podman.
if [ -n "${HYBRIDP2P_ENGINE:-}" ]; then
  ENGINE="$HYBRIDP2P_ENGINE"
elif command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  ENGINE=docker
elif command -v podman >/dev/null 2>&1; then
  ENGINE=podman
else
  die "no container engine: start a Docker daemon, or install podman (Debian: apt-get install podman runc; hack/ensure-deps.sh does it)"
fi

case "$ENGINE" in
  docker)
    CE=(docker)
    CE_LIMITS=() ;;
  podman)
    # crun refuses this kind of host's hybrid cgroup layout; runc with cgroupfs works. The default
    # ulimits exceed what a sandbox allows, so they are set (see shared/notes/containers.md).
    CE=(podman --runtime runc --cgroup-manager=cgroupfs)
    CE_LIMITS=(--ulimit nofile=20000:20000 --ulimit nproc=4096:4096) ;;
  *) die "unknown engine '$ENGINE' (docker or podman)" ;;
esac
