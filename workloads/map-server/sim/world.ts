// One map's simulation as the main thread sees it: sessions, the arena allocator, the grid,
// input application before a tick and, after the workers' pass, the merge of their output into
// AOI frames per gateway and zone events. `stepInline()` runs a whole tick on the calling thread
// (unit tests, the determinism scenario); the server hands the same slices to its worker pool.
import type { ClientInput, EntityState, MapMode, ZoneEvent } from "../../../platform/bus/contract.ts";
import { MAX_CHAT_LENGTH } from "../../../platform/bus/contract.ts";
import {
  Allocator,
  type Arena,
  attachArena,
  createArenaBuffers,
  EV_ATTACK,
  EV_MOVE,
  EV_POS,
  EV_STOP,
  FIXED,
  FLAG_ALIVE,
  FLAG_DIRTY,
  KIND_FREE,
  KIND_MOB,
  KIND_PLAYER,
  pushEvent,
} from "./arena.ts";
import {
  assembleFrames,
  type EncodedFrame,
  entityState,
  type FrameContext,
  type FrameScratch,
  newFrameScratch,
  type SessionInfo,
  type SliceResult,
} from "./frames.ts";
import { attachGrid, collectInRange, createGridBuffers, type Grid, rebuildGrid } from "./grid.ts";
import {
  BLOCK_SIZE,
  hashString,
  isWalkable,
  lineWalkable,
  type MapDef,
  MOB_TYPES,
  rng,
  VIEW_RANGE,
  type Warp,
} from "./maps.ts";
import { findCellPath, waypoints } from "./path.ts";
import {
  defaultParams,
  newSliceState,
  OUT_DEATH,
  OUT_HIT,
  OUT_RESPAWN,
  OUT_WORDS,
  runSlice,
  type SimParams,
  type SliceState,
} from "./step.ts";

/** rAthena's default walk speed: 150 ms per cell. */
export const PLAYER_CELLS_PER_SECOND = 1000 / 150;

export interface PlayerInfo {
  session: string;
  characterId: string;
  gateway: string;
  p2p: boolean;
  name: string;
  x?: number;
  y?: number;
  hp: number;
  maxHp: number;
  atk: number;
  exp: number;
  zeny: number;
}

export interface Session extends PlayerInfo {
  entity: number;
}

export interface PlayerState {
  x: number;
  y: number;
  hp: number;
  maxHp: number;
  alive: boolean;
}

export interface SimOptions {
  capacity: number;
  /** Most players at once (their views live in shared memory). Default: min(capacity, 8192). */
  playerSlots?: number;
  /** Most entities one view holds. Default 512. */
  maxView?: number;
  tickHz?: number;
  seed?: number;
  params?: Partial<SimParams>;
}

export interface TickStats {
  players: number;
  mobs: number;
  fanout: number;
  dropped: number;
  /** Corrections sent, by kind: smooth, snap, reject. */
  corrections: [number, number, number];
}

export interface TickResult {
  /** The tick just simulated. */
  tick: number;
  /** Encoded AOI frames: per gateway with something to say, one per slice that has its players. */
  frames: EncodedFrame[];
  events: ZoneEvent[];
  stats: TickStats;
}

/** What a worker needs to run its slice of this map's tick. */
export interface TickJob {
  tick: number;
  highWater: number;
}

