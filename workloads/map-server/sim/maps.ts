// Map geometry and spawn tables. A map is a grid of cells, walkable or not (rAthena's gat
// files, reduced to one bit). Without real map data, a map's walls are generated from its name,
// so every pod that owns a map sees the same geometry and tests are reproducible.

/** rAthena's numbers: 8-cell blocks for the area-of-interest grid, a 14-cell view. */
export const BLOCK_SIZE = 8;
export const VIEW_RANGE = 14;

export interface MobType {
  name: string;
  hp: number;
  atk: number;
  /** Cells per second. */
  speed: number;
  /** Attacks players on sight (otherwise it only fights back). */
  aggressive: boolean;
  exp: number;
  zeny: number;
}

/** A few of rAthena's early mobs, rounded. Index = mob type id in the arena. */
export const MOB_TYPES: readonly MobType[] = [
  { name: "poring", hp: 50, atk: 4, speed: 2.5, aggressive: false, exp: 2, zeny: 5 },
  { name: "lunatic", hp: 60, atk: 6, speed: 3.3, aggressive: false, exp: 3, zeny: 7 },
  { name: "wolf", hp: 120, atk: 10, speed: 5, aggressive: true, exp: 8, zeny: 15 },
  // Invaders and bosses of world events (never on a map's own spawn table).
  { name: "orc_warrior", hp: 300, atk: 14, speed: 3.3, aggressive: true, exp: 30, zeny: 40 },
  { name: "orc_lord", hp: 1500, atk: 30, speed: 3.3, aggressive: true, exp: 300, zeny: 500 },
  { name: "baphomet", hp: 3000, atk: 45, speed: 4, aggressive: true, exp: 800, zeny: 1500 },
  { name: "osiris", hp: 2500, atk: 35, speed: 2.5, aggressive: true, exp: 600, zeny: 1200 },
  // A boss that only fights back (RO's angeling): for events among new players.
  { name: "angeling", hp: 1500, atk: 20, speed: 2.5, aggressive: false, exp: 200, zeny: 400 },
];

export interface MobSpawn {
  type: number;
  count: number;
  /** Fixed spawn cells (tests); otherwise random walkable cells from the map's seed. */
  at?: Array<[number, number]>;
}

/** A portal cell (rAthena's `warp` NPCs): stepping on it takes the player to `to`. */
export interface Warp {
  x: number;
  y: number;
  to: { map: string; x: number; y: number };
}

export interface MapDef {
  name: string;
  width: number;
  height: number;
  /** width*height cells, row-major, 1 = walkable. */
  walkable: Uint8Array;
  /** Where characters without a valid position appear. */
  spawn: [number, number];
  mobs: MobSpawn[];
  warps: Warp[];
}

export function isWalkable(
  def: Pick<MapDef, "width" | "height" | "walkable">,
  x: number,
  y: number,
): boolean {
  const cx = Math.floor(x);
  const cy = Math.floor(y);
  if (cx < 0 || cy < 0 || cx >= def.width || cy >= def.height) return false;
  return def.walkable[cy * def.width + cx] === 1;
}

/** Every cell touched by the segment is walkable (sampled every quarter cell). */
export function lineWalkable(
  def: Pick<MapDef, "width" | "height" | "walkable">,
  x0: number,
  y0: number,
  x1: number,
  y1: number,
): boolean {
  const steps = Math.max(1, Math.ceil(Math.max(Math.abs(x1 - x0), Math.abs(y1 - y0)) * 4));
  for (let i = 0; i <= steps; i++) {
    const t = i / steps;
    if (!isWalkable(def, x0 + (x1 - x0) * t, y0 + (y1 - y0) * t)) return false;
  }
  return true;
}

/** mulberry32: a tiny seeded PRNG; the same seed always gives the same sequence. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** FNV-1a of a string, for seeds derived from names. */
export function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** Known sizes of a few rAthena maps; anything else is 256x256. */
const SIZES: Record<string, [number, number]> = {
  prontera: [312, 392],
  prt_fild08: [400, 400],
  prt_fild07: [400, 400],
  geffen: [240, 240],
  payon: [300, 300],
};

