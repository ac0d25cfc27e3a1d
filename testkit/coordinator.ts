// Test and benchmark helpers: coordinator replicas on a real NATS with a static policy, tokens
// from a throwaway keyset, and mesh clients at given positions.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { NatsConnection } from "@nats-io/transport-node";
import type { ZoneFlags } from "../platform/flags/layout.ts";
import { connectNats, requireStoreAccess } from "../platform/stores/access.ts";
import { GatewayAuth } from "../workloads/auth/gateway.ts";
import { Keyset, type KeysetDocument, newKeysetDocument, staticKeys } from "../workloads/auth/keyset.ts";
import { MeshClient, type MeshClientOptions } from "../workloads/client/mesh.ts";
import { devToken } from "../workloads/client/token.ts";
import { Coordinator, type CoordinatorOptions } from "../workloads/coordinator/coordinator.ts";
import { locateOverNats } from "../workloads/coordinator/locate.ts";
import { type MeshPolicy, policyFromFlags } from "../workloads/coordinator/mesh.ts";
import { freePort, type Proc, startProcess, waitUntil } from "./processes.ts";
import { testServingTls } from "./tls.ts";

export const TEST_THRESHOLDS: ZoneFlags["thresholds"] = {
  latencyMs: { warn: 100, critical: 200, max: 300 },
  lossPercent: { warn: 1, critical: 2, max: 5 },
  jitterMs: { warn: 20, critical: 50 },
  coordinatorTimeoutMs: 1500,
  minPeers: 2,
};

/** A zone document with P2P on for every service (tests publish it or derive policies from it). */
export function testZoneFlags(o: {
  namespace: string;
  zone: string;
  region: string;
  maps: string[];
  maxPeers?: number;
  maxLinks?: number;
  coordinatorTimeoutMs?: number;
  recovery?: Partial<ZoneFlags["recovery"]>;
  thresholds?: Partial<ZoneFlags["thresholds"]>;
  enabled?: boolean;
}): ZoneFlags {
  const on = { enabled: true, fallback: false };
  return {
    v: 1,
    namespace: o.namespace,
    zone: o.zone,
    region: o.region,
    policy: "coordinator-test",
    enabled: o.enabled ?? true,
    fallback: false,
    services: {
      "map-server": on,
      gateway: on,
      coordinator: on,
      "char-server": { enabled: false, fallback: false },
      "login-server": { enabled: false, fallback: false },
    },
    maps: o.maps.map((name) => ({ name, type: "Field", p2p: true })),
    transports: ["webrtc-datachannel", "websocket-relay"],
    rolloutPercent: 100,
    mesh: { maxPeers: o.maxPeers ?? 30, maxLinks: o.maxLinks ?? 8, peerTTLSeconds: 30, refreshSeconds: 10 },
    thresholds: { ...TEST_THRESHOLDS, coordinatorTimeoutMs: o.coordinatorTimeoutMs ?? 1500, ...o.thresholds },
    recovery: { mode: "Auto", initialSeconds: 1, maxSeconds: 30, clearToken: "", ...o.recovery },
  };
}

export interface TestKeys {
  keyset: KeysetDocument;
  auth: GatewayAuth;
  token(characterId: string, map: string): Promise<string>;
}

export async function testKeys(keyset?: KeysetDocument): Promise<TestKeys> {
  const doc = keyset ?? (await newKeysetDocument("k1"));
  const auth = new GatewayAuth({ keys: staticKeys(await Keyset.parse(JSON.stringify(doc))) });
  return {
    keyset: doc,
    auth,
    token: (characterId, map) => devToken({ keyset: doc, characterId, map }),
  };
}

export interface TestCoordinator {
  coordinator: Coordinator;
  url: string;
  nc: NatsConnection;
  stop(): Promise<void>;
}

