import { describe, expect, it } from "vitest";
import { type AoiFrame, decode, type MapMode, type ZoneEvent } from "../../../platform/bus/contract.ts";
import {
  SCENARIO_SEED,
  SCENARIO_TICKS,
  ScenarioClient,
  scenarioMap,
  scenarioPlayers,
} from "../../../testkit/map-server/scenario.ts";
import { Allocator } from "./arena.ts";
import { generateMap, openMap } from "./maps.ts";
import { MapSim, type PlayerInfo, type Session, type TickResult } from "./world.ts";

const player = (session: string, x: number, y: number, extra: Partial<PlayerInfo> = {}): PlayerInfo => ({
  session,
  characterId: session,
  gateway: "gw",
  p2p: false,
  name: session,
  x,
  y,
  hp: 100,
  maxHp: 100,
  atk: 10,
  exp: 0,
  zeny: 0,
  ...extra,
});

function viewOf(r: TickResult, session: string) {
  for (const f of r.frames.map((x) => decode<AoiFrame>(x.data))) {
    const v = f.views.find((x) => x.session === session);
    if (v) return { f, v };
  }
  return undefined;
}

function runScenario(mode: MapMode, slices = 1) {
  const sim = new MapSim(scenarioMap(), { capacity: 64, seed: SCENARIO_SEED });
  sim.setMode(mode);
  const clients = scenarioPlayers().map((p) => {
    const c = new ScenarioClient(p, sim.params.tickHz);
    const s = sim.join(p);
    c.joined(s.entity, p.x!, p.y!);
    return c;
  });
  const events: ZoneEvent[] = [];
  for (let t = 0; t < SCENARIO_TICKS; t++) {
    for (const c of clients) for (const i of c.inputs(t, mode)) sim.input(i);
    const r = sim.stepInline(slices);
    events.push(...r.events);
    for (const c of clients) {
      const got = viewOf(r, c.info.session);
      if (got) c.observe(got.f, got.v);
    }
  }
  return { sim, clients, events };
}

