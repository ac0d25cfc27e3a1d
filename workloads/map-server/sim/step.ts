// One tick of one slice of a map's entities: the code every worker thread runs (and the tests
// run inline). Pure apart from the arena it writes: reads bank T%2 of every entity, writes bank
// (T+1)%2 of the entities it owns, and returns its events and area-of-interest changes.
//
// Ownership of entities is block-cyclic (blocks of SLICE_BLOCK indexes dealt round-robin to the
// workers) so players, which cost more (AOI), spread evenly.
import {
  type Arena,
  EV_ATTACK,
  EV_DAMAGE,
  EV_MOVE,
  EV_POS,
  EV_STOP,
  EVENT_WORDS,
  FIXED,
  FLAG_ALIVE,
  FLAG_DIRTY,
  KIND_FREE,
  KIND_MOB,
  KIND_PLAYER,
  pushEvent,
  QUEUE_SLOTS,
} from "./arena.ts";
import { collectInRange, type Grid } from "./grid.ts";
import { isWalkable, lineWalkable, type MapDef, MOB_TYPES, VIEW_RANGE } from "./maps.ts";

export const SLICE_BLOCK = 256;

export interface SimParams {
  tickHz: number;
  /** Mob AI runs every `aiEvery` ticks (10 Hz, as in rAthena). */
  aiEvery: number;
  /** Chebyshev distance for a melee hit. */
  attackRange: number;
  chaseRange: number;
  aggroRange: number;
  /** Idle time between a mob's random walks, plus up to `wanderJitterTicks` (rAthena: 4 to 5 s). */
  wanderIdleTicks: number;
  wanderJitterTicks: number;
  /** Farthest target of one `move`, in cells. */
  maxWalk: number;
  playerAttackTicks: number;
  mobAttackTicks: number;
  mobRespawnTicks: number;
  playerRespawnTicks: number;
  /** P2P reports may exceed the speed cap by this fraction (clock jitter)... */
  posTolerance: number;
  /** ...plus this many cells; beyond that by up to `smoothMax` cells is smoothed, farther snapped. */
  posSlack: number;
  smoothMax: number;
  /** A report may claim at most this many ticks of movement since the last accepted one. */
  maxPosGapTicks: number;
}

export function defaultParams(tickHz = 20): SimParams {
  return {
    tickHz,
    aiEvery: Math.max(1, Math.round(tickHz / 10)),
    attackRange: 1.5,
    chaseRange: 14,
    aggroRange: 8,
    maxWalk: 32,
    wanderIdleTicks: tickHz * 4,
    wanderJitterTicks: tickHz,
    playerAttackTicks: Math.max(1, Math.round(tickHz * 0.8)),
    mobAttackTicks: Math.max(1, Math.round(tickHz * 1.5)),
    mobRespawnTicks: tickHz * 5,
    playerRespawnTicks: tickHz * 3,
    posTolerance: 0.1,
    posSlack: 0.05,
    smoothMax: 2,
    maxPosGapTicks: tickHz,
  };
}

// Output events: OUT_WORDS numbers each.
export const OUT_WORDS = 7;
export const OUT_HIT = 1; // source, target, damage, hpLeft
export const OUT_DEATH = 2; // entity, killer
export const OUT_RESPAWN = 3; // entity, x*256, y*256
export const OUT_CORRECTION = 4; // entity, seq, kind, x*256, y*256, reason
export const CORR_SMOOTH = 0;
export const CORR_SNAP = 1;
export const CORR_REJECT = 2;
export const REASONS = [
  "unreachable target",
  "too far",
  "position reports not accepted in this mode",
  "speed cap exceeded",
  "blocked or out of bounds",
  "invalid target",
] as const;
const R_UNREACHABLE = 0;
const R_TOO_FAR = 1;
const R_NOT_P2P = 2;
const R_SPEED = 3;
const R_BLOCKED = 4;
const R_TARGET = 5;

export type WalkGeometry = Pick<MapDef, "width" | "height" | "walkable">;

/** Per-worker scratch that outlives a tick. */
export interface SliceState {
  /** Scratch for view differences, one slot per entity. */
  mark?: Int32Array;
  /** Scratch for view lists, four slots per entity. */
  scratch?: Int32Array;
  stamp: number;
}

export function newSliceState(): SliceState {
  return { stamp: 0 };
}

