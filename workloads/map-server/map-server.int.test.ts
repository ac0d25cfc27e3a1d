// The map server against real NATS (JetStream), Redis, PostgreSQL and etcd, in process.
import { jetstream } from "@nats-io/jetstream";
import { describe, expect, inject, it } from "vitest";
import {
  decode,
  EVENT_STREAM,
  type EventBatch,
  type MapAddress,
  type MapMode,
  subjects,
} from "../../platform/bus/contract.ts";
import { connectNats } from "../../platform/stores/access.ts";
import {
  createCharacters,
  FakeGateway,
  readCharacter,
  servicesFrom,
  startTestServer,
  unique,
  until,
} from "../../testkit/map-server/harness.ts";
import {
  SCENARIO_SEED,
  SCENARIO_TICKS,
  ScenarioClient,
  scenarioMap,
  scenarioPlayers,
} from "../../testkit/map-server/scenario.ts";
import { createRedis } from "../runtime/redis.ts";
import { FixedModes } from "./modes.ts";
import { openMap } from "./sim/maps.ts";
import { HotStore } from "./store.ts";

const svc = servicesFrom(inject("localEnv"));
const region = "itest";
const prefix = `/${unique("mstest")}/v1/`;
const redisPrefix = `${unique("mstest")}:`;

async function eventsOf(addr: MapAddress): Promise<EventBatch[]> {
  const nc = await connectNats(svc.nats);
  try {
    const c = await jetstream(nc).consumers.get(EVENT_STREAM, { filter_subjects: [subjects.events(addr)] });
    const out: EventBatch[] = [];
    const info = await c.info(true);
    let left = info.num_pending;
    while (left > 0) {
      const msgs = await c.fetch({ max_messages: Math.min(left, 500), expires: 2000 });
      for await (const m of msgs) {
        out.push(decode<EventBatch>(m.data));
        left--;
      }
    }
    return out;
  } finally {
    await nc.close();
  }
}

/** The scenario of testing/scenario.ts through NATS, in `mode`; returns the world's digest. */
async function scenarioOverNats(mode: MapMode) {
  const zone = unique("z");
  const map = "scenario";
  const addr = { region, zone, map };
  const players = scenarioPlayers();
  const ids = await createCharacters(
    svc.databaseUrl,
    players.map((p) => ({
      name: unique(p.name.slice(0, 5)),
      hp: 400,
      str: 3,
      map,
      x: Math.floor(p.x!),
      y: Math.floor(p.y!),
    })),
  );
  const ts = await startTestServer(svc, {
    region,
    zone,
    pod: "pod-a",
    maps: [map],
    prefix,
    redisPrefix,
    manualTick: true,
    seed: SCENARIO_SEED,
    mapDef: scenarioMap,
    modes: new FixedModes(mode),
  });
  const gws = new Map<string, FakeGateway>();
  try {
    await until("map owned", () => ts.owns(map));
    const sim = ts.server.sim(map)!;
    const clients = players.map((p) => new ScenarioClient(p, 20));
    for (const [k, c] of clients.entries()) {
      let gw = gws.get(c.info.gateway);
      if (!gw) {
        gw = await FakeGateway.open(svc.natsUrl, region, c.info.gateway);
        gws.set(c.info.gateway, gw);
      }
      const r = await gw.join(addr, c.info.session, ids[k]!, c.info.p2p);
      expect(r).toMatchObject({ ok: true, mode, owner: "pod-a" });
      if (r.ok) c.joined(r.entity, r.x, r.y);
    }
    for (let t = 0; t < SCENARIO_TICKS; t++) {
      let expected = 0;
      for (const [gwId, gw] of gws) {
        const inputs = clients.filter((c) => c.info.gateway === gwId).flatMap((c) => c.inputs(t, mode));
        expected += inputs.length;
        await gw.send(addr, inputs);
      }
      await until("inputs delivered", () => sim.pendingInputs === expected);
      const r = (await ts.server.step()).get(map)!;
      for (const [gwId, gw] of gws) {
        // One frame per worker thread that has this gateway's players.
        const want = r.frames.filter((f) => f.gateway === gwId).length;
        const got = await until("frames delivered", () => {
          const fs = gw.frames.filter((f) => f.tick === r.tick);
          return fs.length === want ? fs : undefined;
        });
        for (const f of got) {
          expect(f.fence).toBe(sim.fence);
          for (const v of f.views) clients.find((c) => c.info.session === v.session)?.observe(f, v);
        }
      }
    }
    return { digest: sim.digest(), clients, events: await eventsOf(addr), sim };
  } finally {
    for (const gw of gws.values()) await gw.close();
    await ts.close();
  }
}

