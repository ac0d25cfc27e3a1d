// AOI frames are assembled and encoded where the views were computed: in each worker, for the
// players of its slice. The main thread then only publishes bytes, so frame building and
// MessagePack encoding scale with the worker threads instead of serialising the tick.
//
// A worker writes one frame per gateway that has players in its slice: with T threads a gateway
// gets up to T frames per map and tick, each self-contained (own entity table), and each
// session appears in exactly one of them (see platform/bus/contract.ts).
import {
  type AoiFrame,
  type Correction,
  type EntityState,
  EntityTableWriter,
  encodeFrameWith,
  type MapMode,
  type SessionView,
} from "../../../platform/bus/contract.ts";
import { type Arena, FIXED, FLAG_ALIVE, KIND_PLAYER } from "./arena.ts";
import { MOB_TYPES } from "./maps.ts";
import {
  CORR_REJECT,
  CORR_SMOOTH,
  CORR_SNAP,
  OUT_CORRECTION,
  OUT_WORDS,
  REASONS,
  type SliceOutput,
} from "./step.ts";

export interface SessionInfo {
  session: string;
  gateway: string;
  name: string;
}

export interface FrameContext {
  map: string;
  mode: MapMode;
  fence: string;
  /** Every session of the map by entity (names of visible players, gateways of own players). */
  sessions: ReadonlyMap<number, SessionInfo>;
}

export interface EncodedFrame {
  gateway: string;
  data: Uint8Array;
}

/** What a slice hands back to the main thread. */
export interface SliceResult {
  events: number[];
  frames: EncodedFrame[];
  players: number;
  mobs: number;
  fanout: number;
  dropped: number;
  /** Corrections sent, by kind: smooth, snap, reject. */
  corrections: [number, number, number];
}

/** Per-slice scratch kept between ticks: entity-to-index tables per gateway. */
export interface FrameScratch {
  gateways: Map<string, { stamp: Int32Array; at: Int32Array }>;
  stamp: number;
}

export function newFrameScratch(): FrameScratch {
  return { gateways: new Map(), stamp: 0 };
}

const CORR_KINDS: Record<number, Correction["kind"]> = {
  [CORR_SMOOTH]: "smooth",
  [CORR_SNAP]: "snap",
  [CORR_REJECT]: "reject",
};

const round16 = (v: number) => Math.round(v * 16) / 16;

export function entityState(
  a: Arena,
  i: number,
  bank: number,
  sessions: ReadonlyMap<number, SessionInfo>,
): EntityState {
  const c = bank * a.capacity + i;
  const player = a.kind[i] === KIND_PLAYER;
  return {
    id: i,
    kind: player ? "player" : "mob",
    x: round16(a.x[c]!),
    y: round16(a.y[c]!),
    hp: a.hp[c]!,
    maxHp: a.maxHp[i]!,
    alive: (a.flags[c]! & FLAG_ALIVE) !== 0,
    name: player ? (sessions.get(i)?.name ?? "") : MOB_TYPES[a.mobType[i]!]!.name,
  };
}

/**
 * Turns one slice's output into encoded frames per gateway. Views were computed from bank
 * `bank` (the start-of-tick state), so entity states are read from it too. Corrections leave
 * the event list here: they only matter to their own session.
 */
export function assembleFrames(
  a: Arena,
  bank: number,
  tick: number,
  ctx: FrameContext,
  out: SliceOutput,
  scratch: FrameScratch,
): SliceResult {
  const stamp = ++scratch.stamp;
  const cap = a.capacity;
  const frames = new Map<
    string,
    { frame: Omit<AoiFrame, "ents">; ents: EntityTableWriter; stamp: Int32Array; at: Int32Array }
  >();
  const frameFor = (gw: string) => {
    let f = frames.get(gw);
    if (!f) {
      let idx = scratch.gateways.get(gw);
      if (!idx) {
        idx = { stamp: new Int32Array(a.capacity), at: new Int32Array(a.capacity) };
        scratch.gateways.set(gw, idx);
      }
      f = {
        frame: { v: 1, map: ctx.map, tick, mode: ctx.mode, fence: ctx.fence, views: [] },
        ents: new EntityTableWriter(),
        ...idx,
      };
      frames.set(gw, f);
    }
    return f;
  };
  const viewOf = new Map<number, SessionView>();
  const sessionView = (entity: number, s: SessionInfo) => {
    let v = viewOf.get(entity);
    if (!v) {
      v = { session: s.session, self: entity, enter: [], update: [], leave: [] };
      viewOf.set(entity, v);
      frameFor(s.gateway).frame.views.push(v);
    }
    return v;
  };
  const v = out.views;
  for (let k = 0; k < v.length; ) {
    const p = v[k]!;
    const ne = v[k + 1]!;
    const nu = v[k + 2]!;
    const nl = v[k + 3]!;
    k += 4;
    const s = ctx.sessions.get(p);
    if (!s) {
      k += ne + nu + nl;
      continue;
    }
    const f = frameFor(s.gateway);
    const sv = sessionView(p, s);
    const ents = f.ents;
    const fs = f.stamp;
    const at = f.at;
    for (let e = 0; e < ne + nu; e++) {
      const id = v[k++]!;
      if (fs[id] !== stamp) {
        fs[id] = stamp;
        const c = bank * cap + id;
        const player = a.kind[id] === KIND_PLAYER;
        at[id] = ents.add(
          id,
          player ? "player" : "mob",
          (a.flags[c]! & FLAG_ALIVE) !== 0,
          player ? (ctx.sessions.get(id)?.name ?? "") : MOB_TYPES[a.mobType[id]!]!.name,
          a.x[c]!,
          a.y[c]!,
          a.hp[c]!,
          a.maxHp[id]!,
        );
      }
      (e < ne ? sv.enter : sv.update).push(at[id]!);
    }
    for (let e = 0; e < nl; e++) sv.leave.push(v[k++]!);
  }
  const events: number[] = [];
  const corrections: [number, number, number] = [0, 0, 0];
  for (let k = 0; k < out.events.length; k += OUT_WORDS) {
    if (out.events[k] !== OUT_CORRECTION) {
      for (let w = 0; w < OUT_WORDS; w++) events.push(out.events[k + w]!);
      continue;
    }
    const entity = out.events[k + 1]!;
    const s = ctx.sessions.get(entity);
    const kind = out.events[k + 3]!;
    corrections[kind]!++;
    if (!s) continue;
    const sv = sessionView(entity, s);
    sv.corrections ??= [];
    sv.corrections.push({
      seq: out.events[k + 2]!,
      kind: CORR_KINDS[kind]!,
      x: out.events[k + 4]! / FIXED,
      y: out.events[k + 5]! / FIXED,
      reason: REASONS[out.events[k + 6]!]!,
    });
  }
  return {
    events,
    frames: [...frames].map(([gateway, f]) => ({ gateway, data: encodeFrameWith(f.frame, f.ents) })),
    players: out.players,
    mobs: out.mobs,
    fanout: out.fanout,
    dropped: out.dropped,
    corrections,
  };
}
