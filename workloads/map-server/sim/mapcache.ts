// rAthena's map cache (db/map_cache.dat): real map cells for the simulation, when a Region
// points at one. Layout (rAthena src/map/map.cpp, map_cache_main_header / map_cache_map_info):
//
//   header   u32 file_size, u16 map_count, 2 bytes of struct padding      (8 bytes)
//   per map  char name[12], i16 xs, i16 ys, i32 len                        (20 bytes, unpadded)
//            then len bytes of zlib-compressed cells: xs*ys bytes, row-major from y = 0
//
// Each cell byte is a gat cell type, not a flag: 1 (non-walkable ground) and 5 (a gap you can
// shoot across) block, 0, 2, 3 (water), 4 and 6 are walkable (rAthena's map_gat2cell). Within a
// file the first map of a name wins, as in map_readfromcache. Parsing checks every length and
// the decompressed size against xs*ys, so a file read at a wrong offset fails loudly.
import { deflateSync, inflateSync } from "node:zlib";
import { generateMap, isWalkable, type MapDef } from "./maps.ts";

const HEADER = 8;
const MAP_INFO = 20;
const NAME = 12;
const BLOCKED = new Set([1, 5]);

export interface CachedMap {
  name: string;
  width: number;
  height: number;
  /** width*height cells, row-major, 1 = walkable (MapDef.walkable). */
  walkable: Uint8Array;
}

export function parseMapCache(raw: Uint8Array): Map<string, CachedMap> {
  const buf = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
  if (buf.length < HEADER) throw new Error(`map cache too short: ${buf.length} bytes`);
  const fileSize = buf.readUInt32LE(0);
  const count = buf.readUInt16LE(4);
  if (fileSize !== buf.length)
    throw new Error(`map cache header says ${fileSize} bytes, the file has ${buf.length}`);
  const out = new Map<string, CachedMap>();
  let o = HEADER;
  for (let i = 0; i < count; i++) {
    if (o + MAP_INFO > buf.length) throw new Error(`map cache ends inside the header of map ${i}`);
    const rawName = buf.subarray(o, o + NAME);
    const nul = rawName.indexOf(0);
    const name = rawName.subarray(0, nul < 0 ? NAME : nul).toString("latin1");
    const width = buf.readInt16LE(o + 12);
    const height = buf.readInt16LE(o + 14);
    const len = buf.readInt32LE(o + 16);
    o += MAP_INFO;
    if (width <= 0 || height <= 0 || len < 0 || o + len > buf.length)
      throw new Error(`map cache entry ${i} (${name}) is malformed`);
    let cells: Buffer;
    try {
      cells = inflateSync(buf.subarray(o, o + len));
    } catch (err) {
      throw new Error(`map cache entry ${i} (${name}): cells are not zlib data (${(err as Error).message})`);
    }
    o += len;
    if (cells.length !== width * height)
      throw new Error(`map cache entry ${i} (${name}): ${cells.length} cells, ${width}x${height} expected`);
    if (out.has(name)) continue;
    const walkable = new Uint8Array(cells.length);
    for (let k = 0; k < cells.length; k++) walkable[k] = BLOCKED.has(cells[k]!) ? 0 : 1;
    out.set(name, { name, width, height, walkable });
  }
  if (o !== buf.length) throw new Error(`map cache has ${buf.length - o} bytes after its ${count} maps`);
  return out;
}

/** Writes a map cache (tests and tools): gat cell types per map, zlib-compressed. */
export function writeMapCache(
  maps: Array<{ name: string; width: number; height: number; gat: Uint8Array }>,
): Buffer {
  const parts: Buffer[] = [];
  for (const m of maps) {
    const info = Buffer.alloc(MAP_INFO);
    info.write(m.name.slice(0, NAME - 1), 0, "latin1");
    info.writeInt16LE(m.width, 12);
    info.writeInt16LE(m.height, 14);
    const cells = deflateSync(m.gat);
    info.writeInt32LE(cells.length, 16);
    parts.push(info, cells);
  }
  const body = Buffer.concat(parts);
  const head = Buffer.alloc(HEADER);
  head.writeUInt32LE(HEADER + body.length, 0);
  head.writeUInt16LE(maps.length, 4);
  return Buffer.concat([head, body]);
}

/**
 * A map definition from cached cells: the real geometry, with the generated map's spawn table,
 * portals and mobs (placed on walkable cells); the spawn point moves to the nearest walkable cell.
 */
export function mapFromCache(c: CachedMap): MapDef {
  const gen = generateMap(c.name, { width: c.width, height: c.height });
  const def: MapDef = { ...gen, width: c.width, height: c.height, walkable: c.walkable };
  def.spawn = nearestWalkable(def, gen.spawn[0], gen.spawn[1]) ?? gen.spawn;
  def.warps = gen.warps.filter((w) => isWalkable(def, w.x, w.y));
  return def;
}

function nearestWalkable(def: MapDef, x: number, y: number): [number, number] | undefined {
  const max = Math.max(def.width, def.height);
  for (let r = 0; r < max; r++)
    for (let dy = -r; dy <= r; dy++)
      for (let dx = -r; dx <= r; dx++) {
        if (Math.max(Math.abs(dx), Math.abs(dy)) !== r) continue;
        if (isWalkable(def, x + dx, y + dy)) return [x + dx, y + dy];
      }
  return undefined;
}

/** The map-server's source of geometry: cached maps first, generated ones otherwise. */
export function mapSource(cache: Map<string, CachedMap> | undefined): (name: string) => MapDef {
  return (name) => {
    const c = cache?.get(name);
    return c ? mapFromCache(c) : generateMap(name);
  };
}
