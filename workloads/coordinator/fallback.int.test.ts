// Zone fallback when the coordinator dies, and Auto recovery when it comes back, end to end:
// the coordinator runs as its own process (`workloads/main.ts coordinator`, killed with
// SIGKILL), the real gateway and a stand-in map server play on real NATS, the flag plane is
// real (FlagPublisher writes the zone's document to etcd; gateway and coordinator each run a
// FlagClient), and the clients are P2PClients with werift data channels over loopback.
import { randomBytes } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Etcd3 } from "etcd3";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { FlagClient } from "../../platform/flags/client.ts";
import { connectFlagStore } from "../../platform/flags/etcd.ts";
import type { ReportTable } from "../../platform/flags/reports.ts";
import { connectNats } from "../../platform/stores/access.ts";
import { sleep } from "../../platform/time.ts";
import {
  type CoordinatorProcess,
  coordinatorProcess,
  testKeys,
  testZoneFlags,
} from "../../testkit/coordinator.ts";
import { eventually, FlagPublisher, reportsOn } from "../../testkit/flags.ts";
import { startTestGateway, type TestGateway } from "../../testkit/gateway.ts";
import { StandInMapServer } from "../../testkit/map-server-standin.ts";
import { P2PClient } from "../client/p2p.ts";
import { ensureEventStream } from "../gateway/events.ts";
import { flagDirectory, flagGate } from "../gateway/flags.ts";
import { type LoopbackStun, startLoopbackStun } from "./stun.ts";
import { CoordinatorWatch } from "./watch.ts";

const env = inject("localEnv");
const id = randomBytes(4).toString("hex");
const region = `cr${id}`;
const namespace = `cns${id}`;
const zone = `cz${id}`;
const map = "prt_fild08";
const prefix = `/coordtest${id}/v1/`;
const serverZone = `sz${id}`;

