// Entity state of one map as struct-of-arrays in SharedArrayBuffers: a fixed-capacity pool
// (the original design's arena allocator) that the worker threads read and write in place.
//
// Double buffering makes one tick one parallel pass with a single synchronisation: fields other
// entities read (position, hp, alive) exist twice, "banks" 0 and 1. During tick T every worker
// reads bank T%2 (the state at the end of T-1, for every entity) and writes bank (T+1)%2 only
// for the entities it owns. Nobody reads what another thread writes during the same tick, so
// the result does not depend on thread count or timing. Private fields (walk target, attack
// target, cooldowns, the entity's own RNG) are touched only by the owning worker.
//
// Per-entity event queues (damage from other entities, commands from clients) are banked the
// same way: events sent during tick T land in bank (T+1)%2 and are consumed at T+1. Workers
// reserve queue slots with Atomics.add, because several may hit the same target.
//
// Allocation (spawn, join, leave) happens only on the main thread between ticks, from a free
// list, so it needs no locking.

export const QUEUE_SLOTS = 16;
/** Int32 words per queued event: type, a, b, c. */
export const EVENT_WORDS = 4;

export const KIND_FREE = 0;
export const KIND_PLAYER = 1;
export const KIND_MOB = 2;

export const FLAG_ALIVE = 1;
/** Public state changed during the tick that wrote this bank. */
export const FLAG_DIRTY = 2;

// Queued event types.
export const EV_DAMAGE = 1; // a = source entity, b = damage
export const EV_MOVE = 2; // a = seq, b = x cell, c = y cell
export const EV_POS = 3; // a = seq; the reported position in queueXY (P2P movement)
export const EV_STOP = 4; // a = seq
export const EV_ATTACK = 5; // a = seq, b = target entity

export const FIXED = 256;

const F64 = Float64Array.BYTES_PER_ELEMENT;
const I32 = Int32Array.BYTES_PER_ELEMENT;

export interface ArenaBuffers {
  capacity: number;
  /** Player slots: each player's last view lives in shared memory, so any worker can compute it. */
  playerSlots: number;
  /** Most entities one view holds. */
  maxView: number;
  views: SharedArrayBuffer;
  viewCount: SharedArrayBuffer;
  f64: SharedArrayBuffer;
  i32: SharedArrayBuffer;
  u8: SharedArrayBuffer;
  queue: SharedArrayBuffer;
  /** Two float64 per queue slot: a position carried exactly (P2P reports). */
  queueXY: SharedArrayBuffer;
  queueCount: SharedArrayBuffer;
}

/** Typed views over the buffers; the same layout in every thread. */
export interface Arena {
  readonly capacity: number;
  readonly buffers: ArenaBuffers;
  // banked: index bank*capacity + i
  readonly x: Float64Array;
  readonly y: Float64Array;
  readonly hp: Int32Array;
  readonly flags: Uint8Array;
  // private
  readonly tx: Float64Array;
  readonly ty: Float64Array;
  /** Cells per tick. */
  readonly speed: Float64Array;
  readonly spawnX: Float64Array;
  readonly spawnY: Float64Array;
  readonly maxHp: Int32Array;
  readonly atk: Int32Array;
  readonly target: Int32Array;
  readonly cooldown: Int32Array;
  readonly respawnAt: Int32Array;
  /** Tick of the last accepted P2P position report. */
  readonly lastPosTick: Int32Array;
  /** Tick of a mob's next random walk. */
  readonly nextWalk: Int32Array;
  readonly gen: Int32Array;
  readonly rngState: Int32Array;
  readonly kind: Uint8Array;
  readonly walking: Uint8Array;
  readonly mobType: Uint8Array;
  /** Movement comes from the client's reports (P2P session on a map in p2p mode). */
  readonly p2p: Uint8Array;
  readonly queue: Int32Array;
  readonly queueXY: Float64Array;
  readonly queueCount: Int32Array;
  readonly playerSlots: number;
  readonly maxView: number;
  /** Player slot of each entity (-1: not a player). */
  readonly pslot: Int32Array;
  /** Small integer naming each player's gateway (which worker builds its view, see step.ts). */
  readonly pgw: Int32Array;
  /** Per player slot: the entity ids of its last view (maxView each) and how many. */
  readonly views: Int32Array;
  readonly viewCount: Int32Array;
}

const F64_FIELDS = ["x", "y", "tx", "ty", "speed", "spawnX", "spawnY"] as const;
const F64_BANKED = new Set<string>(["x", "y"]);
const I32_FIELDS = [
  "hp",
  "maxHp",
  "atk",
  "target",
  "cooldown",
  "respawnAt",
  "lastPosTick",
  "nextWalk",
  "pslot",
  "pgw",
  "gen",
  "rngState",
] as const;
const I32_BANKED = new Set<string>(["hp"]);
const U8_FIELDS = ["flags", "kind", "walking", "mobType", "p2p"] as const;
const U8_BANKED = new Set<string>(["flags"]);

function sizes(fields: readonly string[], banked: Set<string>, cap: number): number[] {
  return fields.map((f) => (banked.has(f) ? 2 * cap : cap));
}

