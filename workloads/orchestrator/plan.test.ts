import { describe, expect, it } from "vitest";
import { occurrenceId, type WorldEventRecord, type WorldLiveReport } from "../../platform/bus/world.ts";
import {
  planEvent,
  type RegionObject,
  type RegionView,
  resolveTargets,
  type WorldEventObject,
  type ZoneObject,
} from "./plan.ts";
import { nextCron, parseCron, previousCron } from "./schedule.ts";

const T0 = Date.parse("2030-01-01T12:00:00Z");
const region = (ns: string, name: string, labels: Record<string, string> = {}): RegionObject => ({
  apiVersion: "hybridp2p.io/v1alpha1",
  kind: "Region",
  metadata: { namespace: ns, name, labels },
});
const zone = (ns: string, name: string, regionName: string, maps: string[], labels = {}): ZoneObject => ({
  apiVersion: "hybridp2p.io/v1alpha1",
  kind: "Zone",
  metadata: { namespace: ns, name, labels },
  spec: { regionRef: { name: regionName }, maps: maps.map((m) => ({ name: m })) },
});
const regions = [
  region("eu", "eu", { tier: "live" }),
  region("us", "us", { tier: "live" }),
  region("x", "x"),
];
const zones = [
  zone("eu", "fields", "eu", ["prt_fild08", "pay_fild01"], { type: "field" }),
  zone("eu", "town", "eu", ["prontera"]),
  zone("us", "fields", "us", ["prt_fild08"], { type: "field" }),
];
const boss = (extra: Partial<WorldEventObject["spec"]> = {}): WorldEventObject => ({
  apiVersion: "hybridp2p.io/v1alpha1",
  kind: "WorldEvent",
  metadata: {
    namespace: "ops",
    name: "baph",
    uid: "u1",
    generation: 1,
    creationTimestamp: new Date(T0).toISOString(),
  },
  spec: {
    type: "Boss",
    boss: { mob: "baphomet" },
    announcement: { message: "Baphomet!" },
    targets: { regionSelector: { matchLabels: { tier: "live" } }, maps: ["prt_fild08"] },
    schedule: { durationSeconds: 600 },
    ...extra,
  },
});
const up = (current?: WorldEventRecord, live: WorldLiveReport[] = []): RegionView => ({
  reachable: true,
  current,
  live,
});
const views = (eu: RegionView, us: RegionView) =>
  new Map([
    ["eu/eu", eu],
    ["us/us", us],
  ]);

describe("cron", () => {
  it("finds the previous and next matches", () => {
    const c = parseCron("30 20 * * 1-5");
    const monday = Date.parse("2030-01-07T10:00:00Z");
    expect(new Date(nextCron(c, monday)!).toISOString()).toBe("2030-01-07T20:30:00.000Z");
    expect(new Date(previousCron(c, monday, 0)!).toISOString()).toBe("2030-01-04T20:30:00.000Z");
    expect(nextCron(parseCron("*/15 * * * *"), Date.parse("2030-01-01T00:14:59Z"))).toBe(
      Date.parse("2030-01-01T00:15:00Z"),
    );
    expect(() => parseCron("61 * * * *")).toThrow(/outside/);
    expect(() => parseCron("* * *")).toThrow(/five fields/);
    expect(nextCron(parseCron("0 0 31 2 *"), T0)).toBeUndefined();
  });
});