export class MapSim {
  readonly def: MapDef;
  readonly arena: Arena;
  readonly grid: Grid;
  readonly params: SimParams;
  readonly seed: number;
  /** Ticks simulated so far; the next tick to run. */
  tick = 0;
  mode: MapMode = "server";
  /** Stamped into frames and events: the owner's fence. */
  fence = "0";
  readonly sessions = new Map<string, Session>();
  private readonly byEntity = new Map<number, Session>();
  private readonly alloc: Allocator;
  private readonly slots: Allocator;
  /** Gateway name -> small integer, and how many sessions each has here. */
  private readonly gateways = new Map<string, { id: number; sessions: number }>();
  private readonly scratch: Int32Array;
  /** recipients()'s grid query results (at most one entry per entity). */
  private readonly near: Int32Array;
  private inbox: ClientInput[] = [];
  private pendingEvents: ZoneEvent[] = [];
  /** Sessions walking a cell path: the waypoint being walked to and those after it. */
  private readonly paths = new Map<
    string,
    { seq: number; at: [number, number]; rest: Array<[number, number]> }
  >();
  /** Sessions standing on a portal that were told so (one warp event per step onto it). */
  private readonly onPortal = new Set<string>();
  /** The map's portals by cell index (y * width + x). */
  private readonly portalAt = new Map<number, Warp>();
  private readonly inlineStates: Array<{ sim: SliceState; frames: FrameScratch }> = [];
  /** Told about every join, leave and gateway change (the worker pool mirrors the sessions). */
  onSessions: ((entity: number, info: SessionInfo | undefined) => void) | undefined;
  /** Experience and zeny multipliers of kills (world events; 1 = normal). */
  expRate = 1;
  dropRate = 1;
  /** World-event mobs by entity: the occurrence that spawned them. They never respawn. */
  readonly eventMobs = new Map<number, string>();
  /** Told when a world-event mob dies (between ticks, in finish()). */
  onEventMobDeath: ((tag: string, entity: number) => void) | undefined;
  /** Dead world-event mobs and the tick their corpse goes. */
  private readonly corpses = new Map<number, number>();

  constructor(def: MapDef, opts: SimOptions) {
    // The geometry goes to every worker: keep it in shared memory.
    const walkable = new Uint8Array(new SharedArrayBuffer(def.walkable.length));
    walkable.set(def.walkable);
    this.def = { ...def, walkable };
    for (const w of def.warps) this.portalAt.set(w.y * def.width + w.x, w);
    this.params = { ...defaultParams(opts.tickHz ?? 20), ...opts.params };
    this.seed = opts.seed ?? 1;
    this.arena = attachArena(
      createArenaBuffers(
        opts.capacity,
        opts.playerSlots ?? Math.min(opts.capacity, 8192),
        opts.maxView ?? 512,
      ),
    );
    this.slots = new Allocator(this.arena.playerSlots);
    this.arena.pslot.fill(-1);
    this.grid = attachGrid(createGridBuffers(def.width, def.height, opts.capacity));
    this.alloc = new Allocator(opts.capacity);
    this.scratch = new Int32Array(opts.capacity);
    this.near = new Int32Array(opts.capacity);
    this.arena.target.fill(-1);
    this.spawnMobs();
    rebuildGrid(this.grid, this.arena, this.bank, this.alloc.highWater, this.scratch);
  }

  /** The bank holding the latest state between ticks. */
  get bank(): number {
    return this.tick & 1;
  }

  get highWater(): number {
    return this.alloc.highWater;
  }

  get liveEntities(): number {
    return this.alloc.live;
  }

  private place(i: number, kind: number, x: number, y: number, hp: number, maxHp: number): void {
    const a = this.arena;
    a.kind[i] = kind;
    a.gen[i] = (a.gen[i]! + 1) | 0;
    for (const b of [0, 1]) {
      a.x[b * a.capacity + i] = x;
      a.y[b * a.capacity + i] = y;
      a.hp[b * a.capacity + i] = hp;
      a.flags[b * a.capacity + i] = (hp > 0 ? FLAG_ALIVE : 0) | FLAG_DIRTY;
      a.queueCount[b * a.capacity + i] = 0;
    }
    a.maxHp[i] = maxHp;
    a.target[i] = -1;
    a.cooldown[i] = 0;
    a.walking[i] = 0;
    a.lastPosTick[i] = this.tick;
    a.respawnAt[i] = this.tick;
    a.nextWalk[i] = this.tick;
    a.pslot[i] = -1;
    // A per-entity random stream, independent of which thread runs the entity.
    a.rngState[i] = (hashString(`${this.seed}:${this.def.name}:${i}:${a.gen[i]}`) | 1) >>> 0;
  }