/** A few of rAthena's portals (Prontera's south gate and back); the cells around them stay open. */
const WARPS: Record<string, Warp[]> = {
  prontera: [{ x: 156, y: 22, to: { map: "prt_fild08", x: 170, y: 375 } }],
  prt_fild08: [{ x: 170, y: 380, to: { map: "prontera", x: 156, y: 27 } }],
};

/** Maps treated as towns: no mobs. */
const TOWNS = new Set(["prontera", "geffen", "payon", "morocc", "alberta", "izlude"]);

export interface GenerateOptions {
  width?: number;
  height?: number;
  /** Mobs per map (fields only); default one per 400 cells. */
  mobs?: number;
  /** Density of wall rectangles, per 10k cells. Default 2. */
  walls?: number;
}

/** A map from its name: bordered by walls, with a few wall blocks inside, deterministic. */
export function generateMap(name: string, opts: GenerateOptions = {}): MapDef {
  const [w0, h0] = SIZES[name] ?? [256, 256];
  const width = opts.width ?? w0;
  const height = opts.height ?? h0;
  const walkable = new Uint8Array(width * height).fill(1);
  for (let x = 0; x < width; x++) {
    walkable[x] = 0;
    walkable[(height - 1) * width + x] = 0;
  }
  for (let y = 0; y < height; y++) {
    walkable[y * width] = 0;
    walkable[y * width + width - 1] = 0;
  }
  const rand = rng(hashString(name));
  const spawn: [number, number] = [Math.floor(width / 2), Math.floor(height / 2)];
  const walls = Math.round(((opts.walls ?? 2) * width * height) / 10_000);
  for (let i = 0; i < walls; i++) {
    const ww = 2 + Math.floor(rand() * 10);
    const wh = 2 + Math.floor(rand() * 10);
    const x0 = 1 + Math.floor(rand() * (width - ww - 2));
    const y0 = 1 + Math.floor(rand() * (height - wh - 2));
    // Keep the spawn point and its surroundings open.
    if (Math.abs(x0 - spawn[0]) < 16 && Math.abs(y0 - spawn[1]) < 16) continue;
    for (let y = y0; y < y0 + wh; y++) walkable.fill(0, y * width + x0, y * width + x0 + ww);
  }
  const warps = (WARPS[name] ?? []).filter((w) => w.x > 2 && w.y > 2 && w.x < width - 3 && w.y < height - 3);
  // Portals and where they lead stay reachable.
  for (const [cx, cy] of [
    ...warps.map((w) => [w.x, w.y]),
    ...Object.values(WARPS)
      .flat()
      .filter((w) => w.to.map === name)
      .map((w) => [w.to.x, w.to.y]),
  ])
    for (let y = Math.max(1, cy! - 3); y <= Math.min(height - 2, cy! + 3); y++)
      walkable.fill(1, y * width + Math.max(1, cx! - 3), y * width + Math.min(width - 1, cx! + 4));
  const mobCount = TOWNS.has(name) ? 0 : (opts.mobs ?? Math.floor((width * height) / 400));
  const mobs: MobSpawn[] =
    mobCount === 0
      ? []
      : [
          { type: 0, count: Math.ceil(mobCount * 0.5) },
          { type: 1, count: Math.ceil(mobCount * 0.3) },
          { type: 2, count: mobCount - Math.ceil(mobCount * 0.5) - Math.ceil(mobCount * 0.3) },
        ].filter((m) => m.count > 0);
  return { name, width, height, walkable, spawn, mobs, warps };
}

/** An open rectangular map (tests): walls only on the border and where asked. */
export function openMap(
  name: string,
  width: number,
  height: number,
  extra: {
    walls?: Array<[number, number]>;
    mobs?: MobSpawn[];
    spawn?: [number, number];
    warps?: Warp[];
  } = {},
): MapDef {
  const def = generateMap(name, { width, height, mobs: 0, walls: 0 });
  def.warps = extra.warps ?? [];
  for (const [x, y] of extra.walls ?? []) def.walkable[y * width + x] = 0;
  def.mobs = extra.mobs ?? [];
  if (extra.spawn) def.spawn = extra.spawn;
  return def;
}
