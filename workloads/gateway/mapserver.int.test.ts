// The gateway with the real map server (workloads/map-server, in process) and the real flag
// plane (FlagPublisher writes zone documents to etcd; the map server and the gateway each run
// a FlagClient): legacy and P2P clients (meshing through a real coordinator) play together, and
// flag flips switch them between the peer and server paths while they play, with nothing lost
// or reordered.
import type { NatsConnection } from "@nats-io/transport-node";
import type { Etcd3 } from "etcd3";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { FlagClient } from "../../platform/flags/client.ts";
import { connectFlagStore } from "../../platform/flags/etcd.ts";
import type { ZoneFlags } from "../../platform/flags/layout.ts";
import { newRegistry } from "../../platform/http.ts";
import { silentLogger } from "../../platform/log.ts";
import { connectNats } from "../../platform/stores/access.ts";
import { startTestMesh, type TestMesh } from "../../testkit/client.ts";
import { FlagPublisher } from "../../testkit/flags.ts";
import { startTestGateway, type TestGateway, testZoneFlags } from "../../testkit/gateway.ts";
import { createCharacters, servicesFrom, unique } from "../../testkit/map-server/harness.ts";
import type { GameClient } from "../client/client.ts";
import { GameClient as Legacy } from "../client/client.ts";
import { P2PClient } from "../client/p2p.ts";
import { createPool } from "../db/pool.ts";
import { flagModes } from "../map-server/modes.ts";
import { MapServer } from "../map-server/server.ts";
import { openMap } from "../map-server/sim/maps.ts";
import { createRedis } from "../runtime/redis.ts";
import { flagDirectory, flagGate } from "./flags.ts";

const svc = servicesFrom(inject("localEnv"));
const region = unique("gwr");
const namespace = unique("gwns");
const zone = unique("z");
const map = "mixed";
const prefix = `/${unique("gwflags")}/v1/`;

