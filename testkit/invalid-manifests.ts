// Manifests the apiserver must reject, each with (a substring of) the message it prints.
// crds.int.test.ts applies every entry with a server-side dry run; the unit tests check that the
// table covers every CEL rule of the CRDs. Expected messages are kube-apiserver's own wording.

import { API_VERSION, P2P_POLICY, REGION, WORLD_EVENT, ZONE } from "../operator/api/constants.ts";

export interface InvalidManifest {
  /** What is wrong, as a test title. */
  name: string;
  /** The object to apply (no namespace: the test sets one). */
  manifest: Record<string, unknown>;
  /** Substring of the apiserver's error message. */
  expectedMessage: string;
  /** For transition rules: created first, then `manifest` is applied as an update of it. */
  existing?: Record<string, unknown>;
}

type Obj = Record<string, unknown>;

const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

/** Deep merge; arrays and scalars in `patch` replace, `undefined` deletes. */
function merge(base: Obj, patch: Obj): Obj {
  const out: Obj = structuredClone(base);
  for (const [key, value] of Object.entries(patch)) {
    if (value === undefined) delete out[key];
    else if (isObj(value) && isObj(out[key])) out[key] = merge(out[key] as Obj, value);
    else out[key] = structuredClone(value);
  }
  return out;
}

// Minimal valid objects; each case breaks one thing.
const baseRegion: Obj = { apiVersion: API_VERSION, kind: REGION.kind, metadata: { name: "bad" }, spec: {} };
const baseZone: Obj = {
  apiVersion: API_VERSION,
  kind: ZONE.kind,
  metadata: { name: "bad" },
  spec: { regionRef: { name: "demo" }, maps: [{ name: "prt_fild08", type: "Field" }] },
};
const basePolicy: Obj = {
  apiVersion: API_VERSION,
  kind: P2P_POLICY.kind,
  metadata: { name: "bad" },
  spec: { zoneSelector: { matchLabels: { "hybridp2p.io/zone-type": "field" } } },
};

const baseWorldEvent: Obj = {
  apiVersion: API_VERSION,
  kind: WORLD_EVENT.kind,
  metadata: { name: "bad" },
  spec: {
    type: "Boss",
    boss: { mob: "baphomet" },
    targets: { regionSelector: {}, maps: ["prt_fild08"] },
  },
};

const region = (spec: Obj): Obj => merge(baseRegion, { spec });
const zone = (spec: Obj): Obj => merge(baseZone, { spec });
const policy = (spec: Obj): Obj => merge(basePolicy, { spec });
const worldEvent = (spec: Obj): Obj => merge(baseWorldEvent, { spec });
const map = (name: string, type: string, extra: Obj = {}) => ({ name, type, ...extra });