describe("planEvent", () => {
  it("resolves Regions by label, zones and maps", () => {
    const t = resolveTargets(boss().spec, regions, zones);
    expect(t.map((r) => [r.namespace, r.name, r.targets])).toEqual([
      ["eu", "eu", [{ zone: "fields", maps: ["prt_fild08"] }]],
      ["us", "us", [{ zone: "fields", maps: ["prt_fild08"] }]],
    ]);
  });

  it("delivers one occurrence to every Region, then nothing more, and ends it on time", () => {
    const ev = boss();
    const p = planEvent(ev, regions, zones, views(up(), up()), T0 + 1000);
    expect([...p.writes.keys()]).toEqual(["eu/eu", "us/us"]);
    const rec = p.writes.get("eu/eu")!;
    expect(rec).toMatchObject({
      id: occurrenceId("u1", T0),
      state: "active",
      startsAt: T0,
      endsAt: T0 + 600_000,
      action: { type: "Boss", mob: "baphomet", count: 1 },
      targets: [{ zone: "fields", maps: ["prt_fild08"] }],
    });
    expect(p.status).toMatchObject({ phase: "Active", activeRegions: 2, targetRegions: 2, occurrences: 1 });
    // A restarted orchestrator reading the records back writes nothing.
    const again = planEvent(ev, regions, zones, views(up(rec), up(p.writes.get("us/us"))), T0 + 5000);
    expect(again.writes.size).toBe(0);
    const end = planEvent(ev, regions, zones, views(up(rec), up(p.writes.get("us/us"))), T0 + 600_000);
    expect(end.writes.get("eu/eu")).toMatchObject({ state: "ended", reason: "Completed" });
    expect(end.status.phase).toBe("Ended");
  });

  it("marks an unreachable Region Failed and catches it up unless the event has ended", () => {
    const ev = boss();
    const down: RegionView = { reachable: false, error: "connection refused", live: [] };
    const p = planEvent(ev, regions, zones, views(up(), down), T0 + 1000);
    expect([...p.writes.keys()]).toEqual(["eu/eu"]);
    const us = p.status.regions!.find((r) => r.name === "us")!;
    expect(us).toMatchObject({ state: "Failed", reason: "BusUnreachable" });
    expect(p.conditions.find((c) => c.type === "Degraded")?.status).toBe("True");
    const back = planEvent(ev, regions, zones, views(up(p.writes.get("eu/eu")), up()), T0 + 2000);
    expect([...back.writes.keys()]).toEqual(["us/us"]);
    const late = planEvent(ev, regions, zones, views(up(), down), T0 + 700_000);
    expect(late.writes.size).toBe(0);
    expect(late.status.regions!.find((r) => r.name === "us")).toMatchObject({
      state: "Ended",
      reason: "Missed",
    });
  });

  it("ends everywhere on cancel", () => {
    const first = planEvent(boss(), regions, zones, views(up(), up()), T0 + 1000);
    const cancelled = boss({ cancelled: true });
    const p = planEvent(
      cancelled,
      regions,
      zones,
      views(up(first.writes.get("eu/eu")), up(first.writes.get("us/us"))),
      T0 + 2000,
    );
    expect(p.writes.get("eu/eu")).toMatchObject({ state: "ended", reason: "Cancelled" });
    expect(p.status.phase).toBe("Ended");
  });

  it("fires a population trigger per Region once enough players play, and only once", () => {
    const ev = boss({ triggers: { population: { minPlayers: 3 } } });
    const live = (players: number): WorldLiveReport[] => [
      { v: 1, zone: "fields", map: "prt_fild08", pod: "p", at: T0, players, events: {} },
    ];
    const few = planEvent(
      ev,
      regions,
      zones,
      views(up(undefined, live(2)), up(undefined, live(0))),
      T0 + 1000,
    );
    expect(few.writes.size).toBe(0);
    expect(few.status.phase).toBe("Waiting");
    const enough = planEvent(
      ev,
      regions,
      zones,
      views(up(undefined, live(3)), up(undefined, live(0))),
      T0 + 2000,
    );
    expect([...enough.writes.keys()]).toEqual(["eu/eu"]);
    const rec = enough.writes.get("eu/eu")!;
    expect(rec).toMatchObject({ startsAt: T0 + 2000, state: "active" });
    const later = planEvent(ev, regions, zones, views(up(rec, live(9)), up(undefined, live(0))), T0 + 3000);
    expect(later.writes.size).toBe(0);
  });

  it("ends an invasion early in a Region once every map reports it cleared", () => {
    const ev = boss({
      type: "Invasion",
      boss: undefined,
      invasion: { mob: "poring", count: 5 },
    });
    const first = planEvent(ev, regions, zones, views(up(), up()), T0 + 1000);
    const rec = first.writes.get("eu/eu")!;
    const cleared: WorldLiveReport[] = [
      {
        v: 1,
        zone: "fields",
        map: "prt_fild08",
        pod: "p",
        at: T0,
        players: 1,
        events: { [rec.id]: { spawned: 5, killed: 5, alive: 0, state: "ended", reason: "Cleared" } },
      },
    ];
    const p = planEvent(
      ev,
      regions,
      zones,
      views(up(rec, cleared), up(first.writes.get("us/us"))),
      T0 + 5000,
    );
    expect(p.writes.get("eu/eu")).toMatchObject({ state: "ended", reason: "Cleared" });
    expect(p.writes.has("us/us")).toBe(false);
    expect(p.status.regions!.map((r) => r.state)).toEqual(["Ended", "Active"]);
  });

  it("runs a cron occurrence and schedules the next", () => {
    const ev = boss({ schedule: { cron: "0 * * * *", durationSeconds: 600 } });
    const during = planEvent(ev, regions, zones, views(up(), up()), T0 + 60_000);
    expect(during.writes.get("eu/eu")).toMatchObject({ startsAt: T0, state: "active" });
    expect(during.status.nextStartTime).toBe("2030-01-01T13:00:00.000Z");
    const bad = planEvent(boss({ schedule: { cron: "99 * * * *" } }), regions, zones, views(up(), up()), T0);
    expect(bad.conditions.find((c) => c.type === "Stalled")).toMatchObject({
      status: "True",
      reason: "InvalidSchedule",
    });
  });
});