export interface SliceInput {
  arena: Arena;
  grid: Grid;
  map: WalkGeometry;
  params: SimParams;
  tick: number;
  highWater: number;
  worker: number;
  workers: number;
  /** Build views by gateway (see runSlice). */
  aoiByGateway: boolean;
}

export interface SliceOutput {
  /** OUT_WORDS numbers per event. */
  events: number[];
  /** Per player with changes: entity, nEnter, nUpdate, nLeave, then the three id lists. */
  views: Int32Array;
  players: number;
  mobs: number;
  /** Sum over players of entities in view. */
  fanout: number;
  /** Queue slots that overflowed (events dropped). */
  dropped: number;
}

/** One tick of walking from (x, y) toward (tx, ty) at `step` cells per tick. */
export function walkStep(
  x: number,
  y: number,
  tx: number,
  ty: number,
  step: number,
): [number, number, boolean] {
  const dx = tx - x;
  const dy = ty - y;
  const d = Math.hypot(dx, dy);
  if (d <= step) return [tx, ty, true];
  return [x + (dx / d) * step, y + (dy / d) * step, false];
}

/** xorshift32 on the entity's own state: the same sequence on any thread. */
function nextRandom(a: Arena, i: number): number {
  let s = a.rngState[i]! | 0;
  s ^= s << 13;
  s ^= s >>> 17;
  s ^= s << 5;
  a.rngState[i] = s;
  return (s >>> 0) / 4294967296;
}

class IntBuilder {
  buf = new Int32Array(1024);
  n = 0;
  push(v: number): void {
    if (this.n === this.buf.length) {
      const b = new Int32Array(this.buf.length * 2);
      b.set(this.buf);
      this.buf = b;
    }
    this.buf[this.n++] = v;
  }
}

const cheb = (x0: number, y0: number, x1: number, y1: number) =>
  Math.max(Math.abs(x1 - x0), Math.abs(y1 - y0));

export function runSlice(inp: SliceInput, st: SliceState): SliceOutput {
  if (!st.mark || st.mark.length < inp.arena.capacity) {
    st.mark = new Int32Array(inp.arena.capacity);
    st.scratch = new Int32Array(4 * inp.arena.capacity);
  }
  if (st.stamp > 2 ** 30) {
    st.mark.fill(0);
    st.stamp = 0;
  }
  const r: Run = {
    a: inp.arena,
    grid: inp.grid,
    map: inp.map,
    p: inp.params,
    tick: inp.tick,
    st,
    events: [],
    views: new IntBuilder(),
    players: 0,
    mobs: 0,
    fanout: 0,
    dropped: 0,
    dmgSrc: [],
    dmgVal: [],
  };
  for (let b0 = inp.worker * SLICE_BLOCK; b0 < inp.highWater; b0 += inp.workers * SLICE_BLOCK) {
    const end = Math.min(inp.highWater, b0 + SLICE_BLOCK);
    for (let i = b0; i < end; i++) stepEntity(r, i);
  }
  // Views: by gateway when there are at least as many gateways as workers (then each gateway's
  // frame comes from one worker and no entity is encoded twice), else by the same blocks.
  const a = inp.arena;
  for (let i = 0; i < inp.highWater; i++) {
    if (a.kind[i] !== KIND_PLAYER) continue;
    const owner = inp.aoiByGateway ? a.pgw[i]! : Math.floor(i / SLICE_BLOCK);
    if (owner % inp.workers === inp.worker) aoi(r, i);
  }
  return {
    events: r.events,
    views: r.views.buf.slice(0, r.views.n),
    players: r.players,
    mobs: r.mobs,
    fanout: r.fanout,
    dropped: r.dropped,
  };
}

interface Run {
  a: Arena;
  grid: Grid;
  map: WalkGeometry;
  p: SimParams;
  tick: number;
  st: SliceState;
  events: number[];
  views: IntBuilder;
  players: number;
  mobs: number;
  fanout: number;
  dropped: number;
  dmgSrc: number[];
  dmgVal: number[];
}

function emit(r: Run, t: number, v1: number, v2: number, v3: number, v4: number, v5 = 0, v6 = 0): void {
  r.events.push(t, v1, v2, v3, v4, v5, v6);
}

