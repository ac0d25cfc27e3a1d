// The area-of-interest grid: entities bucketed by 8x8-cell block (rAthena's block grid),
// rebuilt by the main thread after every tick with one counting sort, in SharedArrayBuffers so
// every worker queries it without copies. A 14-cell view touches at most 5x5 blocks.
import { type Arena, FLAG_ALIVE } from "./arena.ts";
import { BLOCK_SIZE } from "./maps.ts";

export interface GridBuffers {
  bw: number;
  bh: number;
  /** bw*bh+1 offsets into items. */
  start: SharedArrayBuffer;
  items: SharedArrayBuffer;
}

export interface Grid {
  readonly bw: number;
  readonly bh: number;
  readonly start: Int32Array;
  readonly items: Int32Array;
  readonly buffers: GridBuffers;
}

export function createGridBuffers(width: number, height: number, capacity: number): GridBuffers {
  const bw = Math.ceil(width / BLOCK_SIZE);
  const bh = Math.ceil(height / BLOCK_SIZE);
  return {
    bw,
    bh,
    start: new SharedArrayBuffer((bw * bh + 1) * 4),
    items: new SharedArrayBuffer(capacity * 4),
  };
}

export function attachGrid(b: GridBuffers): Grid {
  return { bw: b.bw, bh: b.bh, start: new Int32Array(b.start), items: new Int32Array(b.items), buffers: b };
}

function blockOf(g: Grid, x: number, y: number): number {
  const bx = Math.min(g.bw - 1, Math.max(0, Math.floor(x / BLOCK_SIZE)));
  const by = Math.min(g.bh - 1, Math.max(0, Math.floor(y / BLOCK_SIZE)));
  return by * g.bw + bx;
}

/** Buckets the live entities of `bank` by block (ascending entity index within a block). */
export function rebuildGrid(g: Grid, a: Arena, bank: number, highWater: number, scratch: Int32Array): void {
  const { start, items } = g;
  const nb = g.bw * g.bh;
  start.fill(0);
  const off = bank * a.capacity;
  for (let i = 0; i < highWater; i++) {
    if ((a.flags[off + i]! & FLAG_ALIVE) === 0) {
      scratch[i] = -1;
      continue;
    }
    const b = blockOf(g, a.x[off + i]!, a.y[off + i]!);
    scratch[i] = b;
    start[b + 1]!++;
  }
  for (let b = 0; b < nb; b++) start[b + 1]! += start[b]!;
  // Reuse the block starts as write cursors, then shift them back.
  for (let i = 0; i < highWater; i++) {
    const b = scratch[i]!;
    if (b >= 0) items[start[b]!++] = i;
  }
  for (let b = nb; b > 0; b--) start[b] = start[b - 1]!;
  start[0] = 0;
}

/**
 * Writes the indexes of the live entities within `range` cells (Chebyshev distance, as rAthena's
 * square areas) of (x, y) in `bank` into out[at..at+max), in ascending block order, without a
 * closure (hot loops); returns how many were found.
 */
export function collectInRange(
  g: Grid,
  a: Arena,
  bank: number,
  x: number,
  y: number,
  range: number,
  out: Int32Array,
  at: number,
  max: number,
): number {
  let n = 0;
  const off = bank * a.capacity;
  const ax = a.x;
  const ay = a.y;
  const { start, items } = g;
  const bx0 = Math.max(0, Math.floor((x - range) / BLOCK_SIZE));
  const by0 = Math.max(0, Math.floor((y - range) / BLOCK_SIZE));
  const bx1 = Math.min(g.bw - 1, Math.floor((x + range) / BLOCK_SIZE));
  const by1 = Math.min(g.bh - 1, Math.floor((y + range) / BLOCK_SIZE));
  for (let by = by0; by <= by1; by++) {
    for (let bx = bx0; bx <= bx1; bx++) {
      const b = by * g.bw + bx;
      const e = start[b + 1]!;
      for (let k = start[b]!; k < e && n < max; k++) {
        const j = items[k]!;
        const dx = ax[off + j]! - x;
        const dy = ay[off + j]! - y;
        if (dx <= range && dx >= -range && dy <= range && dy >= -range) out[at + n++] = j;
      }
    }
  }
  return n;
}
