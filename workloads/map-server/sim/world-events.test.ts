// World events in the simulation: event mobs enter views through the normal AOI path, never
// respawn and leave once dead or despawned; rates multiply the loot; announcements are zone
// events for the map's sessions.
import { describe, expect, it } from "vitest";
import { type AoiFrame, decode, type ZoneEvent } from "../../../platform/bus/contract.ts";
import { WORLD_EVENT_MOBS } from "../../../platform/bus/world.ts";
import { MOB_TYPES, openMap } from "./maps.ts";
import { MapSim, type PlayerInfo } from "./world.ts";

const player = (session: string, x: number, y: number, atk = 10): PlayerInfo => ({
  session,
  characterId: session,
  gateway: "gw",
  p2p: false,
  name: session,
  x,
  y,
  hp: 100_000,
  maxHp: 100_000,
  atk,
  exp: 0,
  zeny: 0,
});

function seen(sim: MapSim, ticks: number, session: string, into: Map<number, string>, events: ZoneEvent[]) {
  for (let t = 0; t < ticks; t++) {
    const r = sim.stepInline();
    events.push(...r.events);
    for (const f of r.frames.map((x) => decode<AoiFrame>(x.data))) {
      const v = f.views.find((x) => x.session === session);
      if (!v) continue;
      for (const k of v.enter) into.set(f.ents[k]!.id, f.ents[k]!.name);
      for (const id of v.leave) into.delete(id);
    }
  }
}

describe("world events in the simulation", () => {
  it("knows every mob a WorldEvent may name", () => {
    for (const mob of WORLD_EVENT_MOBS)
      expect(
        MOB_TYPES.some((m) => m.name === mob),
        mob,
      ).toBe(true);
  });

  it("spawns event mobs into views, never respawns them, and despawns them", () => {
    const sim = new MapSim(openMap("evt", 48, 48), { capacity: 64, seed: 3 });
    sim.join(player("a", 20.5, 20.5));
    const view = new Map<number, string>();
    const events: ZoneEvent[] = [];
    seen(sim, 2, "a", view, events);
    const osiris = MOB_TYPES.findIndex((m) => m.name === "osiris");
    const [boss] = sim.spawnEventMobs("occ-1", osiris, 1, [24, 20]);
    const porings = sim.spawnEventMobs("occ-2", 0, 3, [22, 22]);
    expect(boss).toBeDefined();
    expect(porings).toHaveLength(3);
    seen(sim, 2, "a", view, events);
    expect(view.get(boss!)).toBe("osiris");
    for (const p of porings) expect(view.get(p)).toBe("poring");
    // A killed event mob never comes back and leaves the view with its corpse.
    const deaths: string[] = [];
    sim.onEventMobDeath = (tag) => deaths.push(tag);
    sim.arena.hp[sim.bank * sim.arena.capacity + porings[0]!] = 1;
    sim.input({ s: "a", seq: 1, k: "attack", target: porings[0]! });
    seen(sim, 200, "a", view, events);
    expect(deaths).toEqual(["occ-2"]);
    expect(events.some((e) => e.k === "respawn" && e.entity === porings[0])).toBe(false);
    expect(view.has(porings[0]!)).toBe(false);
    // Despawning an occurrence removes its mobs from views.
    expect(sim.despawnEvent("occ-2")).toBe(2);
    seen(sim, 2, "a", view, events);
    for (const p of porings) expect(view.has(p)).toBe(false);
    expect(view.get(boss!)).toBe("osiris");
  });

  it("multiplies experience and zeny by the rates and announces to the map", () => {
    const sim = new MapSim(openMap("evt", 48, 48, { mobs: [{ type: 0, count: 1, at: [[21, 20]] }] }), {
      capacity: 64,
      seed: 3,
    });
    sim.join(player("a", 20.5, 20.5, 500));
    sim.join(player("b", 40.5, 40.5));
    sim.expRate = 3;
    sim.dropRate = 2;
    sim.announce("occ", "A poring feast!");
    const events: ZoneEvent[] = [];
    sim.input({ s: "a", seq: 1, k: "attack", target: 0 });
    seen(sim, 40, "a", new Map(), events);
    const loot = events.find((e) => e.k === "loot");
    expect(loot).toMatchObject({ exp: MOB_TYPES[0]!.exp * 3, zeny: MOB_TYPES[0]!.zeny * 2 });
    expect(events.filter((e) => e.k === "announce")).toEqual([
      { k: "announce", event: "occ", text: "A poring feast!", to: ["a", "b"] },
    ]);
  });
});