export const invalidManifests: InvalidManifest[] = [
  // ---- Region ----
  {
    name: "Region without spec",
    manifest: merge(baseRegion, { spec: undefined }),
    expectedMessage: "spec: Required value",
  },
  {
    name: "Region gateway replicas above 100",
    manifest: region({ gateway: { replicas: 101 } }),
    expectedMessage: "spec.gateway.replicas in body should be less than or equal to 100",
  },
  {
    name: "Region name too long for its children's names",
    manifest: merge(baseRegion, { metadata: { name: "r".repeat(43) } }),
    expectedMessage: "a Region's name may have at most 42 characters",
  },
  {
    name: "Region resource request negative",
    manifest: region({ gateway: { resources: { requests: { memory: "-1Gi" } } } }),
    expectedMessage: "spec.gateway.resources.requests.memory in body should match",
  },
  {
    name: "Region resource request above its limit",
    manifest: region({ gateway: { resources: { requests: { cpu: "2" }, limits: { cpu: "1500m" } } } }),
    expectedMessage:
      "requests of cpu, memory and ephemeral-storage must be less than or equal to their limits",
  },
  {
    name: "Region coordinator replicas negative",
    manifest: region({ coordinator: { replicas: -1 } }),
    expectedMessage: "spec.coordinator.replicas in body should be greater than or equal to 0",
  },
  {
    name: "Region replicas of the wrong type",
    manifest: region({ loginServer: { replicas: "two" } }),
    expectedMessage: 'spec.loginServer.replicas in body must be of type integer: "string"',
  },
  {
    name: "Region service type not an enum value",
    manifest: region({ gateway: { service: { type: "Ingress" } } }),
    expectedMessage:
      'Unsupported value: "Ingress": supported values: "ClusterIP", "NodePort", "LoadBalancer"',
  },
  {
    name: "Region service port above 65535",
    manifest: region({ charServer: { service: { port: 70000 } } }),
    expectedMessage: "spec.charServer.service.port in body should be less than or equal to 65535",
  },
  {
    name: "Region service port zero",
    manifest: region({ loginServer: { service: { port: 0 } } }),
    expectedMessage: "spec.loginServer.service.port in body should be greater than or equal to 1",
  },
  {
    name: "Region nodePort on a ClusterIP service",
    manifest: region({ gateway: { service: { type: "ClusterIP", nodePort: 30700 } } }),
    expectedMessage: "nodePort requires service type NodePort or LoadBalancer",
  },
  {
    name: "Region resource quantity malformed",
    manifest: region({ gateway: { resources: { requests: { cpu: "1 core" } } } }),
    expectedMessage: "spec.gateway.resources.requests.cpu in body should match",
  },
  {
    name: "Region data store mode not an enum value",
    manifest: region({ dataStores: { etcd: { mode: "Embedded" } } }),
    expectedMessage: 'Unsupported value: "Embedded": supported values: "Managed", "External"',
  },
  {
    name: "Region External data store without external",
    manifest: region({ dataStores: { nats: { mode: "External" } } }),
    expectedMessage: "external is required when mode is External",
  },
  {
    name: "Region External data store with managed",
    manifest: region({
      dataStores: {
        postgres: { mode: "External", managed: { storage: "1Gi" }, external: { endpoints: ["pg:5432"] } },
      },
    }),
    expectedMessage: "managed must not be set when mode is External",
  },
  {
    name: "Region Managed data store with external",
    manifest: region({ dataStores: { dragonfly: { external: { endpoints: ["redis:6379"] } } } }),
    expectedMessage: "external must not be set when mode is Managed",
  },
  {
    name: "Region TLS Disabled with a Secret",
    manifest: region({ tls: { mode: "Disabled", secretName: "my-cert" } }),
    expectedMessage: "secretName must not be set when mode is Disabled",
  },
  {
    name: "Region external data store without endpoints",
    manifest: region({
      dataStores: { etcd: { mode: "External", external: { secretRef: { name: "etcd" } } } },
    }),
    expectedMessage: "spec.dataStores.etcd.external.endpoints: Required value",
  },
  {
    name: "Region external data store with no endpoints",
    manifest: region({ dataStores: { etcd: { mode: "External", external: { endpoints: [] } } } }),
    expectedMessage: "spec.dataStores.etcd.external.endpoints in body should have at least 1 items",
  },
  {
    name: "Region secretRef without name",
    manifest: region({
      dataStores: {
        postgres: { mode: "External", external: { endpoints: ["pg:5432"], secretRef: { key: "pw" } } },
      },
    }),
    expectedMessage: "spec.dataStores.postgres.external.secretRef.name: Required value",
  },
  {
    name: "Region secretRef name not a DNS name",
    manifest: region({
      dataStores: {
        postgres: { mode: "External", external: { endpoints: ["pg:5432"], secretRef: { name: "Pg_Creds" } } },
      },
    }),
    expectedMessage: "spec.dataStores.postgres.external.secretRef.name in body should match",
  },
  {
    name: "Region managed storage not a quantity",
    manifest: region({ dataStores: { nats: { managed: { storage: "lots" } } } }),
    expectedMessage: "spec.dataStores.nats.managed.storage in body should match",
  },
  {
    name: "Region empty workload image",
    manifest: region({ images: { workload: "" } }),
    expectedMessage: "spec.images.workload in body should be at least 1 chars long",
  },

  {
    name: "Region with RO on NodePort Services without node ports",
    manifest: region({ ro: { enabled: true, serviceType: "NodePort", login: { nodePort: 30690 } } }),
    expectedMessage: "login, char and map need a nodePort when serviceType is NodePort",
  },
  {
    name: "Region with an RO node port on ClusterIP Services",
    manifest: region({ ro: { serviceType: "ClusterIP", map: { nodePort: 30512 } } }),
    expectedMessage: "nodePort requires serviceType NodePort or LoadBalancer",
  },
  {
    name: "Region with a map cache naming no source",
    manifest: region({ mapCache: {} }),
    expectedMessage: "exactly one of configMap and persistentVolumeClaim",
  },
  // ---- Zone ----
  {
    name: "Zone name too long for its children's names",
    manifest: merge(baseZone, { metadata: { name: "z".repeat(42) } }),
    expectedMessage: "a Zone's name may have at most 41 characters",
  },
  {
    name: "Zone without regionRef",
    manifest: merge(baseZone, { spec: { regionRef: undefined } }),
    expectedMessage: "spec.regionRef: Required value",
  },
  {
    name: "Zone regionRef name not a DNS label",
    manifest: zone({ regionRef: { name: "Demo!" } }),
    expectedMessage: "spec.regionRef.name in body should match",
  },
  {
    name: "Zone regionRef changed",
    existing: zone({ regionRef: { name: "demo" } }),
    manifest: zone({ regionRef: { name: "other" } }),
    expectedMessage: "regionRef is immutable",
  },
  {
    name: "Zone without maps",
    manifest: merge(baseZone, { spec: { maps: undefined } }),
    expectedMessage: "spec.maps: Required value",
  },
  {
    name: "Zone with an empty map list",
    manifest: zone({ maps: [] }),
    expectedMessage: "spec.maps in body should have at least 1 items",
  },
  {
    name: "Zone map type not an enum value",
    manifest: zone({ maps: [map("prt_fild08", "Cave")] }),
    expectedMessage:
      'Unsupported value: "Cave": supported values: "Town", "Field", "Dungeon", "Instance", "PvP"',
  },
  {
    name: "Zone map without type",
    manifest: zone({ maps: [{ name: "prt_fild08" }] }),
    expectedMessage: "spec.maps[0].type: Required value",
  },
  {
    name: "Zone map p2p Allow (towns need a policy with includeTowns)",
    manifest: zone({ maps: [map("prontera", "Town", { p2p: "Allow" })] }),
    expectedMessage: 'Unsupported value: "Allow": supported values: "Inherit", "Deny"',
  },
  {
    name: "Zone map name in upper case",
    manifest: zone({ maps: [map("Prontera", "Town")] }),
    expectedMessage: "spec.maps[0].name in body should match",
  },
  {
    name: "Zone map name longer than rAthena allows",
    manifest: zone({ maps: [map("prt_fild08abc", "Field")] }),
    expectedMessage: "spec.maps[0].name: Too long: may not be more than 11 bytes",
  },
  {
    name: "Zone with a map listed twice",
    manifest: zone({ maps: [map("prt_fild08", "Field"), map("prt_fild08", "Field")] }),
    expectedMessage: 'spec.maps[1]: Duplicate value: {"name":"prt_fild08"}',
  },
  {
    name: "Zone Instance map without '@'",
    manifest: zone({ maps: [map("tower", "Instance")] }),
    expectedMessage: "a map is of type Instance exactly when its name contains '@'",
  },
  {
    name: "Zone instance-named map not of type Instance",
    manifest: zone({ maps: [map("1@tower", "Dungeon")] }),
    expectedMessage: "a map is of type Instance exactly when its name contains '@'",
  },
  {
    name: "Zone tick rate above rAthena's 20 ms timer granularity",
    manifest: zone({ mapServer: { tickRateHz: 60 } }),
    expectedMessage: "spec.mapServer.tickRateHz in body should be less than or equal to 50",
  },
  {
    name: "Zone tick rate below mob AI's 100 ms",
    manifest: zone({ mapServer: { tickRateHz: 5 } }),
    expectedMessage: "spec.mapServer.tickRateHz in body should be greater than or equal to 10",
  },
  {
    name: "Zone with no worker threads",
    manifest: zone({ mapServer: { workerThreads: 0 } }),
    expectedMessage: "spec.mapServer.workerThreads in body should be greater than or equal to 1",
  },
  {
    name: "Zone with too many worker threads",
    manifest: zone({ mapServer: { workerThreads: 65 } }),
    expectedMessage: "spec.mapServer.workerThreads in body should be less than or equal to 64",
  },
  {
    name: "Zone maxPlayers beyond its worker threads",
    manifest: zone({ mapServer: { workerThreads: 1, maxPlayers: 2500 } }),
    expectedMessage: "maxPlayers must not exceed workerThreads * 2000 (entities per worker thread)",
  },
  {
    name: "Zone map-server replicas above 100",
    manifest: zone({ mapServer: { replicas: 1000 } }),
    expectedMessage: "spec.mapServer.replicas in body should be less than or equal to 100",
  },

  // ---- P2PPolicy ----
  {
    name: "P2PPolicy without zoneSelector",
    manifest: merge(basePolicy, { spec: { zoneSelector: undefined, enabled: true } }),
    expectedMessage: "spec.zoneSelector: Required value",
  },
  {
    name: "P2PPolicy selector operator not an enum value",
    manifest: policy({
      zoneSelector: { matchExpressions: [{ key: "tier", operator: "Equals", values: ["a"] }] },
    }),
    expectedMessage: 'Unsupported value: "Equals": supported values: "In", "NotIn", "Exists", "DoesNotExist"',
  },
  {
    name: "P2PPolicy selector matchLabels key not a label key",
    manifest: policy({ zoneSelector: { matchLabels: { "zone type": "field" } } }),
    expectedMessage: "matchLabels keys must be label keys",
  },
  {
    name: "P2PPolicy selector expression key not a label key",
    manifest: policy({ zoneSelector: { matchExpressions: [{ key: "-bad", operator: "Exists" }] } }),
    expectedMessage: "spec.zoneSelector.matchExpressions[0].key in body should match",
  },
  {
    name: "P2PPolicy selector expression value not a label value",
    manifest: policy({
      zoneSelector: { matchExpressions: [{ key: "tier", operator: "In", values: ["a b"] }] },
    }),
    expectedMessage: "spec.zoneSelector.matchExpressions[0].values[0] in body should match",
  },
  {
    name: "P2PPolicy selector In without values",
    manifest: policy({ zoneSelector: { matchExpressions: [{ key: "tier", operator: "In" }] } }),
    expectedMessage: "values must be non-empty when operator is In or NotIn",
  },
  {
    name: "P2PPolicy selector Exists with values",
    manifest: policy({
      zoneSelector: { matchExpressions: [{ key: "tier", operator: "Exists", values: ["a"] }] },
    }),
    expectedMessage: "values must be empty when operator is Exists or DoesNotExist",
  },
  {
    name: "P2PPolicy unknown service",
    manifest: policy({ services: ["chat-server"] }),
    expectedMessage:
      'Unsupported value: "chat-server": supported values: "map-server", "gateway", "coordinator", "char-server", "login-server"',
  },
  {
    name: "P2PPolicy service listed twice",
    manifest: policy({ services: ["gateway", "gateway"] }),
    expectedMessage: 'spec.services[1]: Duplicate value: "gateway"',
  },
  {
    name: "P2PPolicy unknown transport",
    manifest: policy({ transports: ["quic"] }),
    expectedMessage:
      'Unsupported value: "quic": supported values: "webrtc-datachannel", "webrtc-turn", "websocket-relay"',
  },
  {
    name: "P2PPolicy without transports",
    manifest: policy({ transports: [] }),
    expectedMessage: "spec.transports in body should have at least 1 items",
  },
  {
    name: "P2PPolicy enabled not a boolean",
    manifest: policy({ enabled: "yes" }),
    expectedMessage: 'spec.enabled in body must be of type boolean: "string"',
  },
  {
    name: "P2PPolicy rollout above 100 percent",
    manifest: policy({ rolloutPercent: 101 }),
    expectedMessage: "spec.rolloutPercent in body should be less than or equal to 100",
  },
  {
    name: "P2PPolicy mesh above 50 peers",
    manifest: policy({ mesh: { maxPeers: 51 } }),
    expectedMessage: "spec.mesh.maxPeers in body should be less than or equal to 50",
  },
  {
    name: "P2PPolicy mesh of one peer",
    manifest: policy({ mesh: { maxPeers: 1 } }),
    expectedMessage: "spec.mesh.maxPeers in body should be greater than or equal to 2",
  },
  {
    name: "P2PPolicy mesh whose peers link to nobody",
    manifest: policy({ mesh: { maxLinks: 0 } }),
    expectedMessage: "spec.mesh.maxLinks in body should be greater than or equal to 1",
  },
  {
    name: "P2PPolicy mesh refresh not shorter than peer TTL",
    manifest: policy({ mesh: { peerTTLSeconds: 10, refreshSeconds: 10 } }),
    expectedMessage:
      "refreshSeconds must be less than peerTTLSeconds, or live peers expire between refreshes",
  },
  {
    name: "P2PPolicy latency warn above critical",
    manifest: policy({ fallback: { latencyMs: { warn: 250 } } }),
    expectedMessage: "thresholds must satisfy warn <= critical <= max",
  },
  {
    name: "P2PPolicy loss critical above max",
    manifest: policy({ fallback: { lossPercent: { critical: 10 } } }),
    expectedMessage: "thresholds must satisfy warn <= critical <= max",
  },
  {
    name: "P2PPolicy loss above 100 percent",
    manifest: policy({ fallback: { lossPercent: { max: 150 } } }),
    expectedMessage: "spec.fallback.lossPercent.max in body should be less than or equal to 100",
  },
  {
    name: "P2PPolicy jitter warn above critical",
    manifest: policy({ fallback: { jitterMs: { warn: 80 } } }),
    expectedMessage: "jitter thresholds must satisfy warn <= critical",
  },
  {
    name: "P2PPolicy coordinator timeout below 100 ms",
    manifest: policy({ fallback: { coordinatorTimeoutMs: 50 } }),
    expectedMessage: "spec.fallback.coordinatorTimeoutMs in body should be greater than or equal to 100",
  },
  {
    name: "P2PPolicy minPeers above the mesh size",
    manifest: policy({ mesh: { maxPeers: 20 }, fallback: { minPeers: 30 } }),
    expectedMessage: "fallback.minPeers must be less than or equal to mesh.maxPeers",
  },
  {
    name: "P2PPolicy recovery mode not an enum value",
    manifest: policy({ recovery: { mode: "Sometimes" } }),
    expectedMessage: 'Unsupported value: "Sometimes": supported values: "Auto", "Manual"',
  },
  {
    name: "P2PPolicy Manual recovery with backoff",
    manifest: policy({ recovery: { mode: "Manual", backoff: { initialSeconds: 5 } } }),
    expectedMessage: "backoff is only allowed when mode is Auto",
  },
  {
    name: "P2PPolicy backoff initial above max",
    manifest: policy({ recovery: { backoff: { initialSeconds: 600, maxSeconds: 60 } } }),
    expectedMessage: "initialSeconds must be less than or equal to maxSeconds",
  },
  {
    name: "P2PPolicy priority above 1000",
    manifest: policy({ priority: 5000 }),
    expectedMessage: "spec.priority in body should be less than or equal to 1000",
  },

  // ---- WorldEvent ----
  {
    name: "WorldEvent type not an enum value",
    manifest: worldEvent({ type: "Earthquake" }),
    expectedMessage:
      'Unsupported value: "Earthquake": supported values: "Boss", "Invasion", "Rates", "Announcement"',
  },
  {
    name: "WorldEvent type changed",
    existing: baseWorldEvent,
    manifest: worldEvent({ type: "Invasion", boss: undefined, invasion: { mob: "wolf" } }),
    expectedMessage: "type is immutable",
  },
  {
    name: "WorldEvent Boss without boss",
    manifest: worldEvent({ boss: undefined }),
    expectedMessage: "a Boss event needs boss",
  },
  {
    name: "WorldEvent Invasion without invasion",
    manifest: worldEvent({ type: "Invasion", boss: undefined }),
    expectedMessage: "an Invasion event needs invasion",
  },
  {
    name: "WorldEvent Rates without rates",
    manifest: worldEvent({ type: "Rates", boss: undefined }),
    expectedMessage: "a Rates event needs rates",
  },
  {
    name: "WorldEvent Announcement without announcement",
    manifest: worldEvent({ type: "Announcement", boss: undefined }),
    expectedMessage: "an Announcement event needs announcement",
  },
  {
    name: "WorldEvent boss on an Invasion",
    manifest: worldEvent({ type: "Invasion", invasion: { mob: "wolf" } }),
    expectedMessage: "boss and invasion are only allowed on events of that type",
  },
  {
    name: "WorldEvent Boss without maps",
    manifest: worldEvent({ targets: { regionSelector: {}, maps: undefined } }),
    expectedMessage: "Boss and Invasion events need targets.maps",
  },
  {
    name: "WorldEvent boss x without y",
    manifest: worldEvent({ boss: { mob: "baphomet", x: 10 } }),
    expectedMessage: "boss x and y go together",
  },
  {
    name: "WorldEvent unknown mob",
    manifest: worldEvent({ boss: { mob: "dragon" } }),
    expectedMessage: 'spec.boss.mob: Unsupported value: "dragon"',
  },
  {
    name: "WorldEvent more than 5 bosses",
    manifest: worldEvent({ boss: { mob: "baphomet", count: 6 } }),
    expectedMessage: "spec.boss.count in body should be less than or equal to 5",
  },
  {
    name: "WorldEvent rates that change nothing",
    manifest: worldEvent({ type: "Rates", boss: undefined, rates: { exp: 1, drop: 1 } }),
    expectedMessage: "rates must change exp or drop",
  },
  {
    name: "WorldEvent exp rate above 100",
    manifest: worldEvent({ type: "Rates", boss: undefined, rates: { exp: 500 } }),
    expectedMessage: "spec.rates.exp in body should be less than or equal to 100",
  },
  {
    name: "WorldEvent without target regions",
    manifest: worldEvent({ targets: { regionSelector: undefined } }),
    expectedMessage: "targets need regions or a regionSelector",
  },
  {
    name: "WorldEvent start and cron",
    manifest: worldEvent({ schedule: { start: "2030-01-01T00:00:00Z", cron: "0 20 * * *" } }),
    expectedMessage: "start and cron are mutually exclusive",
  },
  {
    name: "WorldEvent cron with four fields",
    manifest: worldEvent({ schedule: { cron: "0 20 * *" } }),
    expectedMessage: "spec.schedule.cron in body should match",
  },
  {
    name: "WorldEvent duration below 10 seconds",
    manifest: worldEvent({ schedule: { durationSeconds: 5 } }),
    expectedMessage: "spec.schedule.durationSeconds in body should be greater than or equal to 10",
  },
  {
    name: "WorldEvent population trigger with cron",
    manifest: worldEvent({ schedule: { cron: "0 20 * * *" }, triggers: { population: { minPlayers: 5 } } }),
    expectedMessage: "a population trigger cannot be combined with a cron schedule",
  },
  {
    name: "WorldEvent uncancelled",
    existing: worldEvent({ cancelled: true }),
    manifest: worldEvent({ cancelled: false }),
    expectedMessage: "a cancelled event stays cancelled",
  },
  {
    name: "WorldEvent announcement too long",
    manifest: worldEvent({ announcement: { message: "x".repeat(201) } }),
    expectedMessage: "spec.announcement.message: Too long",
  },
];
