// The coordinator with real werift peers over loopback and replicas sharing state over the
// real NATS of the integration environment.
import { randomBytes } from "node:crypto";
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import { WebSocket } from "ws";
import { sleep } from "../../platform/time.ts";
import {
  meshClient,
  startTestCoordinator,
  TEST_THRESHOLDS,
  type TestCoordinator,
  type TestKeys,
  testKeys,
  testZoneFlags,
} from "../../testkit/coordinator.ts";
import { eventually } from "../../testkit/flags.ts";
import type { MeshClient } from "../client/mesh.ts";
import { policyFromFlags } from "./mesh.ts";
import { decodeCoord, encodeCoord, type FromCoordinator, type Quality } from "./messages.ts";
import { type LoopbackStun, startLoopbackStun } from "./stun.ts";

const env = inject("localEnv");
const ZONES = { z1: ["prt_fild01", "prt_fild02"], z2: ["pay_fild01"] };

describe("coordinator", () => {
  let keys: TestKeys;
  let coords: TestCoordinator[] = [];
  let clients: MeshClient[] = [];
  let region: string;

  let stun: LoopbackStun;

  beforeAll(async () => {
    keys = await testKeys();
    stun = await startLoopbackStun();
  });

  afterEach(async () => {
    for (const c of clients) c.stop();
    clients = [];
    await Promise.allSettled(coords.map((c) => c.stop()));
    coords = [];
  });

  afterAll(async () => {
    for (const c of clients) c.stop();
    await stun?.close();
  });

  // One process hosts every werift peer here: its event loop lags by up to seconds while tens
  // of DTLS handshakes run, which probes read as round trip. Quality thresholds are the
  // fallback tests' business; here they are out of the way.
  const relaxed = {
    ...TEST_THRESHOLDS,
    latencyMs: { warn: 60_000, critical: 60_000, max: 60_000 },
    jitterMs: { warn: 60_000, critical: 60_000 },
    coordinatorTimeoutMs: 5000,
  };

  async function replica(name: string, maxPeers = 10, maxLinks = maxPeers - 1): Promise<TestCoordinator> {
    const c = await startTestCoordinator({
      natsUrl: env.natsUrl!,
      region,
      replica: name,
      keys,
      zones: ZONES,
      policy: { maxPeers, maxLinks, thresholds: relaxed, warmupMs: 600_000 },
    });
    coords.push(c);
    return c;
  }

  async function join(
    urls: string[],
    id: string,
    map: string,
    x: number,
    y: number,
    extra: Parameters<typeof meshClient>[6] = {},
  ): Promise<MeshClient> {
    const c = await meshClient(keys, urls, id, map, x, y, { linkTimeoutMs: 60_000, ice: stun.ice, ...extra });
    clients.push(c);
    c.start();
    return c;
  }

  const fresh = () => {
    region = `r${randomBytes(4).toString("hex")}`;
  };

  it("forms a 30-peer zone mesh: meshes of at most maxPeers, every data channel open", async () => {
    fresh();
    const a = await replica("coord-a", 10);
    const ps: MeshClient[] = [];
    for (let i = 0; i < 30; i++)
      ps.push(await join([a.url], `p${i}`, "prt_fild01", 10 + (i % 20), 10 + (i % 7)));
    await eventually(
      "every peer with 9 open links",
      () => ps.every((p) => p.mates.length === 9 && p.connectedPeers.length === 9),
      120_000,
    ).catch((err) => {
      const stuck = ps.flatMap((p) =>
        p
          .linkStates()
          .filter((l) => !l.open)
          .map((l) => ({ from: p.peerId, ...l })),
      );
      throw new Error(`${err.message}: ${JSON.stringify(stuck.slice(0, 20))}`);
    });
    // Three meshes of ten: mates are mutual, and every mesh is complete.
    const byId = new Map(ps.map((p) => [p.peerId, p]));
    const meshes = new Set<string>();
    for (const p of ps) {
      for (const m of p.mates) expect(byId.get(m)!.mates).toContain(p.peerId);
      meshes.add([p.peerId, ...p.mates].sort().join(","));
      expect(p.status).toBe("p2p");
      expect(p.relayedPeers).toEqual([]);
    }
    expect(meshes.size).toBe(3);
    // A frame sent on the mesh reaches every mate directly.
    const heard = new Set<string>();
    for (const p of ps) p.onPeerFrame = (from) => from === ps[0]!.peerId && heard.add(p.peerId);
    await eventually("the broadcast heard by all mates", () => {
      ps[0]!.broadcast(new Uint8Array([1, 2, 3]));
      return ps[0]!.mates.every((m) => heard.has(m));
    });
    // Each mesh got a host from among its members.
    for (const p of ps) for (const host of p.hosts.values()) expect([p.peerId, ...p.mates]).toContain(host);
    const z1 = a.coordinator.zoneStates().find((z) => z.zone === "z1")!;
    expect(z1).toMatchObject({ mode: "p2p", peers: 30, relayed: 0 });
  }, 180_000);

  it("links each peer of a big mesh to at most maxLinks mates, nearest first, and every link opens", async () => {
    fresh();
    const a = await replica("coord-a", 16, 3);
    // Four groups of four, each in its own corner of one area: each peer's three links are its
    // own group.
    const corners = [
      [2, 2],
      [40, 2],
      [2, 40],
      [40, 40],
    ] as const;
    const ps: MeshClient[] = [];
    for (let i = 0; i < 16; i++) {
      const [x, y] = corners[i % 4]!;
      ps.push(await join([a.url], `p${String(i).padStart(2, "0")}`, "prt_fild01", x, y));
    }
    await eventually(
      "every peer with 3 open links",
      () => ps.every((p) => p.mates.length === 3 && p.connectedPeers.length === 3),
      120_000,
    );
    const byId = new Map(ps.map((p) => [p.peerId, p]));
    for (const [i, p] of ps.entries()) {
      const group = ps.filter((_, j) => j !== i && j % 4 === i % 4).map((q) => q.peerId);
      expect([...p.mates].sort()).toEqual(group.sort());
      for (const m of p.mates) expect(byId.get(m)!.mates).toContain(p.peerId);
    }
    // One mesh of 16 in the Zone's status, not four.
    expect(a.coordinator.zoneReports().get("z1")?.peers).toEqual({ connected: 16, meshes: 1, relayed: 0 });
  }, 180_000);

  it("pairs peers connected to two replicas, and keeps zones apart", async () => {
    fresh();
    const a = await replica("coord-a");
    const b = await replica("coord-b");
    const ps = [
      await join([a.url, b.url], "a1", "prt_fild01", 20, 20),
      await join([b.url], "b1", "prt_fild01", 21, 20),
      await join([a.url, b.url], "a2", "prt_fild02", 22, 20),
      await join([b.url], "b2", "prt_fild01", 23, 20),
    ];
    // prt_fild02 is another map of the same zone: its peer meshes apart (another area).
    const other = await join([b.url], "c1", "pay_fild01", 20, 20);
    const same = [ps[0]!, ps[1]!, ps[3]!];
    await eventually("a1, b1 and b2 meshed across replicas", () =>
      same.every((p) => p.connectedPeers.length === 2),
    );
    expect(new Set(same.map((p) => p.replica))).toEqual(new Set(["coord-a", "coord-b"]));
    expect(ps[2]!.mates).toEqual([]);
    expect(other.mates).toEqual([]);
    expect(other.zone).toBe("z2");

    // A peer of zone z2 cannot signal a peer of z1, even knowing its id.
    const raw = new WebSocket(b.url);
    await new Promise((r) => raw.once("open", r));
    const joined = new Promise<void>((resolve) =>
      raw.on("message", (d) => decodeCoord(d as Buffer, "s2c").type === "joined" && resolve()),
    );
    raw.send(
      encodeCoord({
        type: "join",
        token: await keys.token("c2", "pay_fild01"),
        session: "s-c2",
        entity: 99,
        x: 1,
        y: 1,
      }),
    );
    await joined;
    const refusedBefore = b.coordinator.stats.signalsRefused;
    raw.send(encodeCoord({ type: "offer", peer: "b1", n: 0, sdp: "v=0" }));
    await eventually("the offer refused", () => b.coordinator.stats.signalsRefused > refusedBefore);
    raw.close();

    // One replica goes away: its peers reconnect to the other and the mesh forms again.
    coords = coords.filter((c) => c !== a);
    await a.stop();
    await eventually("a1 meshed again through coord-b", () =>
      same.every((p) => p.replica === "coord-b" && p.status === "p2p" && p.connectedPeers.length === 2),
    );
  }, 120_000);

  it("relays a pair whose direct connection cannot be made, without pulling the zone into fallback", async () => {
    fresh();
    const a = await replica("coord-a");
    // q1 and q2 cannot reach each other directly (every candidate pair filtered out on both
    // sides), as behind symmetric NATs.
    const blocked = { ...stun.ice, iceFilterCandidatePair: () => false };
    const q = [
      await join([a.url], "q1", "prt_fild01", 30, 30, {
        linkTimeoutMs: 5000,
        ice: (peer) => (peer === "q2" ? blocked : stun.ice),
      }),
      await join([a.url], "q2", "prt_fild01", 31, 30, {
        linkTimeoutMs: 5000,
        ice: (peer) => (peer === "q1" ? blocked : stun.ice),
      }),
      await join([a.url], "q3", "prt_fild01", 32, 30, { linkTimeoutMs: 5000 }),
    ];
    await eventually("q1-q3 and q2-q3 direct, q1-q2 relayed", () => {
      const [q1, q2, q3] = q as [MeshClient, MeshClient, MeshClient];
      return (
        q3.connectedPeers.length === 2 &&
        q1.relayedPeers.includes("q2") &&
        q2.relayedPeers.includes("q1") &&
        q1.connectedPeers.join() === "q3" &&
        q2.connectedPeers.join() === "q3"
      );
    });
    await eventually("the zone counts two relayed peers", () => {
      const z = a.coordinator.zoneStates().find((s) => s.zone === "z1");
      return z?.relayed === 2 && z.mode === "p2p";
    });
    for (const c of q) expect(c.status).toBe("p2p");
  }, 120_000);
  /** A client speaking the protocol by hand: no werift, it reports whatever quality it is told to. */
  async function rawPeer(url: string, id: string, map: string) {
    const ws = new WebSocket(url);
    const got: FromCoordinator[] = [];
    ws.on("message", (d) => got.push(decodeCoord(d as Buffer, "s2c")));
    await new Promise((r) => ws.once("open", r));
    ws.send(
      encodeCoord({
        type: "join",
        token: await keys.token(id, map),
        session: `s-${id}`,
        entity: 1,
        x: 5,
        y: 5,
      }),
    );
    await eventually(`${id} joined`, () => got.some((m) => m.type === "joined"));
    let q: Quality = { rttMs: 20, lossPercent: 0, jitterMs: 1, kbps: 2000, open: 1 };
    const timer = setInterval(
      () => ws.send(encodeCoord({ type: "heartbeat", t: Date.now(), x: 5, y: 5, q })),
      50,
    );
    return {
      got,
      setQuality: (next: Partial<Quality>) => {
        q = { ...q, ...next };
      },
      silence: () => clearInterval(timer),
      close: () => {
        clearInterval(timer);
        ws.close();
      },
      last: <K extends FromCoordinator["type"]>(type: K) =>
        got.filter((m): m is Extract<FromCoordinator, { type: K }> => m.type === type).at(-1),
    };
  }

  it("puts a zone past the latency maximum in fallback and brings it back with Auto recovery", async () => {
    fresh();
    const modes: string[] = [];
    const c = await startTestCoordinator({
      natsUrl: env.natsUrl!,
      region,
      replica: "coord-q",
      keys,
      zones: ZONES,
      policy: {
        sustainMs: 300,
        recovery: { mode: "Auto", initialSeconds: 1, maxSeconds: 30, clearToken: "" },
      },
      options: { onZoneMode: (zone, mode) => modes.push(`${zone}:${mode}`) },
    });
    coords.push(c);
    const a = await rawPeer(c.url, "qa", "prt_fild01");
    const b = await rawPeer(c.url, "qb", "prt_fild01");
    const other = await rawPeer(c.url, "qc", "pay_fild01");
    await eventually("a and b are mates", () => a.last("peerJoined")?.peer === "qb");
    // Both report round trips past the 300 ms maximum.
    a.setQuality({ rttMs: 450 });
    b.setQuality({ rttMs: 500 });
    // Told on two connections: wait for both.
    await eventually(
      "zone z1 in fallback",
      () => a.last("zoneMode")?.mode === "fallback" && b.last("peerLeft") !== undefined,
    );
    expect(a.last("zoneMode")!.reason).toMatch(/latency/);
    expect(b.last("peerLeft")?.peer).toBe("qa");
    expect(c.coordinator.zoneStates().find((z) => z.zone === "z1")?.mode).toBe("fallback");
    // Only that zone.
    expect(other.last("zoneMode")).toBeUndefined();
    expect(modes).toEqual(["z1:fallback"]);
    // Quality recovers; after the backoff the zone is P2P again and the mesh is handed out anew.
    a.setQuality({ rttMs: 20 });
    b.setQuality({ rttMs: 25 });
    await eventually("zone z1 back to p2p", () => a.last("zoneMode")?.mode === "p2p", 20_000);
    await eventually(
      "a and b mates again",
      () => a.last("peerJoined")?.peer === "qb" && a.got.at(-1)?.type !== "peerLeft",
    );
    expect(modes).toEqual(["z1:fallback", "z1:p2p"]);
    for (const p of [a, b, other]) p.close();
  }, 60_000);

  it("keeps a zone in fallback under Manual recovery until the clear token changes", async () => {
    fresh();
    let clearToken = "";
    const base = policyFromFlags(
      testZoneFlags({ namespace: "test", zone: "z1", region, maps: ZONES.z1, recovery: { mode: "Manual" } }),
      { sustainMs: 300 },
    );
    const c = await startTestCoordinator({
      natsUrl: env.natsUrl!,
      region,
      replica: "coord-m",
      keys,
      zones: ZONES,
      options: { policy: () => ({ ...base, recovery: { ...base.recovery, clearToken } }) },
    });
    coords.push(c);
    const a = await rawPeer(c.url, "ma", "prt_fild01");
    const b = await rawPeer(c.url, "mb", "prt_fild01");
    a.setQuality({ lossPercent: 9 });
    b.setQuality({ lossPercent: 12 });
    await eventually("zone z1 in fallback", () => a.last("zoneMode")?.mode === "fallback");
    expect(a.last("zoneMode")!.reason).toMatch(/loss/);
    a.setQuality({ lossPercent: 0 });
    b.setQuality({ lossPercent: 0 });
    // Well past the Auto backoff this policy would have (1 s): still in fallback.
    await sleep(2500);
    expect(c.coordinator.zoneStates().find((z) => z.zone === "z1")).toMatchObject({ mode: "fallback" });
    expect(a.last("zoneMode")?.mode).toBe("fallback");
    // The operator clears it (hybridctl fallback clear stamps a new token).
    clearToken = "cleared-1";
    await eventually("zone z1 back to p2p", () => a.last("zoneMode")?.mode === "p2p");
    a.close();
    b.close();
  }, 60_000);

  it("drops a peer that stops heartbeating: its mates fall back to the relay for it", async () => {
    fresh();
    const c = await startTestCoordinator({
      natsUrl: env.natsUrl!,
      region,
      replica: "coord-h",
      keys,
      zones: ZONES,
      policy: { thresholds: { ...TEST_THRESHOLDS, coordinatorTimeoutMs: 500 } },
    });
    coords.push(c);
    const a = await rawPeer(c.url, "ha", "prt_fild01");
    const b = await rawPeer(c.url, "hb", "prt_fild01");
    await eventually("a and b are mates", () => a.last("peerJoined")?.peer === "hb");
    b.silence(); // hung, not disconnected: its socket stays open
    await eventually("a told that b left", () => a.last("peerLeft")?.peer === "hb");
    expect(c.coordinator.zoneStates().find((z) => z.zone === "z1")).toMatchObject({ peers: 1, mode: "p2p" });
    a.close();
    b.close();
  }, 30_000);
});