/** One replica with a static map directory and one policy for every zone it knows. */
export async function startTestCoordinator(o: {
  natsUrl: string;
  region: string;
  replica: string;
  keys: TestKeys;
  zones: Record<string, string[]>;
  policy?: Partial<MeshPolicy>;
  /** Ask the region's gateways where each joining session plays, as the workload does. */
  locateViaGateways?: boolean;
  options?: Partial<CoordinatorOptions>;
}): Promise<TestCoordinator> {
  const nc = await connectNats(requireStoreAccess("nats", o.natsUrl), { name: o.replica });
  const byMap = new Map<string, string>();
  for (const [zone, maps] of Object.entries(o.zones)) for (const m of maps) byMap.set(m, zone);
  const policies = new Map(
    Object.entries(o.zones).map(([zone, maps]) => [
      zone,
      policyFromFlags(testZoneFlags({ namespace: "test", zone, region: o.region, maps }), o.policy),
    ]),
  );
  const coordinator = new Coordinator({
    nc,
    region: o.region,
    replica: o.replica,
    verify: (t) => o.keys.auth.verify(t),
    zoneOf: (m) => byMap.get(m),
    policy: (zone) => policies.get(zone),
    locate: o.locateViaGateways ? locateOverNats(nc, o.region) : undefined,
    // wss from the suite's test CA, as a Region serves by default (options.tls: undefined for ws).
    tls: testServingTls(),
    ...o.options,
  });
  const port = await coordinator.listen(0);
  return {
    coordinator,
    url: `${coordinator.tls ? "wss" : "ws"}://127.0.0.1:${port}`,
    nc,
    async stop() {
      await coordinator.close();
      await nc.drain().catch(() => undefined);
    },
  };
}

/** A mesh client standing at (x, y) for character `id` on `map` (its session is `s-<id>`). */
export async function meshClient(
  keys: TestKeys,
  urls: string[],
  id: string,
  map: string,
  x: number,
  y: number,
  extra: Partial<MeshClientOptions> = {},
): Promise<MeshClient> {
  return new MeshClient({
    urls,
    token: await keys.token(id, map),
    session: `s-${id}`,
    entity: Number.parseInt(id.replace(/\D/g, ""), 10) || 1,
    position: () => ({ x, y }),
    ...extra,
  });
}

export interface CoordinatorProcess {
  url: string;
  proc?: Proc;
  /** Starts it (again, on the same port) and waits until it is ready. */
  start(): Promise<void>;
  /** SIGKILL: no goodbye to anyone, as a crashed pod. */
  kill(): void;
  stop(): Promise<void>;
}

/** The coordinator workload as its own process (`workloads/main.ts coordinator`) on the flag plane. */
export async function coordinatorProcess(o: {
  dir: string;
  natsUrl: string;
  etcdEndpoints: string;
  prefix: string;
  region: string;
  namespace: string;
  keyset: TestKeys["keyset"];
  pod?: string;
  /** More environment (settings under test). */
  env?: Record<string, string>;
}): Promise<CoordinatorProcess> {
  const keysetFile = join(o.dir, "keyset.json");
  writeFileSync(keysetFile, JSON.stringify(o.keyset));
  let [port, health, metrics] = [await freePort(), await freePort(), await freePort()];
  const pod = o.pod ?? "coord-0";
  let started = false;
  const launch = async () => {
    const p = startProcess(
      pod,
      process.execPath,
      ["workloads/main.ts", "coordinator"],
      join(o.dir, `${pod}.log`),
      {
        env: {
          ...process.env,
          HYBRIDP2P_NATS_URL: o.natsUrl,
          HYBRIDP2P_ETCD_ENDPOINTS: o.etcdEndpoints,
          HYBRIDP2P_FLAG_PREFIX: o.prefix,
          HYBRIDP2P_REGION: o.region,
          POD_NAMESPACE: o.namespace,
          POD_NAME: pod,
          HYBRIDP2P_AUTH_KEYSET_FILE: keysetFile,
          HYBRIDP2P_COORDINATOR_PORT: String(port),
          HYBRIDP2P_LISTEN_HOST: "127.0.0.1",
          HYBRIDP2P_HEALTH_PORT: String(health),
          HYBRIDP2P_METRICS_PORT: String(metrics),
          HYBRIDP2P_LOG_LEVEL: "warn",
          HYBRIDP2P_SERVING_TLS_DIR: testServingTls().dir,
          ...o.env,
        },
      },
    );
    cp.proc = p;
    await waitUntil(p, "readiness", async () => (await fetch(`http://127.0.0.1:${health}/readyz`)).ok);
  };
  const cp: CoordinatorProcess = {
    url: `wss://127.0.0.1:${port}`,
    async start() {
      for (let attempt = 1; ; attempt++) {
        try {
          await launch();
          started = true;
          return;
        } catch (err) {
          // A port found free can be taken before the process binds it. On a first start, take
          // others; a restart keeps its port, where its clients reconnect.
          if (started || attempt >= 3 || !/EADDRINUSE/.test(String(err))) throw err;
          [port, health, metrics] = [await freePort(), await freePort(), await freePort()];
          cp.url = `wss://127.0.0.1:${port}`;
        }
      }
    },
    kill() {
      cp.proc?.child.kill("SIGKILL");
    },
    async stop() {
      await cp.proc?.stop();
    },
  };
  return cp;
}
