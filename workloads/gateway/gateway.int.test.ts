// The gateway against real NATS (JetStream for events) and stand-in map servers that speak the
// committed bus contract (platform/bus/contract.ts). Clients are the SDK's, P2P ones meshing
// through a real coordinator with werift data channels over loopback.

import { AckPolicy, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { WebSocket, WebSocketServer } from "ws";
import { EVENT_STREAM } from "../../platform/bus/contract.ts";
import { inRollout } from "../../platform/flags/layout.ts";
import { connectNats } from "../../platform/stores/access.ts";
import { startTestMesh, type TestMesh } from "../../testkit/client.ts";
import { startTestGateway, type TestGateway } from "../../testkit/gateway.ts";
import { StandInMapServer } from "../../testkit/map-server-standin.ts";
import { GameClient } from "../client/client.ts";
import { P2PClient, type P2PClientOptions } from "../client/p2p.ts";
import { decodeCoord } from "../coordinator/messages.ts";
import { consumeEvents, ensureEventStream } from "./events.ts";
import { staticDirectory } from "./gateway.ts";

const env = inject("localEnv");

async function until(what: string, cond: () => boolean, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A WebSocket proxy in front of the coordinator that loses the first signaling message (offer or
 * answer) each client connection sends.
 */
async function lossyProxy(
  upstream: string,
): Promise<{ url: string; dropped: string[]; close(): Promise<void> }> {
  const dropped: string[] = [];
  const wss = new WebSocketServer({ port: 0, host: "127.0.0.1" });
  await new Promise((r) => wss.once("listening", r));
  wss.on("connection", (client) => {
    const up = new WebSocket(upstream);
    const early: Buffer[] = [];
    let lost = 0;
    client.on("message", (data: Buffer) => {
      const t = decodeCoord(data, "c2s").type;
      if ((t === "offer" || t === "answer") && lost++ === 0) {
        dropped.push(t);
        return;
      }
      if (up.readyState === WebSocket.OPEN) up.send(data);
      else early.push(data);
    });
    up.on("open", () => {
      for (const d of early.splice(0)) up.send(d);
    });
    up.on("message", (data: Buffer) => client.send(data));
    up.on("close", () => client.close());
    client.on("close", () => up.close());
    up.on("error", () => client.terminate());
  });
  const port = (wss.address() as { port: number }).port;
  return {
    url: `ws://127.0.0.1:${port}`,
    dropped,
    close: () => new Promise<void>((r) => wss.close(() => r())),
  };
}

describe("gateway with stand-in map servers", () => {
  let gw: TestGateway;
  let mesh: TestMesh;
  let podA: NatsConnection;
  let podB: NatsConnection;
  let fieldA: StandInMapServer;
  let fieldB: StandInMapServer;
  const clients: GameClient[] = [];
  let nextChar = 1;

  async function legacy(map = "prt_fild01"): Promise<GameClient> {
    const c = await GameClient.connect({ url: gw.url, token: await gw.token(String(nextChar++), map) });
    clients.push(c);
    return c;
  }
  async function p2p(map = "prt_fild01", extra: Partial<P2PClientOptions> = {}): Promise<P2PClient> {
    const c = await P2PClient.connect({
      url: gw.url,
      token: await gw.token(String(nextChar++), map),
      coordinators: mesh.urls,
      ice: mesh.ice,
      ...extra,
    });
    clients.push(c);
    return c;
  }

  beforeAll(async () => {
    const zones = { z1: ["prt_fild01", "prt_fild02", "prt_fild03"], z2: ["pay_fild01"] };
    gw = await startTestGateway({ natsUrl: env.natsUrl!, directory: staticDirectory(zones) });
    mesh = await startTestMesh({ natsUrl: env.natsUrl!, region: gw.region, keyset: gw.keyset, zones });
    // Two map-server "pods", each with its own NATS connection, owning different maps.
    podA = await connectNats(env.nats!);
    podB = await connectNats(env.nats!);
    await ensureEventStream(podA);
    fieldA = new StandInMapServer({
      nc: podA,
      region: gw.region,
      zone: "z1",
      maps: ["prt_fild01", "prt_fild02"],
      owner: "map-a",
    });
    fieldB = new StandInMapServer({
      nc: podB,
      region: gw.region,
      zone: "z2",
      maps: ["pay_fild01"],
      owner: "map-b",
    });
    fieldA.start();
    fieldB.start();
  });

  afterAll(async () => {
    await Promise.allSettled(clients.map((c) => c.close()));
    await gw?.stop();
    await mesh?.stop();
    await fieldA?.stop();
    await fieldB?.stop();
    await podA?.drain();
    await podB?.drain();
  });

  it("mixed zone: legacy and P2P clients see each other move, chat and fight", async () => {
    fieldA.setMode("prt_fild01", "server");
    const l = await legacy();
    const p1 = await p2p();
    const p2 = await p2p();
    const all = [l, p1, p2];
    await until("everyone in view", () =>
      all.every((a) => all.every((b) => a === b || a.world.has(b.entity))),
    );

    // Server mode: the P2P clients play like legacy ones.
    p1.move(61, 62);
    await until("legacy sees P2P walk (server mode)", () => l.world.get(p1.entity)?.x === 61);

    // P2P on: the P2P clients open a data channel to each other.
    fieldA.setMode("prt_fild01", "p2p");
    // Sessions, not just peer ids: what the clients report to the gateway.
    await until(
      "P2P mesh open",
      () =>
        !!p1.mesh?.connectedSessions.includes(p2.session) &&
        !!p2.mesh?.connectedSessions.includes(p1.session),
    );
    expect(p1.connectedPeers).toEqual([p2.character]);
    expect(l.mode).toBe("p2p");
    await p1.ping(); // the gateway has read p1's mesh report
    const relayed: number[] = [];
    p1.onMessage((m) => {
      if (m.type === "aoi") for (const e of m.update) relayed.push(e.id);
    });

    // A P2P move reaches the other P2P client directly and the legacy client through the gateway.
    p2.move(90.5, 91.25);
    await until("P2P peer sees the move over the data channel", () => p1.world.get(p2.entity)?.x === 90.5);
    expect(p1.peerMoves).toBeGreaterThan(0);
    await until("legacy sees the P2P move", () => l.world.get(p2.entity)?.y === 91.25);
    // A legacy move reaches both P2P clients through the gateway.
    l.move(40, 41);
    await until("P2P clients see the legacy move", () =>
      [p1, p2].every((c) => c.world.get(l.entity)?.x === 40),
    );
    // p1 hears p2 directly, so the gateway left p2's moves out of p1's updates.
    expect(relayed).not.toContain(p2.entity);
    expect(relayed).toContain(l.entity);

    // Chat both ways.
    const heardByLegacy = l.next("chatMsg", 20_000, (m) => m.text === "from p2p");
    const heardByP2P = p2.next("chatMsg", 20_000, (m) => m.text === "from legacy");
    p1.chat("from p2p");
    l.chat("from legacy");
    expect((await heardByLegacy).from).toBe(p1.entity);
    expect((await heardByP2P).from).toBe(l.entity);

    // Fights both ways (server-authoritative in every mode).
    const legacyHit = l.next("combat", 20_000, (m) => m.from === p1.entity && m.target === l.entity);
    const p2pHit = p2.next("combat", 20_000, (m) => m.from === l.entity && m.target === p2.entity);
    p1.attack(l.entity);
    l.attack(p2.entity);
    expect((await legacyHit).damage).toBeGreaterThan(0);
    expect((await p2pHit).hpLeft).toBeLessThan(100);

    // P2P off: the mesh closes and the gateway relays p2's moves to p1 again.
    fieldA.setMode("prt_fild01", "server");
    await until("server mode, mesh closed", () => p1.mode === "server" && p1.connectedPeers.length === 0);
    const direct = p1.peerMoves;
    p2.move(70, 71);
    await until("p1 sees p2 walk through the gateway", () => p1.world.get(p2.entity)?.x === 70);
    expect(relayed).toContain(p2.entity);
    expect(p1.peerMoves).toBe(direct);

    for (const c of all) expect(c.seqErrors).toEqual([]);
    await Promise.all(all.map((c) => c.close()));
  });

  it("flag flips during play lose and reorder no server-authoritative message", async () => {
    fieldA.setMode("prt_fild02", "p2p");
    const l = await legacy("prt_fild02");
    const ps = [await p2p("prt_fild02"), await p2p("prt_fild02"), await p2p("prt_fild02")];
    const all = [l, ...ps];
    const sent: string[] = [];
    const heard = new Map<GameClient, Set<string>>(all.map((c) => [c, new Set()]));
    for (const c of all) c.onMessage((m) => m.type === "chatMsg" && heard.get(c)!.add(m.text));
    await until("mesh of three", () => ps.every((p) => p.connectedPeers.length === 2));

    // Play: everyone walks and talks while the map's mode flips under them.
    let playing = true;
    let round = 0;
    const play = (async () => {
      while (playing) {
        round++;
        for (const [i, c] of all.entries()) {
          c.move(20 + ((round + i) % 50), 30 + (i % 4));
          if (round % 3 === 0) {
            const text = `c${i} r${round}`;
            sent.push(text);
            c.chat(text);
          }
        }
        await sleep(25);
      }
    })();
    const flips = ["fallback", "p2p", "server", "p2p", "fallback", "server", "p2p"] as const;
    for (const mode of flips) {
      await sleep(150);
      fieldA.setMode("prt_fild02", mode);
      await until(`everyone in ${mode}`, () => all.every((c) => c.mode === mode));
      if (mode !== "p2p") expect(ps.every((p) => p.connectedPeers.length === 0)).toBe(true);
    }
    await until("mesh back", () => ps.every((p) => p.connectedPeers.length === 2));
    playing = false;
    await play;
    await until("every chat line heard by everyone", () =>
      all.every((c) => heard.get(c)!.size === sent.length),
    );
    for (const c of all) {
      expect(c.seqErrors).toEqual([]);
      expect(c.counts.get("mode")).toBe(flips.length);
      for (const t of sent) expect(heard.get(c)!.has(t)).toBe(true);
    }
    expect(sent.length).toBeGreaterThan(20);
    await Promise.all(all.map((c) => c.close()));
  });

  it("carries sessions over a map handover to a new owner with new entity ids", async () => {
    const nc = await connectNats(env.nats!);
    const old = new StandInMapServer({
      nc,
      region: gw.region,
      zone: "z1",
      maps: ["prt_fild03"],
      fence: "100",
    });
    old.start();
    let next: StandInMapServer | undefined;
    try {
      const a = await legacy("prt_fild03");
      const p = await p2p("prt_fild03");
      await until("in view", () => a.world.has(p.entity) && p.world.has(a.entity));
      const before = { a: a.entity, p: p.entity };
      const changed = a.next("mapChange");
      // The old owner stops; the new one takes the sessions over and numbers entities anew.
      const sessions = old.exportSessions();
      await old.stop();
      next = new StandInMapServer({
        nc,
        region: gw.region,
        zone: "z1",
        maps: ["prt_fild03"],
        fence: "101",
        firstEntity: 1000,
        restore: sessions,
      });
      next.start();
      const mc = await changed;
      expect(mc.map).toBe("prt_fild03");
      expect(a.entity).toBeGreaterThanOrEqual(1000);
      await until(
        "new ids in view",
        () => p.entity >= 1000 && a.world.has(p.entity) && p.world.has(a.entity),
      );
      expect(a.world.has(before.p)).toBe(false);
      expect(p.world.has(before.a)).toBe(false);
      a.move(44, 45);
      await until("the new owner walks a", () => p.world.get(a.entity)?.x === 44);
      for (const c of [a, p]) {
        expect(c.seqErrors).toEqual([]);
        expect(c.ws.open).toBe(true);
      }
      await a.close();
      await p.close();
    } finally {
      await old.stop();
      await next?.stop();
      await nc.drain();
    }
  });

  it("P2P clients get over a lost offer and a lost answer", async () => {
    fieldA.setMode("prt_fild01", "p2p");
    // Each client loses the first signaling message it sends: the offerer's offer, then the
    // answerer's answer to the offer made again.
    const proxy = await lossyProxy(mesh.urls[0]!);
    try {
      const a = await p2p("prt_fild01", { coordinators: [proxy.url], linkTimeoutMs: 60_000 });
      const b = await p2p("prt_fild01", { coordinators: [proxy.url], linkTimeoutMs: 60_000 });
      await until(
        "a channel despite the losses",
        () => a.connectedPeers.includes(b.character) && b.connectedPeers.includes(a.character),
        60_000,
      );
      expect(proxy.dropped.sort()).toEqual(["answer", "offer"]);
      expect(a.mesh?.relayedPeers).toEqual([]);
      b.move(51, 52);
      await until("a move over it", () => a.world.get(b.entity)?.x === 51 && a.peerMoves > 0);
      await a.close();
      await b.close();
    } finally {
      await proxy.close();
    }
  });

  it("takes its event consumer over from one left with other settings", async () => {
    const nc = await connectNats(env.nats!);
    try {
      const jsm = await jetstreamManager(nc);
      const durable = `gw_${gw.region}_old-gw`;
      await jsm.consumers.add(EVENT_STREAM, {
        durable_name: durable,
        filter_subject: "hp2p.elsewhere.*.*.ev",
        ack_policy: AckPolicy.Explicit,
      });
      const got: string[] = [];
      const c = await consumeEvents(nc, gw.region, "old-gw", (b) => got.push(b.map));
      expect((await jsm.consumers.info(EVENT_STREAM, durable)).config.filter_subject).toBe(
        `hp2p.${gw.region}.*.*.ev`,
      );
      await c.stop();
    } finally {
      await nc.drain();
    }
  });

  it("moves a player to a map owned by another map-server pod without dropping the session", async () => {
    const a = await legacy("prt_fild01");
    const c = await legacy("pay_fild01");
    await until("a in play", () => a.world.has(a.entity));
    const before = a.lastSeq;
    const changed = a.next("mapChange");
    await gw.gateway.transfer(a.session, "pay_fild01");
    const mc = await changed;
    expect(mc.map).toBe("pay_fild01");
    expect(mc.seq).toBeGreaterThan(before);
    expect(a.map).toBe("pay_fild01");
    await until(
      "a and c see each other on the new map",
      () => a.world.has(c.entity) && c.world.has(a.entity),
    );
    a.move(33, 34);
    await until("pod B walks a", () => c.world.get(a.entity)?.x === 33);
    expect(fieldB.received.some((i) => i.s === a.session)).toBe(true);
    expect(fieldA.entityOf("prt_fild01", a.session)).toBeUndefined();
    expect(a.ws.open).toBe(true);
    expect(a.seqErrors).toEqual([]);
    await a.close();
    await c.close();
  });

  it("a P2P player moved to another map meshes there: the coordinator asks the gateway where it is", async () => {
    fieldA.setMode("prt_fild02", "p2p");
    fieldB.setMode("pay_fild01", "p2p");
    const mover = await p2p("prt_fild02");
    const there = await p2p("pay_fild01");
    await until(
      "both in their maps' meshes",
      () => mover.mesh?.status === "p2p" && there.mesh?.status === "p2p",
    );
    expect(mover.connectedPeers).toEqual([]);

    // The mover's token still names prt_fild02 (zone z1); only the gateway knows it moved.
    await gw.gateway.transfer(mover.session, "pay_fild01");
    await until(
      "the mover and the player there meshed",
      () => mover.connectedPeers.length === 1 && there.connectedPeers.length === 1,
      60_000,
    );
    const z2 = mesh.coordinator.coordinator.zoneStates().find((z) => z.zone === "z2");
    expect(z2?.peers).toBe(2);
    expect(mesh.coordinator.coordinator.zoneStates().find((z) => z.zone === "z1")?.peers ?? 0).toBe(0);
    await mover.close();
    await there.close();
  }, 90_000);

  it("lets only the policy's rollout share of P2P players play P2P; the others play in server mode", async () => {
    fieldA.setMode("prt_fild02", "p2p");
    const rolled = await startTestGateway({
      natsUrl: env.natsUrl!,
      region: gw.region,
      id: "gw-rollout",
      keyset: gw.keyset,
      directory: staticDirectory({ z1: ["prt_fild01", "prt_fild02", "prt_fild03"] }),
      options: { rolloutPercent: (zone) => (zone === "z1" ? 50 : 100) },
    });
    try {
      const ids = Array.from({ length: 40 }, (_, i) => `ro${i}`);
      const inside = ids.find((id) => inRollout(id, 50))!;
      const outside = ids.find((id) => !inRollout(id, 50))!;
      const join = async (id: string) => {
        const c = await P2PClient.connect({
          url: rolled.url,
          token: await rolled.token(id, "prt_fild02"),
          coordinators: mesh.urls,
          ice: mesh.ice,
        });
        clients.push(c);
        return c;
      };
      const [a, b] = [await join(inside), await join(outside)];
      expect(a.mode).toBe("p2p");
      expect(b.mode).toBe("server");
      await until("the one inside meshes", () => a.mesh?.status === "p2p");
      expect(b.mesh).toBeUndefined();
      // Both still see each other through the gateway.
      await until("each sees the other", () => a.world.has(b.entity) && b.world.has(a.entity));
      await a.close();
      await b.close();
    } finally {
      await rolled.stop();
    }
  });
});