  private spawnMobs(): void {
    const rand = rng(hashString(`${this.seed}:${this.def.name}:mobs`));
    const a = this.arena;
    const spawns: Array<{ type: number; x: number; y: number }> = [];
    for (const spawn of this.def.mobs) {
      for (let k = 0; k < spawn.count; k++) {
        let at = spawn.at?.[k];
        for (let tries = 0; !at && tries < 100; tries++) {
          const x = Math.floor(rand() * this.def.width);
          const y = Math.floor(rand() * this.def.height);
          if (isWalkable(this.def, x, y)) at = [x, y];
        }
        if (at) spawns.push({ type: spawn.type, x: at[0], y: at[1] });
      }
    }
    // Neighbours in space get neighbouring indexes (by AOI block, row-major), so a view reads
    // mostly adjacent memory.
    const block = (m: { x: number; y: number }) =>
      Math.floor(m.y / BLOCK_SIZE) * this.grid.bw + Math.floor(m.x / BLOCK_SIZE);
    spawns.sort((m, n) => block(m) - block(n));
    for (const m of spawns) {
      const i = this.alloc.alloc();
      if (i === undefined) break;
      const mt = MOB_TYPES[m.type]!;
      this.place(i, KIND_MOB, m.x + 0.5, m.y + 0.5, mt.hp, mt.hp);
      a.mobType[i] = m.type;
      a.atk[i] = mt.atk;
      a.speed[i] = mt.speed / this.params.tickHz;
      a.spawnX[i] = m.x + 0.5;
      a.spawnY[i] = m.y + 0.5;
    }
  }

  // ---- sessions -----------------------------------------------------------------------------

  /** Adds a player; `at` is an entity index already taken from the allocator (restore only). */
  join(info: PlayerInfo, at?: number): Session {
    const existing = this.sessions.get(info.session);
    if (existing) return existing;
    const slot = this.slots.alloc();
    const i = slot === undefined ? undefined : (at ?? this.alloc.alloc());
    if (i === undefined) {
      if (slot !== undefined) this.slots.release(slot);
      if (at !== undefined) this.alloc.release(at);
      throw new Error(`map ${this.def.name} is full`);
    }
    const [sx, sy] = this.def.spawn;
    const ok = info.x !== undefined && info.y !== undefined && isWalkable(this.def, info.x, info.y);
    const x = ok ? info.x! : sx + 0.5;
    const y = ok ? info.y! : sy + 0.5;
    const hp = Math.min(info.maxHp, Math.max(1, info.hp));
    this.place(i, KIND_PLAYER, x, y, hp, info.maxHp);
    const a = this.arena;
    a.atk[i] = info.atk;
    a.speed[i] = PLAYER_CELLS_PER_SECOND / this.params.tickHz;
    a.spawnX[i] = sx + 0.5;
    a.spawnY[i] = sy + 0.5;
    a.p2p[i] = this.mode === "p2p" && info.p2p ? 1 : 0;
    a.pslot[i] = slot!;
    a.viewCount[slot!] = 0;
    a.pgw[i] = this.gatewayIn(info.gateway);
    const s: Session = { ...info, entity: i };
    this.sessions.set(s.session, s);
    this.byEntity.set(i, s);
    this.onSessions?.(i, s);
    return s;
  }

  /**
   * Brings sessions back after a handover, each under the entity id it had with the previous
   * owner when that id is free here (mobs spawn identically for a map and seed), so clients
   * keep their own id.
   */
  restore(sessions: ReadonlyArray<PlayerInfo & { entity?: number }>): Session[] {
    const ids = sessions
      .map((s) => s.entity)
      .filter((e): e is number => Number.isInteger(e) && e! >= 0 && e! < this.arena.capacity);
    const got = this.alloc.take(ids.filter((e) => this.arena.kind[e] === KIND_FREE));
    const out: Session[] = [];
    for (const s of sessions) {
      const at = s.entity !== undefined && got.delete(s.entity) ? s.entity : undefined;
      const { entity: _drop, ...info } = s;
      out.push(this.join(info, at));
    }
    for (const i of got) this.alloc.release(i); // duplicates in the saved state
    return out;
  }

  /** Removes the session's character; returns its last state (for persisting). */
  leave(session: string): (Session & PlayerState) | undefined {
    const s = this.sessions.get(session);
    if (!s) return undefined;
    const state = this.playerState(s);
    const a = this.arena;
    a.kind[s.entity] = KIND_FREE;
    a.flags[s.entity] = 0;
    a.flags[a.capacity + s.entity] = 0;
    this.alloc.release(s.entity);
    this.slots.release(a.pslot[s.entity]!);
    a.pslot[s.entity] = -1;
    this.gatewayOut(s.gateway);
    this.sessions.delete(session);
    this.onPortal.delete(session);
    this.paths.delete(session);
    this.byEntity.delete(s.entity);
    this.onSessions?.(s.entity, undefined);
    this.inbox = this.inbox.filter((i) => i.s !== session);
    return { ...s, ...state };
  }

