// The real gateway in front of the real map server, on real NATS, Redis, PostgreSQL and etcd:
// WebSocket clients see each other move, hear each other chat and get combat results.
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { startTestMesh, type TestMesh } from "../../testkit/client.ts";
import { startTestGateway, type TestGateway } from "../../testkit/gateway.ts";
import {
  createCharacters,
  servicesFrom,
  startTestServer,
  type TestServer,
  unique,
  until,
} from "../../testkit/map-server/harness.ts";
import { GameClient } from "../client/client.ts";
import { P2PClient } from "../client/p2p.ts";
import { staticDirectory } from "../gateway/gateway.ts";
import { FixedModes } from "./modes.ts";
import { openMap } from "./sim/maps.ts";

const svc = servicesFrom(inject("localEnv"));
const map = "gwfield";
const zone = unique("z");
const p2pMap = "gwmeadow";
const p2pZone = unique("p");

describe("gateway and map server", () => {
  let gw: TestGateway;
  let mesh: TestMesh;
  let ms: TestServer;
  let ms2: TestServer;
  const clients: GameClient[] = [];

  beforeAll(async () => {
    const zones = { [zone]: [map], [p2pZone]: [p2pMap] };
    gw = await startTestGateway({ natsUrl: svc.natsUrl, directory: staticDirectory(zones) });
    mesh = await startTestMesh({ natsUrl: svc.natsUrl, region: gw.region, keyset: gw.keyset, zones });
    ms = await startTestServer(svc, {
      region: gw.region,
      zone,
      pod: "pod-g",
      maps: [map],
      prefix: `/${unique("gwtest")}/v1/`,
      redisPrefix: `${unique("gwtest")}:`,
      threads: 1,
      mapDef: () =>
        openMap(map, 80, 80, {
          mobs: [{ type: 0, count: 1, at: [[44, 40]] }],
          warps: [{ x: 70, y: 70, to: { map: p2pMap, x: 12, y: 12 } }],
        }),
    });
    ms2 = await startTestServer(svc, {
      region: gw.region,
      zone: p2pZone,
      pod: "pod-p",
      maps: [p2pMap],
      prefix: `/${unique("gwtest")}/v1/`,
      redisPrefix: `${unique("gwtest")}:`,
      threads: 1,
      modes: new FixedModes("p2p"),
      mapDef: () => openMap(p2pMap, 80, 80),
    });
    await until("maps owned", async () => (await ms.owns(map)) && (await ms2.owns(p2pMap)));
  });

  afterAll(async () => {
    for (const c of clients) await c.close().catch(() => undefined);
    await gw?.stop();
    await mesh?.stop();
    await ms?.close();
    await ms2?.close();
  });

  it("carries movement, chat and combat between clients through the gateway", async () => {
    const [alice, bob] = await createCharacters(svc.databaseUrl, [
      { name: unique("Ali"), map, x: 40, y: 40, str: 20 },
      { name: unique("Bob"), map, x: 42, y: 41 },
    ]);
    const a = await GameClient.connect({ url: gw.url, token: await gw.token(alice!, map, "Alice") });
    clients.push(a);
    const b = await GameClient.connect({ url: gw.url, token: await gw.token(bob!, map, "Bob") });
    clients.push(b);
    expect(a.entity).not.toBe(b.entity);

    // Each sees the other (and the poring) through AOI frames.
    await until("a sees b", () => (a.world.has(b.entity) ? true : undefined));
    await until("b sees a and the mob", () =>
      b.world.has(a.entity) && [...b.world.values()].some((e) => e.kind === "mob") ? true : undefined,
    );

    // Movement: b watches a walk.
    a.move(36, 40);
    await until("b sees a arrive", () => (b.world.get(a.entity)?.x === 36.5 ? true : undefined));

    // Chat reaches the neighbour (zone events over JetStream).
    const heard = b.next("chatMsg", 20_000, (m) => m.text === "hello bob");
    a.chat("hello bob");
    expect(await heard).toMatchObject({ from: a.entity, text: "hello bob" });

    // Combat: b attacks the poring next to it and both see the hits.
    const mob = [...b.world.values()].find((e) => e.kind === "mob")!;
    b.move(43, 40);
    await until("b next to the mob", () => (b.world.get(b.entity)?.x === 43.5 ? true : undefined));
    const seen = a.next("combat", 20_000, (m) => m.from === b.entity && m.target === mob.id);
    b.attack(mob.id);
    expect((await seen).damage).toBeGreaterThan(0);
  }, 120_000);

  it("in a mixed p2p zone, a legacy client sees a P2P client's reported moves, and teleports are snapped", async () => {
    const [peer, legacyChar] = await createCharacters(svc.databaseUrl, [
      { name: unique("Pee"), map: p2pMap, x: 40, y: 40 },
      { name: unique("Leg"), map: p2pMap, x: 44, y: 40 },
    ]);
    const p = await P2PClient.connect({
      url: gw.url,
      token: await gw.token(peer!, p2pMap, "Peer"),
      coordinators: mesh.urls,
      ice: mesh.ice,
    });
    clients.push(p);
    const l = await GameClient.connect({ url: gw.url, token: await gw.token(legacyChar!, p2pMap, "Legacy") });
    clients.push(l);
    expect(p.mode).toBe("p2p");
    await until("legacy sees the peer", () => (l.world.has(p.entity) ? true : undefined));

    // The P2P client walks by itself; a one-cell report is within the speed cap once a few ticks
    // have passed since the join, and the legacy client sees it through the gateway.
    const sim2 = ms2.server.sim(p2pMap)!;
    const t0 = sim2.tick;
    await until("a few ticks", () => (sim2.tick >= t0 + 5 ? true : undefined));
    p.move(41.5, 40.5);
    await until("legacy sees the report", () => (l.world.get(p.entity)?.x === 41.5 ? true : undefined));

    // A teleport is snapped back, with a correction for the P2P client only.
    const corrected = p.next("aoi", 20_000, (m) => m.corrections.length > 0);
    p.move(75.5, 40.5);
    const m = await corrected;
    expect(m.corrections[0]).toMatchObject({ kind: "snap", x: 41.5, y: 40.5 });
    const s = ms2.server.sim(p2pMap)!;
    expect(s.playerState([...s.sessions.values()].find((x) => x.entity === p.entity)!)).toMatchObject({
      x: 41.5,
    });
  }, 120_000);

  it("a player who steps onto a portal plays on on the map it leads to, owned by another pod", async () => {
    const [walker, there] = await createCharacters(svc.databaseUrl, [
      { name: unique("Wal"), map, x: 66, y: 70 },
      { name: unique("The"), map: p2pMap, x: 14, y: 12 },
    ]);
    const w = await GameClient.connect({ url: gw.url, token: await gw.token(walker!, map, "Walker") });
    clients.push(w);
    const t = await GameClient.connect({ url: gw.url, token: await gw.token(there!, p2pMap, "There") });
    clients.push(t);
    const changed = w.next("mapChange", 30_000);
    w.move(70, 70);
    // The map server saw it on the portal; the gateway moved it: same connection, new map.
    expect(await changed).toMatchObject({ map: p2pMap, x: 12.5, y: 12.5 });
    expect(w.map).toBe(p2pMap);
    await until("each sees the other on the new map", () =>
      w.world.has(t.entity) && t.world.has(w.entity) ? true : undefined,
    );
    expect(ms2.server.sim(p2pMap)!.sessions.has(w.session)).toBe(true);
    expect(ms.server.sim(map)!.sessions.has(w.session)).toBe(false);
    expect(w.seqErrors).toEqual([]);
    // It walks on there, through the other pod.
    w.move(16, 12);
    await until("the other sees it walk", () => (t.world.get(w.entity)?.x === 16.5 ? true : undefined));
  }, 120_000);
});
