// The real gateway in front of the real map server, on real NATS, Redis, PostgreSQL and etcd:
// WebSocket clients see each other move, hear each other chat and get combat results.
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { GameClient } from "../client/client.ts";
import { staticDirectory } from "../gateway/gateway.ts";
import { startTestGateway, type TestGateway } from "../gateway/testing.ts";
import { openMap } from "./sim/maps.ts";
import {
  createCharacters,
  servicesFrom,
  startTestServer,
  type TestServer,
  unique,
  until,
} from "./testing/harness.ts";

const svc = servicesFrom(inject("localEnv"));
const map = "gwfield";
const zone = unique("z");

describe("gateway and map server", () => {
  let gw: TestGateway;
  let ms: TestServer;
  const clients: GameClient[] = [];

  beforeAll(async () => {
    gw = await startTestGateway({ natsUrl: svc.natsUrl, directory: staticDirectory({ [zone]: [map] }) });
    ms = await startTestServer(svc, {
      region: gw.region,
      zone,
      pod: "pod-g",
      maps: [map],
      prefix: `/${unique("gwtest")}/v1/`,
      redisPrefix: `${unique("gwtest")}:`,
      threads: 1,
      mapDef: () => openMap(map, 80, 80, { mobs: [{ type: 0, count: 1, at: [[44, 40]] }] }),
    });
    await until("map owned", () => ms.server.maps().includes(map));
  });

  afterAll(async () => {
    for (const c of clients) await c.close().catch(() => undefined);
    await gw?.stop();
    await ms?.close();
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
});