  playerState(s: Session): PlayerState {
    const a = this.arena;
    const c = this.bank * a.capacity + s.entity;
    return {
      x: a.x[c]!,
      y: a.y[c]!,
      hp: a.hp[c]!,
      maxHp: a.maxHp[s.entity]!,
      alive: (a.flags[c]! & FLAG_ALIVE) !== 0,
    };
  }

  /** The gateway lost its sessions' views: the next frame shows each whole view as entering. */
  resendViews(gateway: string): void {
    for (const s of this.sessions.values())
      if (s.gateway === gateway) this.arena.viewCount[this.arena.pslot[s.entity]!] = 0;
  }

  /** The client now talks through another gateway. */
  moveSession(session: string, gateway: string): void {
    const s = this.sessions.get(session);
    if (!s || s.gateway === gateway) return;
    this.gatewayOut(s.gateway);
    s.gateway = gateway;
    this.arena.pgw[s.entity] = this.gatewayIn(gateway);
    // The new gateway knows nothing yet: the next frame shows the whole view as entering.
    this.arena.viewCount[this.arena.pslot[s.entity]!] = 0;
    this.onSessions?.(s.entity, s);
  }

  private gatewayIn(name: string): number {
    let g = this.gateways.get(name);
    if (!g) {
      const used = new Set([...this.gateways.values()].map((x) => x.id));
      let id = 0;
      while (used.has(id)) id++;
      g = { id, sessions: 0 };
      this.gateways.set(name, g);
    }
    g.sessions++;
    return g.id;
  }

  private gatewayOut(name: string): void {
    const g = this.gateways.get(name);
    if (g && --g.sessions === 0) this.gateways.delete(name);
  }

  /** Views are built per gateway when there are at least as many gateways as workers. */
  aoiByGateway(workers: number): boolean {
    return this.gateways.size >= workers;
  }

  setMode(mode: MapMode): void {
    this.mode = mode;
    for (const s of this.sessions.values()) this.arena.p2p[s.entity] = mode === "p2p" && s.p2p ? 1 : 0;
  }

  input(i: ClientInput): void {
    this.inbox.push(i);
  }

  // ---- world events (between ticks) -------------------------------------------------------------

  /**
   * Spawns `count` mobs of `type` for a world event (`tag`) through the normal entity path: near
   * (x, y) when given (the nearest walkable cells), else on random walkable cells of the map.
   * Returns the new entities (fewer when the map is full).
   */
  spawnEventMobs(tag: string, type: number, count: number, near?: [number, number]): number[] {
    const mt = MOB_TYPES[type];
    if (!mt) throw new Error(`unknown mob type ${type}`);
    const rand = rng(hashString(`${this.seed}:${this.def.name}:${tag}:${this.tick}`));
    const a = this.arena;
    const out: number[] = [];
    for (let k = 0; k < count; k++) {
      let at: [number, number] | undefined;
      for (let tries = 0; !at && tries < 200; tries++) {
        // Near a point: widening rings around it; otherwise anywhere.
        const r = near ? Math.min(1 + Math.floor(tries / 8), 16) : 0;
        const x = near ? near[0] + Math.floor(rand() * (2 * r + 1)) - r : Math.floor(rand() * this.def.width);
        const y = near
          ? near[1] + Math.floor(rand() * (2 * r + 1)) - r
          : Math.floor(rand() * this.def.height);
        if (near && k === 0 && tries === 0 && isWalkable(this.def, near[0], near[1])) at = near;
        else if (isWalkable(this.def, x, y)) at = [x, y];
      }
      if (!at) continue;
      const i = this.alloc.alloc();
      if (i === undefined) break;
      this.place(i, KIND_MOB, at[0] + 0.5, at[1] + 0.5, mt.hp, mt.hp);
      a.mobType[i] = type;
      a.atk[i] = mt.atk;
      a.speed[i] = mt.speed / this.params.tickHz;
      a.spawnX[i] = at[0] + 0.5;
      a.spawnY[i] = at[1] + 0.5;
      this.eventMobs.set(i, tag);
      out.push(i);
    }
    rebuildGrid(this.grid, a, this.bank, this.alloc.highWater, this.scratch);
    return out;
  }