/** Answers command `seq` of entity `i` with a correction (reject, snap or smooth) and where it stands. */
function correct(r: Run, i: number, seq: number, kind: number, x: number, y: number, reason: number): void {
  emit(r, OUT_CORRECTION, i, seq, kind, Math.round(x * FIXED), Math.round(y * FIXED), reason);
}

// One entity's tick. A function of its own (not the loop body) so V8 optimises it as a whole.
function stepEntity(r: Run, i: number): void {
  const { a, grid, map, p, tick, st, dmgSrc, dmgVal } = r;
  const cap = a.capacity;
  const bank = tick & 1;
  const next = bank ^ 1;

  const c = bank * cap + i;
  const n = next * cap + i;
  const kind = a.kind[i]!;
  if (kind === KIND_FREE) {
    a.flags[n] = 0;
    a.queueCount[c] = 0;
    return;
  }
  let x = a.x[c]!;
  let y = a.y[c]!;
  let hp = a.hp[c]!;
  let alive = (a.flags[c]! & FLAG_ALIVE) !== 0;
  // An accepted P2P report takes effect where server-side walking would (after combat), so
  // both modes see the same positions at the same points of the tick.
  let reported = false;
  let rx = 0;
  let ry = 0;

  // ---- the entity's event queue: damage first (sorted, so arrival order never matters), then commands in order
  const count = Math.min(a.queueCount[c]!, QUEUE_SLOTS);
  r.dropped += a.queueCount[c]! - count;
  a.queueCount[c] = 0;
  // Most queues are empty: skip the whole pass then.
  if (count > 0) {
    const qbase = c * QUEUE_SLOTS * EVENT_WORDS;
    dmgSrc.length = 0;
    dmgVal.length = 0;
    for (let k = 0; k < count; k++) {
      const e = qbase + k * EVENT_WORDS;
      if (a.queue[e] !== EV_DAMAGE) continue;
      const src = a.queue[e + 1]!;
      const val = a.queue[e + 2]!;
      let at = dmgSrc.length;
      while (at > 0 && (dmgSrc[at - 1]! > src || (dmgSrc[at - 1] === src && dmgVal[at - 1]! > val))) at--;
      dmgSrc.splice(at, 0, src);
      dmgVal.splice(at, 0, val);
    }
    for (let k = 0; k < dmgSrc.length && alive; k++) {
      const src = dmgSrc[k]!;
      hp = Math.max(0, hp - dmgVal[k]!);
      emit(r, OUT_HIT, src, i, dmgVal[k]!, hp);
      if (kind === KIND_MOB && a.target[i]! < 0) a.target[i] = src; // fights back
      if (hp === 0) {
        alive = false;
        a.walking[i] = 0;
        a.target[i] = -1;
        a.respawnAt[i] = tick + (kind === KIND_MOB ? p.mobRespawnTicks : p.playerRespawnTicks);
        emit(r, OUT_DEATH, i, src, 0, 0);
      }
    }
    for (let k = 0; k < count; k++) {
      const e = qbase + k * EVENT_WORDS;
      const type = a.queue[e]!;
      if (type === EV_DAMAGE) continue;
      const seq = a.queue[e + 1]!;
      if (!alive) {
        correct(r, i, seq, CORR_REJECT, x, y, R_TARGET);
        continue;
      }
      if (type === EV_MOVE) {
        const tx = a.queue[e + 2]! + 0.5;
        const ty = a.queue[e + 3]! + 0.5;
        if (cheb(x, y, tx, ty) > p.maxWalk) correct(r, i, seq, CORR_REJECT, x, y, R_TOO_FAR);
        else if (!isWalkable(map, tx, ty) || !lineWalkable(map, x, y, tx, ty))
          correct(r, i, seq, CORR_REJECT, x, y, R_UNREACHABLE);
        else {
          a.tx[i] = tx;
          a.ty[i] = ty;
          a.walking[i] = 1;
          a.target[i] = -1;
        }
      } else if (type === EV_STOP) {
        a.walking[i] = 0;
        a.target[i] = -1;
      } else if (type === EV_ATTACK) {
        const t = a.queue[e + 2]!;
        if (t < 0 || t >= cap || t === i || a.kind[t] !== KIND_MOB)
          correct(r, i, seq, CORR_REJECT, x, y, R_TARGET);
        else a.target[i] = t;
      } else if (type === EV_POS) {
        const px = a.queueXY[(c * QUEUE_SLOTS + k) * 2]!;
        const py = a.queueXY[(c * QUEUE_SLOTS + k) * 2 + 1]!;
        if (a.p2p[i] !== 1) {
          correct(r, i, seq, CORR_REJECT, x, y, R_NOT_P2P);
          continue;
        }
        const gap = Math.min(p.maxPosGapTicks, Math.max(1, tick - a.lastPosTick[i]!));
        const allowed = a.speed[i]! * gap * (1 + p.posTolerance) + p.posSlack;
        const d = Math.hypot(px - x, py - y);
        if (!isWalkable(map, px, py) || !lineWalkable(map, x, y, px, py))
          correct(r, i, seq, CORR_SNAP, x, y, R_BLOCKED);
        else if (d <= allowed) {
          reported = true;
          rx = px;
          ry = py;
          a.walking[i] = 0;
          a.lastPosTick[i] = tick;
        } else if (d <= allowed + p.smoothMax) {
          // A small excess (lag, a hiccup): move as far as allowed toward the report.
          [rx, ry] = walkStep(x, y, px, py, allowed);
          reported = true;
          a.walking[i] = 0;
          a.lastPosTick[i] = tick;
          correct(r, i, seq, CORR_SMOOTH, rx, ry, R_SPEED);
        } else correct(r, i, seq, CORR_SNAP, x, y, R_SPEED);
      }
    }
  }

  // ---- death and respawn
  if (!alive && tick >= a.respawnAt[i]!) {
    alive = true;
    hp = a.maxHp[i]!;
    x = a.spawnX[i]!;
    y = a.spawnY[i]!;
    a.target[i] = -1;
    a.walking[i] = 0;
    a.cooldown[i] = 0;
    a.lastPosTick[i] = tick;
    emit(r, OUT_RESPAWN, i, Math.round(x * FIXED), Math.round(y * FIXED), 0);
  }

  if (alive) {
    // ---- mob AI at 10 Hz, staggered by entity
    if (kind === KIND_MOB && (tick + i) % p.aiEvery === 0) {
      const mt = MOB_TYPES[a.mobType[i]!]!;
      let t = a.target[i]!;
      if (t >= 0) {
        const tc = bank * cap + t;
        if (
          a.kind[t] !== KIND_PLAYER ||
          (a.flags[tc]! & FLAG_ALIVE) === 0 ||
          cheb(x, y, a.x[tc]!, a.y[tc]!) > p.chaseRange
        ) {
          t = -1;
          a.target[i] = -1;
          a.walking[i] = 0;
        } else if (cheb(x, y, a.x[tc]!, a.y[tc]!) > p.attackRange) {
          a.tx[i] = a.x[tc]!;
          a.ty[i] = a.y[tc]!;
          a.walking[i] = 1;
        } else a.walking[i] = 0;
      }
      if (t < 0 && mt.aggressive) {
        let best = -1;
        let bestD = Number.POSITIVE_INFINITY;
        const near = st.scratch!;
        const nNear = collectInRange(grid, a, bank, x, y, p.aggroRange, near, 0, cap);
        for (let k = 0; k < nNear; k++) {
          const j = near[k]!;
          if (a.kind[j] !== KIND_PLAYER) continue;
          const d = cheb(x, y, a.x[bank * cap + j]!, a.y[bank * cap + j]!);
          if (d < bestD || (d === bestD && j < best)) {
            bestD = d;
            best = j;
          }
        }
        if (best >= 0) {
          a.target[i] = best;
          t = best;
        }
      }
      if (t < 0 && a.walking[i] === 0 && tick >= a.nextWalk[i]!) {
        // rAthena's random walk: a few cells around the spawn, then 4 to 5 s idle.
        const wx = a.spawnX[i]! + Math.floor(nextRandom(a, i) * 11) - 5;
        const wy = a.spawnY[i]! + Math.floor(nextRandom(a, i) * 11) - 5;
        if (isWalkable(map, wx, wy) && lineWalkable(map, x, y, wx, wy)) {
          a.tx[i] = wx;
          a.ty[i] = wy;
          a.walking[i] = 1;
        }
        a.nextWalk[i] = tick + p.wanderIdleTicks + Math.floor(nextRandom(a, i) * p.wanderJitterTicks);
      }
    }

    // ---- attack
    if (a.cooldown[i]! > 0) a.cooldown[i]!--;
    const t = a.target[i]!;
    if (t >= 0) {
      const tc = bank * cap + t;
      const foe = kind === KIND_PLAYER ? KIND_MOB : KIND_PLAYER;
      if (a.kind[t] !== foe || (a.flags[tc]! & FLAG_ALIVE) === 0) {
        if (kind === KIND_PLAYER) a.target[i] = -1;
      } else if (a.cooldown[i] === 0 && cheb(x, y, a.x[tc]!, a.y[tc]!) <= p.attackRange) {
        const atk = a.atk[i]!;
        const dmg = atk + Math.floor(nextRandom(a, i) * (Math.floor(atk / 4) + 1));
        if (!pushEvent(a, next, t, EV_DAMAGE, i, dmg, 0)) r.dropped++;
        a.cooldown[i] = kind === KIND_PLAYER ? p.playerAttackTicks : p.mobAttackTicks;
      }
    }

    // ---- walk
    if (reported) {
      x = rx;
      y = ry;
    } else if (a.walking[i] === 1) {
      // walkStep, inlined (no array per step).
      const dx = a.tx[i]! - x;
      const dy = a.ty[i]! - y;
      const d = Math.hypot(dx, dy);
      const step = a.speed[i]!;
      const arrived = d <= step;
      const nx = arrived ? a.tx[i]! : x + (dx / d) * step;
      const ny = arrived ? a.ty[i]! : y + (dy / d) * step;
      if (isWalkable(map, nx, ny)) {
        x = nx;
        y = ny;
        if (arrived) a.walking[i] = 0;
      } else a.walking[i] = 0;
    }
  }

  // ---- publish into the next bank
  const changed =
    x !== a.x[c] || y !== a.y[c] || hp !== a.hp[c] || alive !== ((a.flags[c]! & FLAG_ALIVE) !== 0);
  a.x[n] = x;
  a.y[n] = y;
  a.hp[n] = hp;
  a.flags[n] = (alive ? FLAG_ALIVE : 0) | (changed ? FLAG_DIRTY : 0);
  if (kind === KIND_MOB) r.mobs++;
}

