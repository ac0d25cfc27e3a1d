// Walk paths on RO's cell grid, as rAthena's path_search finds them: A* over cells in eight
// directions, a straight step costing 10 and a diagonal one 14, a diagonal allowed only when
// both cells beside it are walkable (no cutting corners), the path at most `maxSteps` cells
// (rAthena's MAX_WALKPATH is 32). RO clients find their own path and send only the destination,
// so the server finds the same kind of path and walks it; the simulation moves in straight
// segments, so the cell path is cut into the fewest segments whose straight lines stay walkable.
import { isWalkable, lineWalkable, type MapDef } from "./maps.ts";

type Geometry = Pick<MapDef, "width" | "height" | "walkable">;

const DIRS: ReadonlyArray<[number, number, number]> = [
  [1, 0, 10],
  [-1, 0, 10],
  [0, 1, 10],
  [0, -1, 10],
  [1, 1, 14],
  [1, -1, 14],
  [-1, 1, 14],
  [-1, -1, 14],
];

/** The cells from (x0, y0) to (x1, y1), both included, or undefined when there is no path. */
export function findCellPath(
  g: Geometry,
  x0: number,
  y0: number,
  x1: number,
  y1: number,
  maxSteps = 32,
): Array<[number, number]> | undefined {
  if (!isWalkable(g, x1, y1) || !isWalkable(g, x0, y0)) return undefined;
  if (Math.max(Math.abs(x1 - x0), Math.abs(y1 - y0)) > maxSteps) return undefined;
  // The search stays within maxSteps of the start: a window of (2*maxSteps+1)^2 cells.
  const side = 2 * maxSteps + 1;
  const ox = x0 - maxSteps;
  const oy = y0 - maxSteps;
  const idx = (x: number, y: number) => (y - oy) * side + (x - ox);
  const cost = new Int32Array(side * side).fill(-1);
  const steps = new Int16Array(side * side);
  const from = new Int32Array(side * side).fill(-1);
  const h = (x: number, y: number) => {
    const dx = Math.abs(x1 - x);
    const dy = Math.abs(y1 - y);
    return 10 * Math.max(dx, dy) + 4 * Math.min(dx, dy);
  };
  // A binary heap of [f, index].
  const heap: Array<[number, number]> = [];
  const push = (f: number, i: number) => {
    heap.push([f, i]);
    for (let k = heap.length - 1; k > 0; ) {
      const p = (k - 1) >> 1;
      if (heap[p]![0] <= heap[k]![0]) break;
      [heap[p], heap[k]] = [heap[k]!, heap[p]!];
      k = p;
    }
  };
  const pop = (): [number, number] => {
    const top = heap[0]!;
    const last = heap.pop()!;
    if (heap.length > 0) {
      heap[0] = last;
      for (let k = 0; ; ) {
        const l = 2 * k + 1;
        const r = l + 1;
        let m = k;
        if (l < heap.length && heap[l]![0] < heap[m]![0]) m = l;
        if (r < heap.length && heap[r]![0] < heap[m]![0]) m = r;
        if (m === k) break;
        [heap[m], heap[k]] = [heap[k]!, heap[m]!];
        k = m;
      }
    }
    return top;
  };
  const start = idx(x0, y0);
  const goal = idx(x1, y1);
  cost[start] = 0;
  push(h(x0, y0), start);
  while (heap.length > 0) {
    const [, i] = pop();
    if (i === goal) break;
    const x = ox + (i % side);
    const y = oy + Math.floor(i / side);
    if (steps[i]! >= maxSteps) continue;
    for (const [dx, dy, c] of DIRS) {
      const nx = x + dx;
      const ny = y + dy;
      if (nx < ox || ny < oy || nx >= ox + side || ny >= oy + side) continue;
      if (!isWalkable(g, nx, ny)) continue;
      if (dx !== 0 && dy !== 0 && (!isWalkable(g, x + dx, y) || !isWalkable(g, x, y + dy))) continue;
      const j = idx(nx, ny);
      const nc = cost[i]! + c;
      if (cost[j] !== -1 && cost[j]! <= nc) continue;
      cost[j] = nc;
      steps[j] = steps[i]! + 1;
      from[j] = i;
      push(nc + h(nx, ny), j);
    }
  }
  if (cost[goal] === -1) return undefined;
  const path: Array<[number, number]> = [];
  for (let i = goal; i !== -1; i = from[i]!) path.push([ox + (i % side), oy + Math.floor(i / side)]);
  return path.reverse();
}

/**
 * The waypoints (cell coordinates, the first after the start) of a cell path, as few as the
 * straight lines between cell centres allow.
 */
export function waypoints(g: Geometry, path: ReadonlyArray<[number, number]>): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  let from = 0;
  while (from < path.length - 1) {
    let to = from + 1;
    const [fx, fy] = path[from]!;
    while (to + 1 < path.length) {
      const [nx, ny] = path[to + 1]!;
      if (!lineWalkable(g, fx + 0.5, fy + 0.5, nx + 0.5, ny + 0.5)) break;
      to++;
    }
    out.push(path[to]!);
    from = to;
  }
  return out;
}