export function createArenaBuffers(capacity: number, playerSlots = capacity, maxView = 512): ArenaBuffers {
  const total = (f: readonly string[], b: Set<string>) => sizes(f, b, capacity).reduce((a, n) => a + n, 0);
  return {
    capacity,
    playerSlots,
    maxView,
    views: new SharedArrayBuffer(playerSlots * maxView * I32),
    viewCount: new SharedArrayBuffer(playerSlots * I32),
    f64: new SharedArrayBuffer(total(F64_FIELDS, F64_BANKED) * F64),
    i32: new SharedArrayBuffer(total(I32_FIELDS, I32_BANKED) * I32),
    u8: new SharedArrayBuffer(total(U8_FIELDS, U8_BANKED)),
    queue: new SharedArrayBuffer(2 * capacity * QUEUE_SLOTS * EVENT_WORDS * I32),
    queueXY: new SharedArrayBuffer(2 * capacity * QUEUE_SLOTS * 2 * F64),
    queueCount: new SharedArrayBuffer(2 * capacity * I32),
  };
}

export function attachArena(b: ArenaBuffers): Arena {
  const cap = b.capacity;
  const views: Record<string, Float64Array | Int32Array | Uint8Array> = {};
  const carve = (
    fields: readonly string[],
    banked: Set<string>,
    make: (off: number, len: number) => Float64Array | Int32Array | Uint8Array,
    width: number,
  ) => {
    let off = 0;
    sizes(fields, banked, cap).forEach((len, i) => {
      views[fields[i]!] = make(off * width, len);
      off += len;
    });
  };
  carve(F64_FIELDS, F64_BANKED, (o, n) => new Float64Array(b.f64, o, n), F64);
  carve(I32_FIELDS, I32_BANKED, (o, n) => new Int32Array(b.i32, o, n), I32);
  carve(U8_FIELDS, U8_BANKED, (o, n) => new Uint8Array(b.u8, o, n), 1);
  const f = (k: string) => views[k] as Float64Array;
  const i = (k: string) => views[k] as Int32Array;
  const u = (k: string) => views[k] as Uint8Array;
  // An object literal with a fixed shape: property reads stay fast in the hot loops.
  return {
    capacity: cap,
    buffers: b,
    x: f("x"),
    y: f("y"),
    hp: i("hp"),
    flags: u("flags"),
    tx: f("tx"),
    ty: f("ty"),
    speed: f("speed"),
    spawnX: f("spawnX"),
    spawnY: f("spawnY"),
    maxHp: i("maxHp"),
    atk: i("atk"),
    target: i("target"),
    cooldown: i("cooldown"),
    respawnAt: i("respawnAt"),
    lastPosTick: i("lastPosTick"),
    nextWalk: i("nextWalk"),
    pslot: i("pslot"),
    pgw: i("pgw"),
    gen: i("gen"),
    rngState: i("rngState"),
    kind: u("kind"),
    walking: u("walking"),
    mobType: u("mobType"),
    p2p: u("p2p"),
    queue: new Int32Array(b.queue),
    queueXY: new Float64Array(b.queueXY),
    queueCount: new Int32Array(b.queueCount),
    playerSlots: b.playerSlots,
    maxView: b.maxView,
    views: new Int32Array(b.views),
    viewCount: new Int32Array(b.viewCount),
  };
}

/** Appends an event to entity `i`'s queue in `bank`; false when the queue is full (dropped). */
export function pushEvent(
  a: Arena,
  bank: number,
  i: number,
  type: number,
  p: number,
  q: number,
  r: number,
  fx = 0,
  fy = 0,
): boolean {
  const slot = Atomics.add(a.queueCount, bank * a.capacity + i, 1);
  if (slot >= QUEUE_SLOTS) return false;
  const at = (bank * a.capacity + i) * QUEUE_SLOTS + slot;
  a.queueXY[at * 2] = fx;
  a.queueXY[at * 2 + 1] = fy;
  const base = at * EVENT_WORDS;
  a.queue[base] = type;
  a.queue[base + 1] = p;
  a.queue[base + 2] = q;
  a.queue[base + 3] = r;
  return true;
}

/** The main thread's allocator over an arena (or its player slots): a free list. */
export class Allocator {
  private readonly free: Int32Array;
  private top: number;
  /** One past the highest index ever handed out: workers scan [0, highWater). */
  highWater = 0;
  live = 0;

  constructor(capacity: number) {
    this.free = new Int32Array(capacity);
    for (let i = 0; i < capacity; i++) this.free[i] = capacity - 1 - i;
    this.top = capacity;
  }

  alloc(): number | undefined {
    if (this.top === 0) return undefined;
    const i = this.free[--this.top]!;
    if (i + 1 > this.highWater) this.highWater = i + 1;
    this.live++;
    return i;
  }

  release(i: number): void {
    this.free[this.top++] = i;
    this.live--;
  }

  /** Hands out exactly these indexes (those still free); returns the ones it could. */
  take(wanted: readonly number[]): Set<number> {
    const want = new Set(wanted);
    const got = new Set<number>();
    let w = 0;
    for (let r = 0; r < this.top; r++) {
      const i = this.free[r]!;
      if (want.has(i)) got.add(i);
      else this.free[w++] = i;
    }
    this.top = w;
    for (const i of got) {
      if (i + 1 > this.highWater) this.highWater = i + 1;
      this.live++;
    }
    return got;
  }
}