  /** Removes a world-event mob at once (its event ended); views drop it on the next tick. */
  despawn(i: number): void {
    if (!this.eventMobs.delete(i)) return;
    this.corpses.delete(i);
    const a = this.arena;
    a.kind[i] = KIND_FREE;
    a.flags[i] = 0;
    a.flags[a.capacity + i] = 0;
    a.target[i] = -1;
    this.alloc.release(i);
    // Nobody keeps attacking a mob that is gone.
    for (const s of this.sessions.values()) if (a.target[s.entity] === i) a.target[s.entity] = -1;
  }

  /** Despawns every mob of one world event; returns how many were alive. */
  despawnEvent(tag: string): number {
    let alive = 0;
    for (const [i, t] of [...this.eventMobs]) {
      if (t !== tag) continue;
      if ((this.arena.flags[this.bank * this.arena.capacity + i]! & FLAG_ALIVE) !== 0) alive++;
      this.despawn(i);
    }
    rebuildGrid(this.grid, this.arena, this.bank, this.alloc.highWater, this.scratch);
    return alive;
  }

  /** A world event's announcement to the given sessions (every session of the map by default). */
  announce(event: string, text: string, sessions: readonly string[] = [...this.sessions.keys()]): void {
    if (sessions.length > 0)
      this.pendingEvents.push({ k: "announce", event, text, to: [...sessions].sort() });
  }

  /** Inputs received and not yet applied. */
  get pendingInputs(): number {
    return this.inbox.length;
  }

  // ---- the tick -------------------------------------------------------------------------------

  /**
   * A walk to cell (tx, ty). When the straight line is blocked, the walk follows the cell path
   * RO's path search finds (sim/path.ts), one straight segment at a time; otherwise it is one
   * segment (refused by the step if the target is out of reach).
   */
  private walkTo(s: Session, seq: number, tx: number, ty: number): void {
    const a = this.arena;
    const bank = this.bank;
    const c = bank * a.capacity + s.entity;
    const x = a.x[c]!;
    const y = a.y[c]!;
    if (
      a.p2p[s.entity] === 0 &&
      isWalkable(this.def, tx + 0.5, ty + 0.5) &&
      !lineWalkable(this.def, x, y, tx + 0.5, ty + 0.5)
    ) {
      const cells = findCellPath(this.def, Math.floor(x), Math.floor(y), tx, ty, this.params.maxWalk);
      const wps = cells ? waypoints(this.def, cells) : [];
      const first = wps.shift();
      if (first) {
        if (wps.length > 0) this.paths.set(s.session, { seq, at: first, rest: wps });
        pushEvent(a, bank, s.entity, EV_MOVE, seq, first[0], first[1]);
        return;
      }
    }
    pushEvent(a, bank, s.entity, EV_MOVE, seq, tx, ty);
  }

  /** Sessions walking a path: the next segment once the last one ended on its waypoint. */
  private advancePaths(): void {
    const a = this.arena;
    const bank = this.bank;
    for (const [sid, p] of this.paths) {
      const s = this.sessions.get(sid);
      if (!s) {
        this.paths.delete(sid);
        continue;
      }
      if (a.walking[s.entity] === 1) continue;
      const c = bank * a.capacity + s.entity;
      const arrived =
        Math.abs(a.x[c]! - (p.at[0] + 0.5)) < 0.01 && Math.abs(a.y[c]! - (p.at[1] + 0.5)) < 0.01;
      const next = arrived ? p.rest.shift() : undefined;
      if (!next) {
        this.paths.delete(sid);
        continue;
      }
      p.at = next;
      pushEvent(a, bank, s.entity, EV_MOVE, p.seq, next[0], next[1]);
    }
  }