/**
 * One player's area of interest, from the start-of-tick state (bank T%2) like everything else
 * read; its last view lives in shared memory (the player's slot), so whichever worker builds
 * this player's frame this tick can compute the difference.
 */
function aoi(r: Run, i: number): void {
  const { a, grid, st } = r;
  const slot = a.pslot[i]!;
  if (slot < 0) return;
  r.players++;
  const cap = a.capacity;
  const bank = r.tick & 1;
  const c = bank * cap + i;
  const buf = st.scratch!;
  const maxView = Math.min(a.maxView, cap);
  const nVis = collectInRange(grid, a, bank, a.x[c]!, a.y[c]!, VIEW_RANGE, buf, 0, maxView);
  r.fanout += nVis;
  const prev = a.views;
  const base = slot * a.maxView;
  const nPrev = a.viewCount[slot]!;
  // Set difference with stamps instead of sorting: mark the old view, then walk the new one.
  // Scratch layout: visible at [0, cap), enter at [cap, ...), update at [2cap, ...), leave at [3cap, ...).
  const mark = st.mark!;
  const was = ++st.stamp;
  const kept = ++st.stamp;
  let ne = 0;
  let nu = 0;
  let nl = 0;
  for (let k = 0; k < nPrev; k++) mark[prev[base + k]!] = was;
  for (let k = 0; k < nVis; k++) {
    const j = buf[k]!;
    if (mark[j] === was) {
      mark[j] = kept;
      if ((a.flags[bank * cap + j]! & FLAG_DIRTY) !== 0) buf[2 * cap + nu++] = j;
    } else buf[cap + ne++] = j;
  }
  for (let k = 0; k < nPrev; k++) if (mark[prev[base + k]!] === was) buf[3 * cap + nl++] = prev[base + k]!;
  if (ne + nu + nl > 0) {
    const views = r.views;
    views.push(i);
    views.push(ne);
    views.push(nu);
    views.push(nl);
    for (let k = 0; k < ne; k++) views.push(buf[cap + k]!);
    for (let k = 0; k < nu; k++) views.push(buf[2 * cap + k]!);
    for (let k = 0; k < nl; k++) views.push(buf[3 * cap + k]!);
  }
  if (ne + nl > 0) {
    prev.set(buf.subarray(0, nVis), base);
    a.viewCount[slot] = nVis;
  }
}