describe("map server", () => {
  it("plays the same scenario to the same end in server mode and in P2P mode, over NATS", async () => {
    const server = await scenarioOverNats("server");
    const p2p = await scenarioOverNats("p2p");
    expect(p2p.digest).toBe(server.digest);
    for (const run of [server, p2p]) {
      const kinds = run.events.flatMap((b) => b.events.map((e) => e.k));
      expect(kinds.filter((k) => k === "chat")).toHaveLength(6);
      expect(kinds).toContain("hit");
      expect(kinds).toContain("loot");
      expect(run.clients.map((c) => c.corrections)).toEqual([0, 0, 0]);
      // The killers got paid.
      expect([...run.sim.sessions.values()].some((s) => s.exp > 0)).toBe(true);
    }
    // P2P clients really walked by themselves: their positions came from reports.
    expect(p2p.events.flatMap((b) => b.events)).toHaveLength(server.events.flatMap((b) => b.events).length);
  }, 180_000);

  it("rejects cheating moves: walls, teleports, off-map targets, reports from legacy clients", async () => {
    const zone = unique("z");
    const map = "walls";
    const addr = { region, zone, map };
    const walls: Array<[number, number]> = [];
    for (let y = 0; y < 40; y++) walls.push([20, y]);
    const [cheat, legacy] = await createCharacters(svc.databaseUrl, [
      { name: unique("Chea"), map, x: 10, y: 10 },
      { name: unique("Lega"), map, x: 12, y: 12 },
    ]);
    const ts = await startTestServer(svc, {
      region,
      zone,
      pod: "pod-c",
      maps: [map],
      prefix,
      redisPrefix,
      manualTick: true,
      mapDef: () => openMap(map, 40, 40, { walls }),
      modes: new FixedModes("p2p"),
    });
    const gw = await FakeGateway.open(svc.natsUrl, region, "gw-c");
    try {
      await until("map owned", () => ts.owns(map));
      const sim = ts.server.sim(map)!;
      await gw.join(addr, "cheat", cheat!, true);
      await gw.join(addr, "legacy", legacy!, false);
      await ts.server.step();
      const step = 1000 / 150 / 20;
      const inputs = [
        { s: "cheat", seq: 1, k: "pos" as const, x: 10.5 + step, y: 10.5 }, // fine
        { s: "legacy", seq: 1, k: "move" as const, x: 25, y: 12 }, // through the wall
        { s: "legacy", seq: 2, k: "move" as const, x: 12, y: 80 }, // off the map
        { s: "legacy", seq: 3, k: "pos" as const, x: 12.6, y: 12.5 }, // legacy clients do not report
      ];
      await gw.send(addr, inputs);
      await until("inputs", () => sim.pendingInputs === inputs.length);
      await ts.server.step();
      await gw.send(addr, [{ s: "cheat", seq: 2, k: "pos", x: 18, y: 10.5 }]); // teleport
      await until("inputs", () => sim.pendingInputs === 1);
      await ts.server.step();
      await gw.send(addr, [{ s: "cheat", seq: 3, k: "pos", x: 25, y: 10.5 }]); // across the wall
      await until("inputs", () => sim.pendingInputs === 1);
      const last = (await ts.server.step()).get(map)!;
      await until("frames", () => gw.frames.find((f) => f.tick === last.tick));
      const corrections = gw.frames.flatMap((f) =>
        f.views.flatMap((v) => (v.corrections ?? []).map((c) => `${v.session}:${c.seq}:${c.kind}`)),
      );
      expect(corrections.sort()).toEqual(
        ["cheat:2:snap", "cheat:3:snap", "legacy:1:reject", "legacy:2:reject", "legacy:3:reject"].sort(),
      );
      const me = sim.playerState(sim.sessions.get("cheat")!);
      expect(me.x).toBe(10.5 + step);
      expect(sim.playerState(sim.sessions.get("legacy")!)).toMatchObject({ x: 12.5, y: 12.5 });
    } finally {
      await gw.close();
      await ts.close();
    }
  });

  it("keeps state across a restart: hot state in Redis for the next owner, characters in PostgreSQL", async () => {
    const zone = unique("z");
    const map = "restart";
    const addr = { region, zone, map };
    const [id] = await createCharacters(svc.databaseUrl, [
      { name: unique("Rest"), map, x: 20, y: 20, str: 30 },
    ]);
    const mapDef = () => openMap(map, 60, 60, { mobs: [{ type: 0, count: 1, at: [[21, 20]] }] });
    const common = { region, zone, maps: [map], prefix, redisPrefix, mapDef };
    const gw = await FakeGateway.open(svc.natsUrl, region, "gw-r");
    try {
      // First life: fight, walk, shut down gracefully.
      const a = await startTestServer(svc, { ...common, pod: "pod-r1" });
      await until("map owned", () => a.owns(map));
      const joined = await gw.join(addr, "sess-r", id!);
      expect(joined).toMatchObject({ ok: true, x: 20.5, y: 20.5 });
      await gw.send(addr, [{ s: "sess-r", seq: 1, k: "attack", target: 0 }]);
      const sim = a.server.sim(map)!;
      await until("mob killed", () => (sim.sessions.get("sess-r")!.exp > 0 ? true : undefined));
      await gw.send(addr, [{ s: "sess-r", seq: 2, k: "move", x: 30, y: 25 }]);
      await until("walked", () => sim.playerState(sim.sessions.get("sess-r")!).x === 30.5 || undefined);
      const exp = sim.sessions.get("sess-r")!.exp;
      // Its ticks show against their budget, and its player in the map's count.
      const sample = async (srv: typeof a, name: string) =>
        Number(/^[^#].* (\S+)$/m.exec(await srv.server.opts.registry.getSingleMetricAsString(name))?.[1]);
      expect(await sample(a, "hybridp2p_map_players")).toBe(1);
      expect(await sample(a, "hybridp2p_map_tick_budget_used_ratio")).toBeGreaterThan(0);
      expect(await sample(a, "hybridp2p_map_tick_budget_seconds")).toBeCloseTo(1 / a.server.opts.tickHz);
      await a.close();
      expect(await readCharacter(svc.databaseUrl, id!)).toMatchObject({
        last_map: map,
        last_x: 30,
        last_y: 25,
        base_exp: String(exp),
      });

      // Second life, another pod: the session is back where it was, without rejoining.
      const b = await startTestServer(svc, { ...common, pod: "pod-r2" });
      await until("map owned", () => b.owns(map));
      const simB = b.server.sim(map)!;
      const s = simB.sessions.get("sess-r");
      expect(s).toMatchObject({
        characterId: id,
        exp,
        gateway: "gw-r",
        entity: joined.ok ? joined.entity : -1,
      });
      expect(simB.playerState(s!)).toMatchObject({ x: 30.5, y: 25.5 });
      expect(BigInt(simB.fence)).toBeGreaterThan(BigInt(sim.fence));
      // Leaving persists and marks the character offline.
      expect(await gw.leave(addr, "sess-r")).toEqual({ v: 1, ok: true });
      expect(await readCharacter(svc.databaseUrl, id!)).toMatchObject({
        last_x: 30,
        last_y: 25,
        online: false,
      });
      // The map stands still now; its count still goes to 0.
      await until("no players counted", async () =>
        (await sample(b, "hybridp2p_map_players")) === 0 ? true : undefined,
      );
      await b.close();

      // Third life: a fresh join reads PostgreSQL.
      const c = await startTestServer(svc, { ...common, pod: "pod-r3" });
      await until("map owned", () => c.owns(map));
      expect(c.server.sim(map)!.sessions.size).toBe(0);
      expect(await gw.join(addr, "sess-r2", id!)).toMatchObject({ ok: true, x: 30.5, y: 25.5 });
      await c.close();
    } finally {
      await gw.close();
    }
  }, 120_000);

  it("spreads a zone's maps over its pods, handing sessions over with their state", async () => {
    const zone = unique("z");
    const maps = ["m1", "m2"];
    const mapDef = (name: string) => openMap(name, 60, 60);
    const ids = await createCharacters(
      svc.databaseUrl,
      maps.map((map) => ({ name: unique("Bal"), map, x: 20, y: 20 })),
    );
    const common = { region, zone, maps, prefix, redisPrefix, mapDef };
    const gw = await FakeGateway.open(svc.natsUrl, region, "gw-b");
    const a = await startTestServer(svc, { ...common, pod: "pod-b1" });
    let b: Awaited<ReturnType<typeof startTestServer>> | undefined;
    try {
      await until("pod-b1 owns both maps", () => (a.server.maps().length === 2 ? true : undefined));
      for (const [k, map] of maps.entries()) {
        await gw.join({ region, zone, map }, `sess-${map}`, ids[k]!);
        await gw.send({ region, zone, map }, [{ s: `sess-${map}`, seq: 1, k: "move", x: 25 + k, y: 20 }]);
      }
      for (const [k, map] of maps.entries()) {
        const sim = a.server.sim(map)!;
        await until(`walked on ${map}`, () =>
          sim.playerState(sim.sessions.get(`sess-${map}`)!).x === 25.5 + k ? true : undefined,
        );
      }
      b = await startTestServer(svc, { ...common, pod: "pod-b2" });
      const pb = b;
      await until("one map each", () =>
        a.server.maps().length === 1 && pb.server.maps().length === 1 ? true : undefined,
      );
      const moved = pb.server.maps()[0]!;
      const sim = pb.server.sim(moved)!;
      const s = sim.sessions.get(`sess-${moved}`);
      expect(s).toBeDefined();
      expect(sim.playerState(s!)).toMatchObject({ x: 25.5 + maps.indexOf(moved), y: 20.5 });
      expect(a.server.sim(moved)).toBeUndefined();
    } finally {
      await gw.close();
      await b?.close();
      await a.close();
    }
  }, 120_000);

  it("refuses hot-state writes from a deposed owner (fenced)", async () => {
    const redis = createRedis(svc.redis);
    const hot = new HotStore(redis, redisPrefix);
    const zone = unique("z");
    const base = {
      session: "s",
      characterId: "1",
      gateway: "g",
      p2p: false,
      name: "n",
      hp: 1,
      maxHp: 1,
      atk: 1,
    };
    try {
      expect(await hot.save(region, zone, "m", "10", [{ ...base, x: 1, y: 1, exp: 1, zeny: 0 }])).toBe(true);
      expect(await hot.claim(region, zone, "m", "12")).toBe(true);
      // The old owner (fence 10) wakes up and writes: refused, the state stays.
      expect(await hot.save(region, zone, "m", "10", [{ ...base, x: 9, y: 9, exp: 99, zeny: 0 }])).toBe(
        false,
      );
      expect(await hot.remove(region, zone, "m", "10", ["s"])).toBe(false);
      expect(await hot.load(region, zone, "m")).toMatchObject([{ session: "s", x: 1, exp: 1 }]);
      expect(await hot.save(region, zone, "m", "12", [{ ...base, x: 2, y: 2, exp: 2, zeny: 0 }])).toBe(true);
      expect(await hot.load(region, zone, "m")).toMatchObject([{ x: 2, exp: 2 }]);
    } finally {
      redis.disconnect();
    }
  });
});