async function until(
  what: string,
  cond: () => boolean,
  timeoutMs = 30_000,
  detail?: () => string,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${detail ? `: ${detail()}` : ""}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function zoneDoc(o: { p2p: boolean; zoneFallback?: boolean; gateway?: boolean }): ZoneFlags {
  return testZoneFlags({ namespace, zone, region, maps: [map], ...o });
}

describe("gateway with the real map server and flag plane", () => {
  let etcd: Etcd3;
  let publisher: FlagPublisher;
  let mapFlags: FlagClient;
  let gwFlags: FlagClient;
  let mapNc: NatsConnection;
  let server: MapServer;
  let gw: TestGateway;
  let mesh: TestMesh;
  let close: (() => Promise<void>)[] = [];
  let chars: string[];
  const clients: GameClient[] = [];

  const publish = (o: Parameters<typeof zoneDoc>[0]) =>
    publisher.publish({ zones: [zoneDoc(o)], policies: [] });

  beforeAll(async () => {
    etcd = connectFlagStore(svc.etcd);
    publisher = new FlagPublisher({ client: etcd, identity: "gateway-test", prefix });
    await publisher.acquire();
    await publish({ p2p: false });
    // Characters next to a poring at (32, 32), weak enough to hit it for a while.
    chars = await createCharacters(
      svc.databaseUrl,
      [
        [31, 32],
        [33, 32],
        [31, 31],
        [33, 33],
      ].map(([x, y]) => ({ name: unique("gw").slice(0, 12), hp: 400, str: 1, map, x, y })),
    );
    mapFlags = new FlagClient({ client: etcd, prefix, namespace, zone, service: "map-server", pod: "ms-0" });
    await mapFlags.start();
    mapNc = await connectNats(svc.nats);
    const redis = createRedis(svc.redis);
    const pool = createPool(svc.postgres, { max: 3 });
    server = new MapServer({
      region,
      zone,
      pod: "ms-0",
      maps: [map],
      threads: 1,
      tickHz: 20,
      maxPlayers: 50,
      nc: mapNc,
      etcd,
      redis,
      pg: pool,
      modes: flagModes(mapFlags),
      log: silentLogger(),
      registry: newRegistry(),
      prefix,
      redisPrefix: `${unique("gw")}:`,
      mapDef: (name) => openMap(name, 64, 64, { mobs: [{ type: 0, count: 1, at: [[32, 32]] }] }),
    });
    await server.start();
    gwFlags = new FlagClient({ client: etcd, prefix, namespace, service: "gateway", pod: "gw-0" });
    await gwFlags.start();
    const f = gwFlags;
    gw = await startTestGateway({
      natsUrl: svc.natsUrl,
      region,
      directory: flagDirectory(f),
      options: { p2pGate: flagGate(f) },
    });
    f.on("snapshot", () => gw.gateway.refreshModes());
    mesh = await startTestMesh({ natsUrl: svc.natsUrl, region, keyset: gw.keyset, zones: { [zone]: [map] } });
    close = [
      () => gw.stop(),
      () => mesh.stop(),
      () => server.close(),
      () => mapNc.drain(),
      () => mapFlags.close(),
      () => gwFlags.close(),
      async () => redis.disconnect(),
      () => pool.end(),
      async () => etcd.close(),
    ];
  });

  afterAll(async () => {
    await Promise.allSettled(clients.map((c) => c.close()));
    for (const c of close) await c().catch(() => undefined);
  });

  async function join<T extends GameClient>(kind: "legacy" | "p2p", i: number): Promise<T> {
    const token = await gw.token(chars[i]!, map);
    const c =
      kind === "p2p"
        ? await P2PClient.connect({ url: gw.url, token, coordinators: mesh.urls, ice: mesh.ice })
        : await Legacy.connect({ url: gw.url, token });
    clients.push(c);
    return c as T;
  }

  it("mixed zone: legacy and P2P clients see each other move, chat and fight", async () => {
    const l = await join<GameClient>("legacy", 0);
    const p1 = await join<P2PClient>("p2p", 1);
    const p2 = await join<P2PClient>("p2p", 2);
    const all = [l, p1, p2];
    await until("everyone in view", () =>
      all.every((a) => all.every((b) => a === b || a.world.has(b.entity))),
    );
    expect(all.map((c) => c.mode)).toEqual(["server", "server", "server"]);

    await publish({ p2p: true });
    await until("P2P on for everyone", () => all.every((c) => c.mode === "p2p"));
    await until(
      "P2P mesh open",
      () => p1.connectedPeers.includes(p2.character) && p2.connectedPeers.includes(p1.character),
    );

    // P2P moves: one cell at a time (the map server bounds reported speed).
    for (const y of [33, 34, 35]) {
      p1.move(33, y);
      await sleep(250);
    }
    await until(
      "P2P peer sees the move directly",
      () => p1.peerMoves + p2.peerMoves > 0 && p2.world.get(p1.entity)?.y === 35,
    );
    await until("legacy sees the P2P move through the gateway", () => l.world.get(p1.entity)?.y === 35);
    l.move(28, 32);
    await until(
      "P2P clients see the legacy walk",
      () => [p1, p2].every((c) => Math.floor(c.world.get(l.entity)?.x ?? 0) === 28),
      30_000,
      () =>
        JSON.stringify([
          l.world.get(l.entity),
          p1.world.get(l.entity),
          p2.world.get(l.entity),
          [...l.counts],
          [...p1.counts],
        ]),
    );

    const heardByLegacy = l.next("chatMsg", 20_000, (m) => m.text === "from p2p");
    const heardByP2P = p2.next("chatMsg", 20_000, (m) => m.text === "from legacy");
    p1.chat("from p2p");
    l.chat("from legacy");
    expect((await heardByLegacy).from).toBe(p1.entity);
    expect((await heardByP2P).from).toBe(l.entity);

    // Both kinds fight the poring; each sees the other's hits. The poring wanders, so the two
    // keep walking up to it (the P2P one a cell at a time, as the map server bounds its speed).
    const mob = [...l.world.values()].find((e) => e.kind === "mob")!;
    expect(mob).toBeDefined();
    const legacySeesP2P = l.next("combat", 60_000, (m) => m.from === p1.entity && m.target === mob.id);
    const p2pSeesLegacy = p1.next("combat", 60_000, (m) => m.from === l.entity && m.target === mob.id);
    let fighting = true;
    const chase = (async () => {
      while (fighting) {
        const m = l.world.get(mob.id) ?? mob;
        const me = p1.world.get(p1.entity);
        if (me) {
          const step = (from: number, to: number) => from + Math.max(-1, Math.min(1, to - from));
          p1.move(step(me.x, m.x), step(me.y, m.y));
        }
        l.move(Math.floor(m.x), Math.floor(m.y));
        l.attack(mob.id);
        p1.attack(mob.id);
        await sleep(250);
      }
    })();
    try {
      expect((await legacySeesP2P).damage).toBeGreaterThan(0);
      expect((await p2pSeesLegacy).damage).toBeGreaterThan(0);
    } finally {
      fighting = false;
      await chase;
    }

    for (const c of all) expect(c.seqErrors).toEqual([]);
    await Promise.all(all.map((c) => c.close()));
  });

  it("flag flips during play lose and reorder no server-authoritative message", async () => {
    await publish({ p2p: true });
    const l = await join<GameClient>("legacy", 0);
    const ps = [
      await join<P2PClient>("p2p", 1),
      await join<P2PClient>("p2p", 2),
      await join<P2PClient>("p2p", 3),
    ];
    const all = [l, ...ps];
    await until("P2P mode", () => all.every((c) => c.mode === "p2p"));
    await until("mesh of three", () => ps.every((p) => p.connectedPeers.length === 2));
    const sent: string[] = [];
    const heard = new Map<GameClient, Set<string>>(all.map((c) => [c, new Set()]));
    for (const c of all) c.onMessage((m) => m.type === "chatMsg" && heard.get(c)!.add(m.text));
    const modesBefore = all.map((c) => c.counts.get("mode") ?? 0);

    let playing = true;
    let round = 0;
    const play = (async () => {
      while (playing) {
        round++;
        for (const [i, c] of all.entries()) {
          if (round % 2 === 0) c.move(30 + (round % 4), 30 + i);
          if (round % 3 === 0) {
            const text = `c${i} r${round}`;
            sent.push(text);
            c.chat(text);
          }
        }
        await sleep(100);
      }
    })();
    const flips: [Parameters<typeof zoneDoc>[0], "p2p" | "server" | "fallback"][] = [
      [{ p2p: true, zoneFallback: true }, "fallback"],
      [{ p2p: true }, "p2p"],
      [{ p2p: true, gateway: false }, "server"],
      [{ p2p: true }, "p2p"],
      [{ p2p: false }, "server"],
      [{ p2p: true }, "p2p"],
    ];
    for (const [doc, mode] of flips) {
      await sleep(300);
      await publish(doc);
      await until(
        `everyone in ${mode}`,
        () => all.every((c) => c.mode === mode),
        30_000,
        () => JSON.stringify(all.map((c) => [c.mode, [...c.counts]])),
      );
      if (mode !== "p2p") expect(ps.every((p) => p.connectedPeers.length === 0)).toBe(true);
    }
    await until("mesh back", () => ps.every((p) => p.connectedPeers.length === 2));
    playing = false;
    await play;
    await until("every chat line heard by everyone", () =>
      all.every((c) => heard.get(c)!.size === sent.length),
    );
    for (const [i, c] of all.entries()) {
      expect(c.seqErrors).toEqual([]);
      expect((c.counts.get("mode") ?? 0) - modesBefore[i]!).toBe(flips.length);
    }
    expect(sent.length).toBeGreaterThan(10);
    await Promise.all(all.map((c) => c.close()));
  });
});
