// World events in the map server against the real NATS, Redis, etcd and PostgreSQL, with the
// records published as the orchestrator would (platform/bus/world.ts): an invasion is spawned
// once, a replayed record spawns nothing more, a handover to another pod brings back only the
// invaders still alive and announces nothing again, an ended record despawns them, the next
// occurrence replaces the last, and an invasion whose invaders are all killed ends (Cleared).
import { jetstream } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, describe, expect, inject, it } from "vitest";
import { decode, encode } from "../../platform/bus/contract.ts";
import {
  ensureWorldStreams,
  type WorldEventRecord,
  type WorldLiveReport,
  worldSubjects,
} from "../../platform/bus/world.ts";
import { connectNats } from "../../platform/stores/access.ts";
import {
  createCharacters,
  FakeGateway,
  servicesFrom,
  startTestServer,
  type TestServer,
  unique,
  until,
} from "../../testkit/map-server/harness.ts";
import { EV_DAMAGE, pushEvent } from "./sim/arena.ts";
import { openMap } from "./sim/maps.ts";

const svc = servicesFrom(inject("localEnv"));
const region = unique("wevr");
const zone = "z";
const map = "wmap";
const prefix = `/${unique("wevms")}/v1/`;
const redisPrefix = `${unique("wevms")}:`;

describe("world events in the map server", () => {
  const servers: TestServer[] = [];
  let nc: NatsConnection;
  let gw: FakeGateway;
  afterAll(async () => {
    await gw?.close();
    for (const s of servers) await s.close().catch(() => undefined);
    await nc?.drain();
  });

  const start = async (pod: string) => {
    const s = await startTestServer(svc, {
      region,
      zone,
      pod,
      maps: [map],
      threads: 0,
      manualTick: true,
      prefix,
      redisPrefix,
      ownershipTtlSeconds: 2,
      worldReportMs: 200,
      mapDef: (m) => openMap(m, 48, 48),
    });
    servers.push(s);
    return s;
  };
  const metric = async (s: TestServer, name: string) =>
    (await s.server.opts.registry.getSingleMetricAsString(name))
      .split("\n")
      .filter((l) => !l.startsWith("#"));

  it("spawns once, survives replays and handovers, and ends", async () => {
    nc = await connectNats(svc.nats);
    await ensureWorldStreams(nc, region);
    const js = jetstream(nc);
    const [character] = await createCharacters(svc.databaseUrl, [
      { name: unique("wv").slice(0, 12), hp: 100_000, str: 50, map, x: 20, y: 20 },
    ]);
    const a = await start("ms-a");
    await until("map owned by a", () => a.owns(map));
    await a.server.settled();
    gw = await FakeGateway.open(svc.natsUrl, region, "gw-1");
    const joined = await gw.join({ region, zone, map }, "s1", character!);
    const now = Date.now();
    const record: WorldEventRecord = {
      v: 1,
      uid: "uid-1",
      name: "ops/invasion",
      id: `uid-1.${now - 1000}`,
      state: "active",
      startsAt: now - 1000,
      endsAt: now + 120_000,
      action: { type: "Invasion", mob: "poring", count: 3, endWhenCleared: true },
      announcement: { message: "Porings!" },
      targets: [{ zone, maps: [map] }],
    };
    const put = (r: WorldEventRecord) => js.publish(worldSubjects.event(region, r.uid), encode(r));
    await put(record);
    const stepUntil = async <T>(s: TestServer, what: string, probe: () => T | undefined) =>
      until(what, async () => {
        await s.server.step();
        return probe();
      });
    const simA = () => a.server.sim(map)!;
    await stepUntil(a, "three invaders on a", () => (simA().eventMobs.size === 3 ? true : undefined));

    // A kill is counted in Redis; a replayed record spawns nothing.
    const [victim] = [...simA().eventMobs.keys()];
    pushEvent(simA().arena, simA().bank, victim!, EV_DAMAGE, joined.entity, 100_000, 0);
    const key = `${redisPrefix}world:${region}:${zone}:${map}:${record.id}`;
    await until("the kill counted", async () => {
      await a.server.step();
      return (await a.redis.hget(key, "killed")) === "1" ? true : undefined;
    });
    await put(record);
    for (let i = 0; i < 10; i++) await a.server.step();
    expect(await metric(a, "hybridp2p_world_event_mobs_spawned_total")).toEqual([
      'hybridp2p_world_event_mobs_spawned_total{mob="poring"} 3',
    ]);
    expect(await a.redis.hgetall(key)).toMatchObject({ spawned: "3", killed: "1", announced: "1" });

    // Handover: the next owner brings back the two alive invaders, and announces nothing.
    const b = await start("ms-b");
    await a.close();
    servers.splice(servers.indexOf(a), 1);
    await until("map owned by b", () => b.owns(map));
    await b.server.settled();
    const simB = () => b.server.sim(map)!;
    await stepUntil(b, "two invaders on b", () => (simB().eventMobs.size === 2 ? true : undefined));
    expect(await metric(b, "hybridp2p_world_event_mobs_spawned_total")).toEqual([
      'hybridp2p_world_event_mobs_spawned_total{mob="poring"} 2',
    ]);
    expect(await metric(b, "hybridp2p_world_event_announcements_total")).toEqual([
      "hybridp2p_world_event_announcements_total 0",
    ]);
    expect(await metric(b, "hybridp2p_world_event_occurrences_total")).toContain(
      'hybridp2p_world_event_occurrences_total{result="resumed"} 1',
    );

    // Ended by the orchestrator (cancelled): despawned, marked in Redis.
    await put({ ...record, state: "ended", reason: "Cancelled" });
    await stepUntil(b, "invaders gone", () => (simB().eventMobs.size === 0 ? true : undefined));
    await until("ended in Redis", async () =>
      (await b.redis.hget(key, "ended")) === "Cancelled" ? true : undefined,
    );

    // The next occurrence replaces an active one: the old one's mobs go, the new one's come.
    const t = Date.now();
    const next = { ...record, id: `uid-1.${t - 500}`, startsAt: t - 500, endsAt: t + 60_000 };
    await put({ ...next, id: `uid-1.${t - 900}`, startsAt: t - 900, action: { ...record.action, count: 2 } });
    await stepUntil(b, "the first occurrence's two", () => (simB().eventMobs.size === 2 ? true : undefined));
    const first = new Set(simB().eventMobs.values());
    await put(next);
    await stepUntil(b, "the next occurrence's three, alone", () =>
      simB().eventMobs.size === 3 && [...simB().eventMobs.values()].every((tag) => tag === next.id)
        ? true
        : undefined,
    );
    expect(first).toEqual(new Set([`uid-1.${t - 900}`]));

    // An invasion whose invaders are all killed ends on the map (Cleared), and the live report
    // says so for the orchestrator.
    const live: WorldLiveReport[] = [];
    const sub = nc.subscribe(worldSubjects.live(region, zone, map), {
      callback: (_e, m) => {
        live.push(decode<WorldLiveReport>(m.data));
      },
    });
    const session = [...simB().sessions.values()][0]!;
    for (const i of simB().eventMobs.keys())
      pushEvent(simB().arena, simB().bank, i, EV_DAMAGE, session.entity, 100_000, 0);
    await until("cleared and reported", async () => {
      await b.server.step();
      return live.some((r) => r.events[next.id]?.state === "ended" && r.events[next.id]?.reason === "Cleared")
        ? true
        : undefined;
    });
    expect(live.at(-1)!.events[next.id]).toMatchObject({ spawned: 3, killed: 3, alive: 0 });
    sub.unsubscribe();
  });
});
