// The one place for the names, ports and defaults the rendered workloads share. The
// workloads read the same environment variables (workloads/runtime/config.ts).
import { DEFAULT_DRAGONFLY_IMAGE } from "../api/index.ts";

/** Health (/healthz, /readyz) and Prometheus metrics ports of every workload pod. */
export const HEALTH_PORT = 8081;
export const METRICS_PORT = 9090;
/** rAthena's map-server port; map servers listen here for the gateway. */
export const MAP_SERVER_PORT = 5121;

export const ENV = {
  etcdEndpoints: "HYBRIDP2P_ETCD_ENDPOINTS",
  natsUrl: "HYBRIDP2P_NATS_URL",
  redisUrl: "HYBRIDP2P_REDIS_URL",
  databaseUrl: "HYBRIDP2P_DATABASE_URL",
  region: "HYBRIDP2P_REGION",
  zone: "HYBRIDP2P_ZONE",
  maps: "HYBRIDP2P_MAPS",
  workerThreads: "HYBRIDP2P_WORKER_THREADS",
  tickRateHz: "HYBRIDP2P_TICK_RATE_HZ",
  maxPlayers: "HYBRIDP2P_MAX_PLAYERS",
  authKeysetFile: "HYBRIDP2P_AUTH_KEYSET_FILE",
  gatewayAddress: "HYBRIDP2P_GATEWAY_ADDRESS",
  healthPort: "HYBRIDP2P_HEALTH_PORT",
  metricsPort: "HYBRIDP2P_METRICS_PORT",
  podName: "POD_NAME",
  podNamespace: "POD_NAMESPACE",
} as const;

/** Labels and the operator's own names. */
export const LABEL = {
  name: "app.kubernetes.io/name",
  instance: "app.kubernetes.io/instance",
  component: "app.kubernetes.io/component",
  partOf: "app.kubernetes.io/part-of",
  managedBy: "app.kubernetes.io/managed-by",
  version: "app.kubernetes.io/version",
  region: "hybridp2p.io/region",
  zone: "hybridp2p.io/zone",
} as const;
export const PART_OF = "hybrid-p2p";
export const MANAGED_BY = "hybrid-operator";
/** Pods of the operator carry this app.kubernetes.io/name; the managed etcd admits them. */
export const OPERATOR_NAME = "hybrid-operator";
/** app.kubernetes.io/name of the chart's world-event orchestrator pods (workloads/orchestrator). */
export const ORCHESTRATOR_NAME = "hybrid-orchestrator";
/** Selects every object the operator manages (its informers watch only these). */
export const MANAGED_SELECTOR = `${LABEL.managedBy}=${MANAGED_BY}`;
/** Pod-template annotation carrying a hash of the config, so config changes roll the pods. */
export const CONFIG_HASH_ANNOTATION = "hybridp2p.io/config-hash";

/** How the workload image starts each workload: `node workloads/main.ts <subcommand>`. */
export const WORKLOAD_COMMAND = ["node", "workloads/main.ts"];

/** The four stateless Region components: their key in RegionSpec, subcommand and port name.
 * Their default ports are the API's defaults (operator/api/region.ts). */
/* `portEnv` is the variable each workload reads its listening port from (workloads/<name>/config.ts);
 * `auth` marks those that sign or verify tokens and so mount the region's keyset Secret. */
export const COMPONENTS = [
  {
    key: "gateway",
    component: "gateway",
    subcommand: "gateway",
    portName: "game",
    portEnv: "HYBRIDP2P_GATEWAY_PORT",
    auth: true,
  },
  {
    key: "coordinator",
    component: "coordinator",
    subcommand: "coordinator",
    portName: "signal",
    portEnv: "HYBRIDP2P_COORDINATOR_PORT",
    auth: true,
  },
  {
    key: "loginServer",
    component: "login-server",
    subcommand: "login-server",
    portName: "login",
    portEnv: "HYBRIDP2P_LOGIN_PORT",
    auth: true,
  },
  {
    key: "charServer",
    component: "char-server",
    subcommand: "char-server",
    portName: "char",
    portEnv: "HYBRIDP2P_CHAR_PORT",
    auth: true,
  },
] as const;

/** The token keyset (workloads/auth): a Secret `<region>-auth-keyset` with key `keyset.json`,
 * made and rotated with `node workloads/main.ts keyset ...`. Mounted optional: without it the
 * token-handling workloads fail their start-up check naming the file, and recover once it exists. */
export const AUTH_KEYSET_SECRET_SUFFIX = "-auth-keyset";
export const AUTH_KEYSET_DIR = "/etc/hybridp2p/auth";
export type ComponentKey = (typeof COMPONENTS)[number]["key"];
export const MAP_SERVER_COMPONENT = "map-server";

/** Managed data stores: port, default image, and the UID their images run as. */
export const STORES = {
  etcd: { port: 2379, portName: "client", image: "quay.io/coreos/etcd:v3.6.6", uid: 65532 },
  nats: { port: 4222, portName: "client", image: "docker.io/library/nats:2.12.1-alpine", uid: 65532 },
  postgres: { port: 5432, portName: "postgres", image: "docker.io/library/postgres:17.6-alpine", uid: 70 },
  dragonfly: { port: 6379, portName: "redis", image: DEFAULT_DRAGONFLY_IMAGE, uid: 999 },
} as const;
export type StoreName = keyof typeof STORES;

/** Which components use each store (what their configs read): a store's NetworkPolicy admits
 * exactly these, plus the operator for etcd (it publishes the flags there). */
export const STORE_CLIENTS: Record<StoreName, readonly string[]> = {
  etcd: ["gateway", "coordinator", MAP_SERVER_COMPONENT],
  nats: ["gateway", "coordinator", MAP_SERVER_COMPONENT],
  postgres: ["login-server", "char-server", MAP_SERVER_COMPONENT],
  dragonfly: ["gateway", "coordinator", "login-server", "char-server", MAP_SERVER_COMPONENT],
};
export const STORE_NAMES = Object.keys(STORES) as StoreName[];
/** Database and user of the managed PostgreSQL. */
export const POSTGRES_DB = "hybridp2p";
export const POSTGRES_USER = "hybridp2p";

export const DEFAULT_STORAGE = "1Gi";
/** Runs as this UID/GID unless an image needs its own (STORES[].uid). */
export const WORKLOAD_UID = 65532;

export const DEFAULT_RESOURCES = {
  component: { requests: { cpu: "100m", memory: "128Mi" }, limits: { cpu: "1", memory: "512Mi" } },
  mapServer: { requests: { cpu: "250m", memory: "256Mi" }, limits: { memory: "1Gi" } },
  store: { requests: { cpu: "100m", memory: "256Mi" }, limits: { cpu: "1", memory: "1Gi" } },
};

/** Label on every generated Secret, valued with what it holds; the operator lists only these. */
export const GENERATED_LABEL = "hybridp2p.io/generated";
/** Where workloads find the client-facing serving certificate (workloads read HYBRIDP2P_SERVING_TLS_DIR). */
export const SERVING_TLS_DIR = "/etc/hybridp2p/tls/serving";
export const SERVING_TLS_ENV = "HYBRIDP2P_SERVING_TLS_DIR";
/** The etcd client-certificate role of the operator itself and of etcd's root user. */
export const ETCD_OPERATOR_ROLE = "operator";
export const ETCD_ROOT_ROLE = "root";