describe("coordinator fallback and recovery", () => {
  let etcd: Etcd3;
  let gwFlags: FlagClient;
  let gw: TestGateway;
  let mapNc: NatsConnection;
  let standin: StandInMapServer;
  let watch: CoordinatorWatch;
  let coord: CoordinatorProcess;
  const peers: P2PClient[] = [];
  const dir = mkdtempSync(join(tmpdir(), "coord-test-"));

  let stun: LoopbackStun;
  let reports: ReportTable;
  const report = async (pod: string) => reports.zoneReports(namespace, undefined).find((r) => r.pod === pod);

  beforeAll(async () => {
    stun = await startLoopbackStun();
    etcd = connectFlagStore(env.etcd!);
    const publisher = new FlagPublisher({ client: etcd, identity: "coordinator-test", prefix });
    await publisher.acquire();
    await publisher.publish({
      zones: [
        testZoneFlags({
          namespace,
          zone,
          region,
          maps: [map],
          coordinatorTimeoutMs: 600,
          recovery: { mode: "Auto", initialSeconds: 1, maxSeconds: 10 },
        }),
        // A server-only zone of the same region: losing the coordinator must not touch it.
        testZoneFlags({ namespace, zone: serverZone, region, maps: ["prontera"], enabled: false }),
      ],
      policies: [],
    });
    const keys = await testKeys();

    mapNc = await connectNats(env.nats!);
    await ensureEventStream(mapNc);
    standin = new StandInMapServer({ nc: mapNc, region, zone, maps: [map], mode: "p2p" });
    standin.start();

    const nc = await connectNats(env.nats!);
    reports = await reportsOn(nc, prefix, namespace);
    gwFlags = new FlagClient({ client: etcd, nats: nc, prefix, namespace, service: "gateway", pod: "gw-0" });
    await gwFlags.start();
    const f = gwFlags;
    let refresh = () => {};
    watch = new CoordinatorWatch({ nc, region, flags: f, onChange: () => refresh() });
    gw = await startTestGateway({
      natsUrl: env.natsUrl!,
      region,
      keyset: keys.keyset,
      directory: flagDirectory(f),
      options: { p2pGate: watch.gate(flagGate(f)) },
    });
    refresh = () => gw.gateway.refreshModes();
    f.on("state", refresh);
    f.on("snapshot", refresh);
    watch.start();

    coord = await coordinatorProcess({
      dir,
      natsUrl: env.natsUrl!,
      etcdEndpoints: env.etcdEndpoints!,
      prefix,
      region,
      namespace,
      keyset: keys.keyset,
    });
    await coord.start();
  });

  afterAll(async () => {
    await Promise.allSettled(peers.map((p) => p.close()));
    await coord?.stop();
    watch?.stop();
    await gw?.stop();
    await standin?.stop();
    await mapNc?.drain();
    await gwFlags?.close();
    reports?.close();
    etcd?.close();
    await stun?.close();
  });

  it("killing the coordinator puts the zone in server mode with nothing lost; Auto recovery brings P2P back", async () => {
    for (let i = 0; i < 6; i++) {
      const token = await gw.token(`c${i}`, map);
      peers.push(await P2PClient.connect({ url: gw.url, token, coordinators: [coord.url], ice: stun.ice }));
    }
    await eventually(
      "every peer in p2p mode with a full mesh",
      () => peers.every((p) => !p.serverMode && p.connectedPeers.length === peers.length - 1),
      60_000,
    );
    expect(gwFlags.current().mode).toBe("p2p");
    // The coordinator process reports the zone's peers for the Zone's status.
    const counted = await eventually(
      "the coordinator's report counts the mesh",
      async () => {
        const p = (await report("coord-0"))?.zones?.[zone]?.peers;
        return p?.connected === peers.length ? p : undefined;
      },
      20_000,
    );
    expect(counted).toEqual({ connected: 6, meshes: 1, relayed: 0 });

    // Everyone plays the whole time: walks and talks.
    const sent: string[] = [];
    const heard = new Map<P2PClient, Set<string>>(peers.map((p) => [p, new Set()]));
    for (const p of peers) p.onMessage((m) => m.type === "chatMsg" && heard.get(p)!.add(m.text));
    let playing = true;
    let round = 0;
    const play = (async () => {
      while (playing) {
        round++;
        for (const [i, p] of peers.entries()) {
          p.move(20 + ((round + i) % 30), 20 + i);
          if (round % 4 === i % 4) {
            const text = `p${i} r${round}`;
            sent.push(text);
            p.chat(text);
          }
        }
        await sleep(50);
      }
    })();
    await eventually("peer moves over the data channels", () => peers.every((p) => p.peerMoves > 0));

    // The coordinator dies: every client ends up in server mode, told so by the gateway.
    const modesBefore = peers.map((p) => p.counts.get("mode") ?? 0);
    coord.kill();
    await eventually("every peer in server mode", () =>
      peers.every((p) => p.mode === "fallback" && p.serverMode),
    );
    expect(peers.every((p) => p.connectedPeers.length === 0)).toBe(true);
    expect(gwFlags.current().mode).toBe("fallback");
    expect(gwFlags.current().reason).toMatch(/coordinator unreachable/);
    // Only the P2P zone is held, and the gateway's report says so for the Zone's status.
    expect([...gwFlags.heldZones().keys()]).toEqual([zone]);
    expect(gwFlags.zoneMode(serverZone).mode).toBe("server");
    await eventually(
      "the hold in the gateway's report",
      async () => (await report("gw-0"))?.zones?.[zone]?.fallback,
    );
    expect(Object.keys((await report("gw-0"))!.zones!)).toEqual([zone]);
    const sentAtFallback = sent.length;
    await eventually("play goes on through the gateway", () => sent.length > sentAtFallback + 10);

    // It comes back: the trigger clears, the backoff passes, the zone is P2P again by itself.
    await coord.start();
    await eventually(
      "every peer back in p2p mode with a full mesh",
      () =>
        peers.every((p) => p.mode === "p2p" && !p.serverMode && p.connectedPeers.length === peers.length - 1),
      60_000,
    );
    expect(gwFlags.current().mode).toBe("p2p");
    playing = false;
    await play;

    // Nothing server-authoritative was lost or reordered through both switches.
    await eventually("every chat line heard by everyone", () =>
      peers.every((p) => sent.every((t) => heard.get(p)!.has(t))),
    );
    for (const [i, p] of peers.entries()) {
      expect(p.seqErrors).toEqual([]);
      expect(p.counts.get("mode")).toBe(modesBefore[i]! + 2);
    }
    expect(sent.length).toBeGreaterThan(30);
  }, 180_000);
});
