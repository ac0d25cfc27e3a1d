// A P2P region in one process on the local services, for tests and benchmarks of P2P play as
// players see it: the operator's flag plane on the kube-apiserver (a Region, a field Zone and a
// P2PPolicy of its own namespace), a gateway on the published flags (P2P client config, the
// browser client), a coordinator that locates sessions through the gateway, a stand-in map
// server in p2p mode, and the login and char servers (new characters start on the field map).
import { randomBytes } from "node:crypto";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Etcd3 } from "etcd3";
import { API_VERSION } from "../operator/api/constants.ts";
import { FlagClient } from "../platform/flags/client.ts";
import { connectFlagStore } from "../platform/flags/etcd.ts";
import type { ZoneReport } from "../platform/flags/layout.ts";
import type { KubeObject } from "../platform/kube/meta.ts";
import { connectNats } from "../platform/stores/access.ts";
import type { RunningService } from "../workloads/auth/service.ts";
import { startCharServer } from "../workloads/char-server/server.ts";
import { ensureEventStream } from "../workloads/gateway/events.ts";
import { flagDirectory, flagGate } from "../workloads/gateway/flags.ts";
import { startLoginServer } from "../workloads/login-server/server.ts";
import { freshDatabase, keysetFile, testCharConfig, testLoginConfig, uniquePrefix } from "./auth.ts";
import { startTestCoordinator, type TestCoordinator, testKeys } from "./coordinator.ts";
import { eventually, startFlagPlane } from "./flags.ts";
import { startTestGateway, type TestGateway } from "./gateway.ts";
import { createNamespace, deleteNamespace, installCrds, testClient } from "./kube.ts";
import type { LocalEnv } from "./local/services.ts";
import { StandInMapServer } from "./map-server-standin.ts";

export interface P2PRegion {
  namespace: string;
  zone: string;
  map: string;
  gw: TestGateway;
  coord: TestCoordinator;
  login: RunningService;
  char: RunningService;
  /** The gateway's flag client. */
  flags: FlagClient;
  /** The flag store, the key prefix the region's flags live under, and the report channel. */
  etcd: Etcd3;
  prefix: string;
  reports: NatsConnection;
  /** Applies the zone's P2PPolicy (as a user would) with these spec fields. */
  setPolicy(spec: Record<string, unknown>): Promise<void>;
  stop(): Promise<void>;
}

export async function startP2PRegion(env: LocalEnv, label = "p2p"): Promise<P2PRegion> {
  const namespace = `${label}-${randomBytes(3).toString("hex")}`;
  const prefix = `/${namespace}/v1/`;
  const region = namespace;
  const zone = "fields";
  const map = `${label.slice(0, 4)}_fild01`; // RO map names: 11 bytes at most
  const stops: (() => Promise<unknown>)[] = [];
  const stop = async () => {
    for (const s of stops.reverse()) await s().catch(() => undefined);
  };
  try {
    const client = await testClient(env.kubeconfig!);
    stops.push(async () => client.close());
    await installCrds(client);
    await createNamespace(client, namespace);
    stops.push(() => deleteNamespace(client, namespace));
    const apply = (plural: string, obj: KubeObject) =>
      client.request("PATCH", `/apis/${API_VERSION}/namespaces/${namespace}/${plural}/${obj.metadata.name}`, {
        query: { fieldManager: "test-user", force: true },
        body: obj,
        contentType: "application/apply-patch+yaml",
      });
    const etcd = connectFlagStore(env.etcd!);
    stops.push(async () => etcd.close());
    // The pods' reports travel over NATS (the report channel), as in a Region.
    const reports = await connectNats(env.nats!);
    stops.push(() => reports.drain());
    const plane = await startFlagPlane({
      kubeconfig: env.kubeconfig!,
      etcd,
      nats: reports,
      namespace,
      identity: label,
      prefix,
    });
    stops.push(() => plane.stop());
    await apply("regions", {
      apiVersion: API_VERSION,
      kind: "Region",
      metadata: { name: "r", namespace },
      spec: {},
    });
    await apply("zones", {
      apiVersion: API_VERSION,
      kind: "Zone",
      metadata: { name: zone, namespace, labels: { "hybridp2p.io/zone-type": "field" } },
      spec: { regionRef: { name: "r" }, maps: [{ name: map, type: "Field" }] },
    });
    const setPolicy = async (spec: Record<string, unknown>) => {
      await apply("p2ppolicies", {
        apiVersion: API_VERSION,
        kind: "P2PPolicy",
        metadata: { name: "fields-p2p", namespace },
        spec: { zoneSelector: { matchLabels: { "hybridp2p.io/zone-type": "field" } }, ...spec },
      });
    };
    await setPolicy({ enabled: true });

    const flags = new FlagClient({
      client: etcd,
      nats: reports,
      prefix,
      namespace,
      service: "gateway",
      pod: "gw-0",
    });
    await flags.start();
    stops.push(() => flags.close());
    await eventually("the zone's published flags", () => flags.p2p(zone));

    const keys = await keysetFile("k1");
    const coord = await startTestCoordinator({
      natsUrl: env.natsUrl!,
      region,
      replica: "coord-0",
      keys: await testKeys(keys.doc),
      zones: { [zone]: [map] },
      locateViaGateways: true,
    });
    stops.push(() => coord.stop());
    const shared = {
      databaseUrl: await freshDatabase(env.databaseUrl!, label),
      redisUrl: env.redisUrl!,
      redisPrefix: uniquePrefix(label),
      keysetFile: keys.path,
    };
    const login = await startLoginServer(testLoginConfig(shared));
    stops.push(() => login.close());
    const char = await startCharServer({ ...testCharConfig(shared), startPoint: { map, x: 30, y: 30 } });
    stops.push(() => char.close());

    const gw = await startTestGateway({
      natsUrl: env.natsUrl!,
      region,
      keyset: keys.doc,
      directory: flagDirectory(flags),
      options: {
        p2pGate: flagGate(flags),
        rolloutPercent: (z) => flags.zoneFlags(z)?.rolloutPercent ?? 100,
        clientConfig: {
          zoneFlags: (z) => flags.zoneFlags(z),
          epoch: () => flags.snapshot().epoch,
          coordinators: [coord.url],
        },
        web: { region: { loginUrl: login.url, charUrl: char.url, coordinators: [coord.url] } },
        limits: { maxConnections: 1000 },
      },
    });
    stops.push(() => gw.stop());
    flags.on("snapshot", () => gw.gateway.refreshModes());
    flags.on("state", () => gw.gateway.refreshModes());
    // The canary's counts in the gateway's report, as the workload reports them.
    const players = setInterval(() => {
      const zones = new Map<string, ZoneReport>();
      for (const [z, p] of gw.gateway.p2pPlayers()) zones.set(z, { players: p });
      flags.reportZones(zones);
    }, 300);
    stops.push(async () => clearInterval(players));
    const nc: NatsConnection = await connectNats(env.nats!);
    stops.push(() => nc.drain());
    await ensureEventStream(nc);
    const field = new StandInMapServer({ nc, region, zone, maps: [map], mode: "p2p" });
    field.start();
    stops.push(() => field.stop());
    return { namespace, zone, map, gw, coord, login, char, flags, etcd, prefix, reports, setPolicy, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