  /** Applies the inputs received since the last tick; returns what the workers need. */
  prepare(): TickJob {
    const a = this.arena;
    const bank = this.bank;
    if (this.corpses.size > 0) {
      let gone = false;
      for (const [i, at] of this.corpses) {
        if (this.tick < at) continue;
        this.despawn(i);
        gone = true;
      }
      if (gone) rebuildGrid(this.grid, a, bank, this.alloc.highWater, this.scratch);
    }
    if (this.paths.size > 0) this.advancePaths();
    const inbox = this.inbox;
    this.inbox = [];
    for (const inp of inbox) {
      const s = this.sessions.get(inp.s);
      if (!s) continue;
      const seq = Number.isSafeInteger(inp.seq) ? inp.seq | 0 : 0;
      // Anything the player does replaces a path it was walking.
      this.paths.delete(s.session);
      switch (inp.k) {
        case "move":
          if (Number.isFinite(inp.x) && Number.isFinite(inp.y))
            this.walkTo(s, seq, clampInt(inp.x), clampInt(inp.y));
          break;
        case "pos":
          if (Number.isFinite(inp.x) && Number.isFinite(inp.y))
            pushEvent(a, bank, s.entity, EV_POS, seq, 0, 0, inp.x, inp.y);
          break;
        case "stop":
          pushEvent(a, bank, s.entity, EV_STOP, seq, 0, 0);
          break;
        case "attack":
          if (Number.isSafeInteger(inp.target)) pushEvent(a, bank, s.entity, EV_ATTACK, seq, inp.target, 0);
          break;
        case "chat": {
          if (typeof inp.text !== "string" || inp.text.length === 0) break;
          const text = inp.text.slice(0, MAX_CHAT_LENGTH);
          const c = bank * a.capacity + s.entity;
          this.pendingEvents.push({
            k: "chat",
            from: s.entity,
            name: s.name,
            text,
            to: this.recipients(a.x[c]!, a.y[c]!, bank),
          });
          break;
        }
      }
    }
    return { tick: this.tick, highWater: this.alloc.highWater };
  }

  /** Merges the slices' results, flips the banks and rebuilds the grid. */
  finish(outs: SliceResult[]): TickResult {
    const a = this.arena;
    const tick = this.tick;
    const stats: TickStats = { players: 0, mobs: 0, fanout: 0, dropped: 0, corrections: [0, 0, 0] };
    const frames: EncodedFrame[] = [];
    for (const out of outs) {
      stats.players += out.players;
      stats.mobs += out.mobs;
      stats.fanout += out.fanout;
      stats.dropped += out.dropped;
      for (let k = 0; k < 3; k++) stats.corrections[k]! += out.corrections[k]!;
      frames.push(...out.frames);
    }

    // Events, in an order that does not depend on how entities were split across threads.
    const raw: number[][] = [];
    for (const out of outs) {
      for (let k = 0; k < out.events.length; k += OUT_WORDS) raw.push(out.events.slice(k, k + OUT_WORDS));
    }
    raw.sort(compareTuples);

    this.tick++;
    const bank = this.bank;
    rebuildGrid(this.grid, a, bank, this.alloc.highWater, this.scratch);

    const events = this.pendingEvents;
    this.pendingEvents = [];
    const at = (i: number): [number, number] => [a.x[bank * a.capacity + i]!, a.y[bank * a.capacity + i]!];
    for (const [type, p1, p2, p3, p4] of raw as Array<[number, number, number, number, number]>) {
      switch (type) {
        case OUT_HIT:
          events.push({
            k: "hit",
            from: p1,
            target: p2,
            damage: p3,
            hpLeft: p4,
            to: this.recipients(...at(p2), bank),
          });
          break;
        case OUT_DEATH: {
          events.push({ k: "death", entity: p1, killer: p2, to: this.recipients(...at(p1), bank) });
          const killer = this.byEntity.get(p2);
          if (a.kind[p1] === KIND_MOB && killer) {
            const mt = MOB_TYPES[a.mobType[p1]!]!;
            const exp = Math.round(mt.exp * this.expRate);
            const zeny = Math.round(mt.zeny * this.dropRate);
            killer.exp += exp;
            killer.zeny += zeny;
            events.push({
              k: "loot",
              session: killer.session,
              characterId: killer.characterId,
              exp,
              zeny,
              to: [killer.session],
            });
          }
          const tag = this.eventMobs.get(p1);
          if (tag !== undefined) {
            // World-event mobs do not come back: the corpse stays a moment, then the entity goes.
            a.respawnAt[p1] = 0x7fffffff;
            this.corpses.set(p1, this.tick + this.params.tickHz * 2);
            this.onEventMobDeath?.(tag, p1);
          }
          break;
        }
        case OUT_RESPAWN:
          events.push({
            k: "respawn",
            entity: p1,
            x: p2 / FIXED,
            y: p3 / FIXED,
            to: this.recipients(...at(p1), bank),
          });
          break;
      }
    }
    if (this.def.warps.length > 0) this.portals(events);
    return { tick, frames, events, stats };
  }

