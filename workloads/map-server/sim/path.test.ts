// RO cell paths and rAthena's map cache: the path search, walking it in the simulation, and
// real cells from a map_cache.dat.
import { describe, expect, it } from "vitest";
import { mapFromCache, mapSource, parseMapCache, writeMapCache } from "./mapcache.ts";
import { isWalkable, openMap } from "./maps.ts";
import { findCellPath, waypoints } from "./path.ts";
import { MapSim, type PlayerInfo } from "./world.ts";

const player = (session: string, x: number, y: number): PlayerInfo => ({
  session,
  characterId: session,
  gateway: "gw",
  p2p: false,
  name: session,
  x,
  y,
  hp: 100,
  maxHp: 100,
  atk: 5,
  exp: 0,
  zeny: 0,
});

/** A wall along x = 10 from y = 1 to y = 15, open at y = 16. */
const walled = () =>
  openMap("walled", 24, 24, { walls: Array.from({ length: 15 }, (_, k) => [10, k + 1] as [number, number]) });

describe("cell paths", () => {
  it("go around a wall in eight directions and never cut a corner", () => {
    const g = walled();
    const path = findCellPath(g, 5, 8, 15, 8)!;
    expect(path[0]).toEqual([5, 8]);
    expect(path.at(-1)).toEqual([15, 8]);
    for (let k = 1; k < path.length; k++) {
      const [x0, y0] = path[k - 1]!;
      const [x1, y1] = path[k]!;
      expect(Math.max(Math.abs(x1 - x0), Math.abs(y1 - y0))).toBe(1);
      expect(isWalkable(g, x1, y1)).toBe(true);
      if (x1 !== x0 && y1 !== y0) expect(isWalkable(g, x1, y0) && isWalkable(g, x0, y1)).toBe(true);
    }
    expect(path.some(([x, y]) => x === 10 && y === 16)).toBe(true);
  });

  it("are refused beyond 32 cells and to blocked or closed-off cells", () => {
    const g = openMap("open", 80, 80);
    expect(findCellPath(g, 2, 2, 40, 2)).toBeUndefined();
    expect(findCellPath(g, 2, 2, 0, 0)).toBeUndefined();
    const boxed = openMap("boxed", 20, 20, {
      walls: [
        [9, 9],
        [10, 9],
        [11, 9],
        [9, 10],
        [11, 10],
        [9, 11],
        [10, 11],
        [11, 11],
      ],
    });
    expect(findCellPath(boxed, 2, 2, 10, 10)).toBeUndefined();
  });

  it("become as few straight segments as stay walkable", () => {
    const g = walled();
    const wps = waypoints(g, findCellPath(g, 5, 8, 15, 8)!);
    expect(wps.length).toBeGreaterThanOrEqual(2);
    expect(wps.length).toBeLessThan(6);
    expect(wps.at(-1)).toEqual([15, 8]);
  });

  it("are walked by the simulation: a move behind a wall arrives instead of being refused", () => {
    const sim = new MapSim(walled(), { capacity: 8 });
    sim.join(player("a", 5.5, 8.5));
    sim.input({ s: "a", seq: 1, k: "move", x: 15, y: 8 });
    let rejected = 0;
    for (let t = 0; t < 200; t++) {
      const r = sim.stepInline();
      rejected += r.stats.corrections[2];
    }
    expect(rejected).toBe(0);
    const st = sim.playerState(sim.sessions.get("a")!);
    expect([st.x, st.y]).toEqual([15.5, 8.5]);
  });
});

describe("rAthena map cache", () => {
  // gat types: 0 ground, 1 blocked, 3 water (walkable), 5 gap (blocked).
  const gat = (w: number, h: number, f: (x: number, y: number) => number) => {
    const g = new Uint8Array(w * h);
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) g[y * w + x] = f(x, y);
    return g;
  };
  const file = writeMapCache([
    {
      name: "prt_fild08",
      width: 20,
      height: 10,
      gat: gat(20, 10, (x) => (x === 4 ? 1 : x === 6 ? 5 : x === 8 ? 3 : 0)),
    },
    { name: "tiny", width: 3, height: 2, gat: gat(3, 2, () => 0) },
    { name: "tiny", width: 4, height: 4, gat: gat(4, 4, () => 1) },
  ]);

  it("reads a header of 8 bytes, 20-byte map headers and zlib cells, first name wins", () => {
    expect(file.readUInt32LE(0)).toBe(file.length);
    const maps = parseMapCache(file);
    expect([...maps.keys()]).toEqual(["prt_fild08", "tiny"]);
    const m = maps.get("prt_fild08")!;
    expect([m.width, m.height]).toEqual([20, 10]);
    // Blocked: gat 1 and 5; walkable: 0 and water (3).
    expect([m.walkable[4], m.walkable[6], m.walkable[8], m.walkable[0]]).toEqual([0, 0, 1, 1]);
    expect(maps.get("tiny")!.width).toBe(3);
  });

  it("fails loudly on a truncated or mislabelled file", () => {
    expect(() => parseMapCache(file.subarray(0, file.length - 1))).toThrow(/header says/);
    const bad = Buffer.from(file);
    bad.writeUInt16LE(5, 4);
    expect(() => parseMapCache(bad)).toThrow(/ends inside/);
    const wrongSize = Buffer.from(file);
    wrongSize.writeInt16LE(21, 8 + 12);
    expect(() => parseMapCache(wrongSize)).toThrow(/cells/);
  });

  it("gives the simulation the real cells (cached maps first, generated ones otherwise)", () => {
    const maps = parseMapCache(file);
    const def = mapFromCache(maps.get("prt_fild08")!);
    expect(isWalkable(def, 4, 3)).toBe(false);
    expect(isWalkable(def, 8, 3)).toBe(true);
    expect(isWalkable(def, def.spawn[0], def.spawn[1])).toBe(true);
    const source = mapSource(maps);
    expect(source("prt_fild08").width).toBe(20);
    expect(source("geffen").width).toBe(240);
    // The blocked column runs the whole height: no path across, the walk is refused.
    const sim = new MapSim(def, { capacity: 8 });
    sim.join(player("a", 2.5, 5.5));
    sim.input({ s: "a", seq: 1, k: "move", x: 12, y: 5 });
    let rejected = 0;
    for (let t = 0; t < 40; t++) rejected += sim.stepInline().stats.corrections[2];
    expect(rejected).toBe(1);
    expect(sim.playerState(sim.sessions.get("a")!).x).toBe(2.5);
  });
});