describe("map simulation", () => {
  it("allocates from a free list and reuses released slots", () => {
    const al = new Allocator(3);
    expect([al.alloc(), al.alloc(), al.alloc(), al.alloc()]).toEqual([0, 1, 2, undefined]);
    al.release(1);
    expect(al.alloc()).toBe(1);
    expect(al.highWater).toBe(3);
  });

  it("restores sessions under their previous entity ids after a handover", () => {
    const def = () => openMap("m", 40, 40, { mobs: [{ type: 0, count: 3 }] });
    const first = new MapSim(def(), { capacity: 16, seed: 5 });
    for (const s of ["a", "b", "c"]) first.join(player(s, 10.5, 10.5));
    first.leave("b");
    const saved = [...first.sessions.values()].map((s) => ({ ...s, ...first.playerState(s) }));
    const next = new MapSim(def(), { capacity: 16, seed: 5 });
    next.restore(saved);
    expect([...next.sessions.values()].map((s) => [s.session, s.entity])).toEqual(
      [...first.sessions.values()].map((s) => [s.session, s.entity]),
    );
    // A new player takes a free slot, not one of theirs.
    const d = next.join(player("d", 11.5, 11.5));
    expect([...first.sessions.values()].map((s) => s.entity)).not.toContain(d.entity);
  });

  it("is deterministic for a seed and independent of how entities are split across workers", () => {
    const run = (slices: number) => {
      const sim = new MapSim(generateMap("prt_fild08", { width: 120, height: 120, mobs: 300 }), {
        capacity: 400,
        seed: 3,
      });
      sim.join(player("a", 60.5, 60.5));
      for (let t = 0; t < 100; t++) sim.stepInline(slices);
      return sim.digest();
    };
    const one = run(1);
    expect(run(1)).toBe(one);
    expect(run(3)).toBe(one);
    // Mobs wandered.
    const sim = new MapSim(generateMap("prt_fild08", { width: 120, height: 120, mobs: 300 }), {
      capacity: 400,
      seed: 3,
    });
    const before = sim.digest();
    for (let t = 0; t < 100; t++) sim.stepInline();
    expect(sim.digest()).not.toBe(before);
  }, 60_000);

  it("walks players at the speed cap and rejects impossible moves", () => {
    const walls: Array<[number, number]> = [];
    for (let y = 0; y < 40; y++) walls.push([20, y]);
    const sim = new MapSim(openMap("m", 40, 40, { walls }), { capacity: 8 });
    sim.join(player("a", 10.5, 10.5));
    sim.input({ s: "a", seq: 1, k: "move", x: 15, y: 10 });
    const r = sim.stepInline();
    const s = sim.sessions.get("a")!;
    expect(sim.playerState(s).x).toBeCloseTo(10.5 + 1000 / 150 / 20, 6);
    expect(viewOf(r, "a")?.v.corrections).toBeUndefined();
    for (let t = 0; t < 40; t++) sim.stepInline();
    expect(sim.playerState(s).x).toBe(15.5);

    // Through a wall, into a wall, off the map, too far.
    sim.input({ s: "a", seq: 2, k: "move", x: 25, y: 10 });
    sim.input({ s: "a", seq: 3, k: "move", x: 20, y: 12 });
    sim.input({ s: "a", seq: 4, k: "move", x: -5, y: 10 });
    sim.input({ s: "a", seq: 5, k: "move", x: 15, y: 39 });
    const r2 = sim.stepInline();
    const corr = viewOf(r2, "a")!.v.corrections!;
    expect(corr.map((c) => [c.seq, c.kind])).toEqual([
      [2, "reject"],
      [3, "reject"],
      [4, "reject"],
      [5, "reject"],
    ]);
    for (let t = 0; t < 40; t++) sim.stepInline();
    expect(sim.playerState(s)).toMatchObject({ x: 15.5, y: 10.5 });
  });

  it("accepts P2P position reports within bounds, smooths small excesses and snaps cheats", () => {
    const walls: Array<[number, number]> = [];
    for (let y = 0; y < 40; y++) walls.push([20, y]);
    const sim = new MapSim(openMap("m", 40, 40, { walls }), { capacity: 8 });
    sim.join(player("p", 10.5, 10.5, { p2p: true }));
    sim.join(player("legacy", 12.5, 12.5));
    const s = sim.sessions.get("p")!;
    const step = 1000 / 150 / 20;

    // Server mode: reports are not accepted at all.
    sim.input({ s: "p", seq: 1, k: "pos", x: 10.5 + step, y: 10.5 });
    let r = sim.stepInline();
    expect(viewOf(r, "p")!.v.corrections![0]).toMatchObject({ seq: 1, kind: "reject", x: 10.5 });

    sim.setMode("p2p");
    sim.input({ s: "p", seq: 2, k: "pos", x: 10.5 + step, y: 10.5 });
    r = sim.stepInline();
    expect(viewOf(r, "p")?.v.corrections).toBeUndefined();
    expect(sim.playerState(s).x).toBe(10.5 + step);

    // A bit too fast: moved as far as allowed toward the report.
    const x0 = sim.playerState(s).x;
    sim.input({ s: "p", seq: 3, k: "pos", x: x0 + 1, y: 10.5 });
    r = sim.stepInline();
    const smooth = viewOf(r, "p")!.v.corrections![0]!;
    expect(smooth).toMatchObject({ seq: 3, kind: "smooth", reason: "speed cap exceeded" });
    expect(sim.playerState(s).x).toBeGreaterThan(x0);
    expect(sim.playerState(s).x).toBeLessThan(x0 + 0.5);

    // Teleport: snapped back.
    const x1 = sim.playerState(s).x;
    sim.input({ s: "p", seq: 4, k: "pos", x: x1 + 8, y: 10.5 });
    r = sim.stepInline();
    expect(viewOf(r, "p")!.v.corrections![0]).toMatchObject({ seq: 4, kind: "snap" });
    expect(sim.playerState(s).x).toBe(x1);

    // Into a wall, one step away: snapped.
    sim.join(player("w", 19.6, 5.5, { p2p: true }));
    sim.input({ s: "w", seq: 1, k: "pos", x: 20.1, y: 5.5 });
    r = sim.stepInline();
    expect(viewOf(r, "w")!.v.corrections![0]).toMatchObject({
      seq: 1,
      kind: "snap",
      reason: "blocked or out of bounds",
    });

    // A legacy client cannot report positions even in p2p mode.
    sim.input({ s: "legacy", seq: 1, k: "pos", x: 12.6, y: 12.5 });
    r = sim.stepInline();
    expect(viewOf(r, "legacy")!.v.corrections![0]).toMatchObject({ kind: "reject" });
  });

  it("sends AOI enter, update and leave with a 14-cell view", () => {
    const sim = new MapSim(openMap("m", 100, 100), { capacity: 8 });
    sim.join(player("a", 10.5, 10.5));
    sim.join(player("b", 40.5, 10.5, { gateway: "gw2" }));
    sim.stepInline();
    let r = sim.stepInline();
    // b walks into a's view.
    sim.input({ s: "b", seq: 1, k: "move", x: 20, y: 10 });
    let entered = false;
    for (let t = 0; t < 120 && !entered; t++) {
      r = sim.stepInline();
      const got = viewOf(r, "a");
      if (got?.v.enter.some((idx) => got.f.ents[idx]!.name === "b")) {
        entered = true;
        const e = got.f.ents.find((x) => x.name === "b")!;
        expect(Math.abs(e.x - 10.5)).toBeLessThanOrEqual(14);
      }
    }
    expect(entered).toBe(true);
    // Moving inside the view produces updates for a; then b leaves again.
    sim.input({ s: "b", seq: 2, k: "move", x: 40, y: 10 });
    r = sim.stepInline();
    r = sim.stepInline();
    expect(viewOf(r, "a")!.v.update.length).toBeGreaterThan(0);
    let left = false;
    const bId = sim.sessions.get("b")!.entity;
    for (let t = 0; t < 120 && !left; t++)
      left = viewOf(sim.stepInline(), "a")?.v.leave.includes(bId) ?? false;
    expect(left).toBe(true);
    // Separate frames per gateway.
    // One frame per gateway (one slice here), and the frames say which gateway's sessions they carry.
    const frames = sim.stepInline().frames;
    expect(frames.length).toBeLessThanOrEqual(2);
    expect(new Set(frames.map((f) => f.gateway)).size).toBe(frames.length);
  });

  it("keeps views consistent when view building moves between workers", () => {
    const sim = new MapSim(openMap("m", 100, 100), { capacity: 1024 });
    // Entities far apart in index space, so two slices own them.
    const [a, b] = sim.restore([
      { ...player("a", 10.5, 10.5), entity: 0 },
      { ...player("b", 12.5, 10.5), entity: 300 },
    ]) as [Session, Session];
    const entered = (r: TickResult, who: string, id: number) => {
      const got = viewOf(r, who);
      return got?.v.enter.some((i) => got.f.ents[i]!.id === id) ?? false;
    };
    let sawB = false;
    for (let t = 0; t < 3; t++) sawB ||= entered(sim.stepInline(2), "a", b.entity);
    expect(sawB).toBe(true);
    // A second gateway: views are now built per gateway, by other workers. No re-entering.
    sim.restore([{ ...player("c", 80.5, 80.5, { gateway: "gw2" }), entity: 600 }]);
    expect(sim.aoiByGateway(2)).toBe(true);
    sim.input({ s: "b", seq: 1, k: "move", x: 14, y: 10 });
    for (let t = 0; t < 20; t++) {
      const r = sim.stepInline(2);
      expect(entered(r, "a", b.entity)).toBe(false);
      expect(entered(r, "b", a.entity)).toBe(false);
    }
    // And a move to another gateway shows the whole view again, to the new gateway.
    sim.moveSession("a", "gw2");
    const r = sim.stepInline(2);
    expect(entered(r, "a", b.entity)).toBe(true);
    expect(r.frames.find((f) => decode<AoiFrame>(f.data).views.some((v) => v.session === "a"))?.gateway).toBe(
      "gw2",
    );
  });

  it("lets players fight mobs that fight back, with loot for the killer", () => {
    const sim = new MapSim(openMap("m", 40, 40, { mobs: [{ type: 0, count: 1, at: [[11, 10]] }] }), {
      capacity: 8,
    });
    sim.join(player("a", 10.5, 10.5, { atk: 20 }));
    const events: ZoneEvent[] = [];
    sim.input({ s: "a", seq: 1, k: "attack", target: 0 });
    for (let t = 0; t < 200; t++) events.push(...sim.stepInline().events);
    const kinds = new Set(events.map((e) => e.k));
    expect(kinds).toEqual(new Set(["hit", "death", "loot", "respawn"]));
    expect(events.some((e) => e.k === "hit" && e.from === 0)).toBe(true); // the poring hit back
    const s = sim.sessions.get("a")!;
    expect(s.exp).toBeGreaterThan(0);
    expect(s.zeny).toBeGreaterThan(0);
  });

  it("ends the scenario in the same world in server and in P2P mode", () => {
    const server = runScenario("server");
    const p2p = runScenario("p2p");
    expect(p2p.sim.digest()).toBe(server.sim.digest());
    expect(runScenario("p2p", 2).sim.digest()).toBe(server.sim.digest());
    // It did what it says: chat heard, mobs killed, nobody corrected.
    expect(server.events.filter((e) => e.k === "chat").length).toBe(6);
    expect(server.events.filter((e) => e.k === "loot").length).toBeGreaterThan(0);
    expect(p2p.clients.map((c) => c.corrections)).toEqual([0, 0, 0]);
    expect(server.clients.map((c) => c.corrections)).toEqual([0, 0, 0]);
    expect(p2p.events.map((e) => e.k)).toEqual(server.events.map((e) => e.k));
  }, 60_000);

  it("emits one warp event per step onto a portal, to the player alone", () => {
    const def = openMap("portals", 40, 40, {
      warps: [{ x: 12, y: 10, to: { map: "elsewhere", x: 5, y: 6 } }],
    });
    const sim = new MapSim(def, { capacity: 16, seed: 1 });
    sim.join(player("a", 10.5, 10.5));
    sim.join(player("b", 11.5, 11.5));
    const warps: ZoneEvent[] = [];
    const run = (ticks: number) => {
      for (let t = 0; t < ticks; t++) warps.push(...sim.stepInline().events.filter((e) => e.k === "warp"));
    };
    sim.input({ s: "a", seq: 1, k: "move", x: 12, y: 10 });
    run(40); // there, and standing on it
    expect(warps).toEqual([{ k: "warp", session: "a", map: "elsewhere", x: 5, y: 6, to: ["a"] }]);
    sim.input({ s: "a", seq: 2, k: "move", x: 14, y: 10 });
    run(40);
    sim.input({ s: "a", seq: 3, k: "move", x: 12, y: 10 });
    run(40); // off and on again: once more
    expect(warps).toHaveLength(2);
  });
});