  /**
   * A player who stepped onto a portal gets one `warp` event (the gateway moves the session to
   * the portal's map); another only after stepping off and on again.
   */
  private portals(events: ZoneEvent[]): void {
    const a = this.arena;
    const base = this.bank * a.capacity;
    for (const s of this.sessions.values()) {
      // Read in place: this runs for every player every tick.
      const c = base + s.entity;
      const alive = (a.flags[c]! & FLAG_ALIVE) !== 0;
      const w = alive
        ? this.portalAt.get(Math.floor(a.y[c]!) * this.def.width + Math.floor(a.x[c]!))
        : undefined;
      if (!w) {
        this.onPortal.delete(s.session);
        continue;
      }
      if (this.onPortal.has(s.session)) continue;
      this.onPortal.add(s.session);
      events.push({ k: "warp", session: s.session, map: w.to.map, x: w.to.x, y: w.to.y, to: [s.session] });
    }
  }

  /**
   * A whole tick on this thread. `slices` > 1 runs the slices the workers would run, one after
   * the other: the result must not depend on it.
   */
  stepInline(slices = 1): TickResult {
    this.prepare();
    return this.finish(this.runSlices(slices));
  }

  /** Runs every slice of the prepared tick on this thread, as the workers would. */
  runSlices(slices = 1): SliceResult[] {
    while (this.inlineStates.length < slices)
      this.inlineStates.push({ sim: newSliceState(), frames: newFrameScratch() });
    const outs: SliceResult[] = [];
    for (let w = 0; w < slices; w++) {
      const st = this.inlineStates[w]!;
      const out = runSlice(
        {
          arena: this.arena,
          grid: this.grid,
          map: this.def,
          params: this.params,
          tick: this.tick,
          highWater: this.alloc.highWater,
          worker: w,
          workers: slices,
          aoiByGateway: this.aoiByGateway(slices),
        },
        st.sim,
      );
      outs.push(assembleFrames(this.arena, this.bank, this.tick, this.frameContext(), out, st.frames));
    }
    return outs;
  }

  /** What frame assembly needs besides the arena. */
  frameContext(): FrameContext {
    return { map: this.def.name, mode: this.mode, fence: this.fence, sessions: this.byEntity };
  }

  /** Sessions whose character is within view of (x, y). */
  recipients(x: number, y: number, bank = this.bank): string[] {
    const near = this.near;
    const n = collectInRange(this.grid, this.arena, bank, x, y, VIEW_RANGE, near, 0, near.length);
    const to: string[] = [];
    for (let k = 0; k < n; k++) {
      const s = this.byEntity.get(near[k]!);
      if (s) to.push(s.session);
    }
    return to.sort();
  }

  entityState(i: number, bank = this.bank): EntityState {
    return entityState(this.arena, i, bank, this.byEntity);
  }

  /** Every live entity's public state plus the sessions' progress: equal digests, equal worlds. */
  digest(): string {
    const a = this.arena;
    const parts: string[] = [`t=${this.tick}`];
    for (let i = 0; i < this.alloc.highWater; i++) {
      if (a.kind[i] === KIND_FREE) continue;
      const e = this.entityState(i);
      parts.push(
        `${i}:${e.kind}:${a.x[this.bank * a.capacity + i]}:${a.y[this.bank * a.capacity + i]}:${e.hp}:${e.alive}`,
      );
    }
    for (const s of [...this.sessions.values()].sort((p, q) => p.entity - q.entity))
      parts.push(`${s.session}:${s.exp}:${s.zeny}`);
    return parts.join("|");
  }
}

function clampInt(v: number): number {
  return Math.max(-(2 ** 30), Math.min(2 ** 30, Math.floor(v)));
}

function compareTuples(p: number[], q: number[]): number {
  for (let k = 0; k < p.length; k++) if (p[k] !== q[k]) return p[k]! - q[k]!;
  return 0;
}
