// The NATS contract between the gateway and the map servers: subjects, message types and their
// encoding. Both sides import this module; nothing else about the other side is assumed.
//
// Subjects (every token is a DNS-label-like name: no dots, spaces, `*` or `>`):
//
//   hp2p.<region>.<zone>.<map>.join       request/reply  gateway -> owner of <map>   JoinRequest -> JoinReply
//   hp2p.<region>.<zone>.<map>.leave      request/reply  gateway -> owner of <map>   LeaveRequest -> LeaveReply
//   hp2p.<region>.<zone>.<map>.in         core publish   gateway -> owner of <map>   InputBatch
//   hp2p.<region>.<zone>.<map>.aoi.<gw>   core publish   owner   -> gateway <gw>     AoiFrame
//   hp2p.<region>.<zone>.<map>.ev         JetStream      owner   -> every gateway    EventBatch (stream HP2P_EVENTS)
//   hp2p.<region>.<zone>.<map>.owner      core publish   owner   -> anyone           OwnerNotice
//   hp2p.<region>.<zone>.<map>.resync     core publish   gateway -> owner of <map>   ViewResync
//
// Routing. The gateway never needs to know which pod owns a map: only the owner (the holder of
// the map's etcd lease) subscribes to the map's `.join`, `.leave` and `.in` subjects, and it
// unsubscribes before it stops owning. A request with no owner fails fast with NATS "no
// responders"; the gateway retries it (a handover takes a few seconds), as it does on a timeout:
// an owner that loses the map while answering stays silent. A reply with ok=false is final
// (unknown character, map full). After a handover the new owner restores the map's sessions
// from Redis (session -> gateway, character, position, entity id), so connected clients keep
// playing without rejoining; an OwnerNotice with a new fence says it happened. Players keep
// their entity ids; mobs are respawned; each session's first frame from the new owner lists
// everything in view as `enter`, so a gateway may drop what it knew of the map on a new fence.
//
// Resync. AOI frames are deltas over core NATS: a gateway whose connection dropped has missed
// some, so after a reconnect it tells its clients to forget their views and asks each owner to
// send the whole view of its sessions again (ViewResync: the next frame lists it all as `enter`).
//
// Batching (5k clients at 20 Hz on 2 cores). Nothing is one message per player per tick:
// - input: the gateway collects its clients' inputs for one map and publishes one InputBatch per
//   map per flush (at most one per tick, 50 ms, or sooner when it holds MAX_INPUTS_PER_BATCH);
//   the map server drains everything received at the start of each tick.
// - AOI: per tick, the owner publishes one AoiFrame per (map, gateway that has sessions on the
//   map), only when something changed; each simulation thread builds and encodes the frames of
//   the players it handles, so the work scales with threads (when a map has fewer gateways than
//   threads, a gateway may get one frame per thread). A frame carries a deduplicated
//   table of entity states (`ents`) and, per session of that gateway, indexes into the table:
//   entities that entered the session's view, moved or changed in it, and ids that left it. An
//   entity seen by 40 players of one gateway is encoded once per frame. Every frame is
//   self-contained and a session appears in at most one frame per tick, so the gateway handles
//   frames one by one and turns each into one WebSocket message per client. With G gateways, M
//   maps and T threads that is at most G*M*T messages per tick.
// - events: chat, combat results, deaths and loot of one tick go out as one EventBatch per map
//   per tick on JetStream (stream HP2P_EVENTS, message id `<map>:<ownerFence>:<tick>` so a retried
//   publish is stored once). Each event lists the sessions that must receive it (`to`), already
//   filtered by area of interest, so the gateway delivers without any geometry. Events must not
//   be lost, so the gateway consumes them with a durable consumer per gateway; AOI frames are
//   superseded by the next tick and go over core NATS.
//
// Modes. Every AoiFrame and OwnerNotice carries the map's mode: "server" (authoritative for
// everything), "p2p" (positions of P2P sessions come from the clients' `pos` reports, validated)
// or "fallback" (P2P switched off by a failure; behaves as server mode). Legacy sessions always
// send `move`; P2P sessions send `pos` while the map is in p2p mode and `move` otherwise. A `pos`
// that breaks the validation bounds yields a Correction for that session: "smooth" (small
// excess: the server moved the entity as far as allowed toward the report) or "snap" (teleport,
// wall, out of bounds: the server kept its position and the client must jump back).
//
// Encoding: MessagePack (`encode`/`decode` below). Coordinates are map cells (floats while an
// entity walks between cells); ticks count from the owner's start; ids are strings except the
// per-map entity ids, which are small integers valid for one owner (`fence`).
// The map server writes AoiFrames with `encodeFrame`, which packs `ents` as one MessagePack
// extension (type 0x11, a fixed 24-byte record per entity plus a name table) instead of one map
// per entity: about a third of the bytes and a tenth of the encoding time. `decode` reads both
// forms and always returns plain EntityState objects, so readers need not care.
import { ExtensionCodec, decode as mpDecode, encode as mpEncode } from "@msgpack/msgpack";

export const SUBJECT_ROOT = "hp2p";
/** The JetStream stream that keeps zone events. */
export const EVENT_STREAM = "HP2P_EVENTS";
export const EVENT_STREAM_SUBJECTS = [`${SUBJECT_ROOT}.*.*.*.ev`];
/** Keep events long enough for a gateway restart to catch up. */
export const EVENT_STREAM_MAX_AGE_MS = 60 * 60 * 1000;
export const MAX_INPUTS_PER_BATCH = 512;

const TOKEN = /^[A-Za-z0-9_-]+$/;

function token(what: string, s: string): string {
  if (!TOKEN.test(s)) throw new Error(`invalid ${what} for a NATS subject token: ${JSON.stringify(s)}`);
  return s;
}

export interface MapAddress {
  region: string;
  zone: string;
  map: string;
}

function mapBase(a: MapAddress): string {
  return `${SUBJECT_ROOT}.${token("region", a.region)}.${token("zone", a.zone)}.${token("map", a.map)}`;
}

export const subjects = {
  join: (a: MapAddress) => `${mapBase(a)}.join`,
  leave: (a: MapAddress) => `${mapBase(a)}.leave`,
  input: (a: MapAddress) => `${mapBase(a)}.in`,
  aoi: (a: MapAddress, gateway: string) => `${mapBase(a)}.aoi.${token("gateway", gateway)}`,
  events: (a: MapAddress) => `${mapBase(a)}.ev`,
  owner: (a: MapAddress) => `${mapBase(a)}.owner`,
  resync: (a: MapAddress) => `${mapBase(a)}.resync`,
  /** What one gateway subscribes to for the AOI frames of every map of a region. */
  aoiForGateway: (region: string, gateway: string) =>
    `${SUBJECT_ROOT}.${token("region", region)}.*.*.aoi.${token("gateway", gateway)}`,
  /** The event filter of one region (for a gateway's durable consumer). */
  eventsForRegion: (region: string) => `${SUBJECT_ROOT}.${token("region", region)}.*.*.ev`,
  ownersForRegion: (region: string) => `${SUBJECT_ROOT}.${token("region", region)}.*.*.owner`,
};

/** Splits a map subject back into its address (undefined when it is not one of ours). */
export function parseMapSubject(
  subject: string,
): (MapAddress & { kind: string; gateway?: string }) | undefined {
  const p = subject.split(".");
  if (p[0] !== SUBJECT_ROOT || p.length < 5) return undefined;
  const [, region, zone, map, kind, gateway] = p as [string, string, string, string, string, string?];
  return { region, zone, map, kind, gateway };
}

export type MapMode = "server" | "p2p" | "fallback";

// ---- gateway -> map server -------------------------------------------------------------------

/** A client entering a map. The gateway has authenticated the client and its character. */
export interface JoinRequest {
  v: 1;
  /** The gateway's session id for this client; unique within the region. */
  session: string;
  /** characters.id (PostgreSQL bigint as a string). */
  characterId: string;
  /** The gateway instance that holds the client's connection (the `<gw>` of its AOI subject). */
  gateway: string;
  /** The client is P2P-enabled (it may send `pos` while the map is in p2p mode). */
  p2p: boolean;
}

export type JoinReply =
  | {
      v: 1;
      ok: true;
      /** The entity id of this session's character on the map. */
      entity: number;
      x: number;
      y: number;
      hp: number;
      maxHp: number;
      mode: MapMode;
      owner: string;
      fence: string;
      /** The map's size and tick rate, for the client. */
      width: number;
      height: number;
      tickHz: number;
    }
  | { v: 1; ok: false; error: string };

export interface LeaveRequest {
  v: 1;
  session: string;
  /** Leaving through a portal: the character is saved there, where the next owner loads it. */
  to?: { map: string; x: number; y: number };
}

/** Sent after the character was persisted to PostgreSQL. */
export type LeaveReply = { v: 1; ok: true } | { v: 1; ok: false; error: string };

/**
 * One client input. `seq` grows per session (the gateway passes the client's own counter);
 * corrections name the `seq` they answer.
 * - move:   walk to cell (x, y) (server-side movement; every mode).
 * - pos:    P2P-reported position (only P2P sessions in p2p mode; otherwise rejected).
 * - stop:   stop walking.
 * - chat:   say `text` to everyone in view (at most MAX_CHAT_LENGTH characters).
 * - attack: attack entity `target` until it dies or the session does something else.
 */
export type ClientInput =
  | { s: string; seq: number; k: "move"; x: number; y: number }
  | { s: string; seq: number; k: "pos"; x: number; y: number }
  | { s: string; seq: number; k: "stop" }
  | { s: string; seq: number; k: "chat"; text: string }
  | { s: string; seq: number; k: "attack"; target: number };

export const MAX_CHAT_LENGTH = 200;

export interface InputBatch {
  v: 1;
  gateway: string;
  inputs: ClientInput[];
}

// ---- map server -> gateway -------------------------------------------------------------------

export const ENTITY_KINDS = ["player", "mob"] as const;
export type EntityKind = (typeof ENTITY_KINDS)[number];

/** One entity's visible state; `x`, `y` rounded to 1/16 cell. */
export interface EntityState {
  id: number;
  kind: EntityKind;
  x: number;
  y: number;
  hp: number;
  maxHp: number;
  /** Alive and visible (false: dead, about to leave views). */
  alive: boolean;
  /** Display name (characters) or mob type. */
  name: string;
}

export interface Correction {
  /** The input's seq this answers. */
  seq: number;
  kind: "smooth" | "snap" | "reject";
  /** The authoritative position after the correction. */
  x: number;
  y: number;
  reason: string;
}

export interface SessionView {
  session: string;
  /** This session's own entity. */
  self: number;
  /** Indexes into AoiFrame.ents of entities that entered the view this tick. */
  enter: number[];
  /** Indexes into AoiFrame.ents of entities in view whose state changed this tick. */
  update: number[];
  /** Entity ids that left the view this tick. */
  leave: number[];
  corrections?: Correction[];
}

export interface AoiFrame {
  v: 1;
  map: string;
  tick: number;
  mode: MapMode;
  /** The owner's fence (the ownership key's create revision); a new owner means new entity ids. */
  fence: string;
  ents: EntityState[];
  views: SessionView[];
}

export type ZoneEvent =
  | { k: "chat"; from: number; name: string; text: string; to: string[] }
  | { k: "hit"; from: number; target: number; damage: number; hpLeft: number; to: string[] }
  | { k: "death"; entity: number; killer: number; to: string[] }
  | { k: "loot"; session: string; characterId: string; exp: number; zeny: number; to: string[] }
  | { k: "respawn"; entity: number; x: number; y: number; to: string[] }
  /** The session stepped onto a portal: its gateway moves it to `map` at (x, y). */
  | { k: "warp"; session: string; map: string; x: number; y: number; to: string[] }
  /** A world event's announcement (platform/bus/world.ts): `event` is the occurrence id. */
  | { k: "announce"; event: string; text: string; to: string[] };

export interface EventBatch {
  v: 1;
  map: string;
  tick: number;
  fence: string;
  owner: string;
  events: ZoneEvent[];
}

/** A gateway missed AOI frames: the owner sends its sessions' whole views again. */
export interface ViewResync {
  v: 1;
  gateway: string;
}

/** Published when a pod takes a map (also after a handover) and when its mode changes. */
export interface OwnerNotice {
  v: 1;
  map: string;
  owner: string;
  fence: string;
  mode: MapMode;
  tickHz: number;
}

// ---- encoding --------------------------------------------------------------------------------

/** Marks an entity list for the packed encoding. */
class EntityTable {
  readonly ents: readonly EntityState[];
  constructor(ents: readonly EntityState[]) {
    this.ents = ents;
  }
}

const ENTITY_TABLE_EXT = 0x11;
const ENTITY_RECORD = 24;
const KIND_CODES: Record<EntityKind, number> = { player: 0, mob: 1 };
const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder();

/**
 * Writes a packed entity table record by record, without EntityState objects (the map server's
 * hot path). Layout, little endian: u32 count, then per entity u32 id, u8 kind, u8 alive,
 * u16 name index, u32 x*16, u32 y*16, i32 hp, i32 maxHp; then u16 name count and the names
 * (u16 length + UTF-8).
 */
export class EntityTableWriter {
  private buf = new Uint8Array(4 + 64 * ENTITY_RECORD);
  private dv = new DataView(this.buf.buffer);
  private readonly names = new Map<string, number>();
  count = 0;

  /** Appends one entity; returns its index in the table. */
  add(
    id: number,
    kind: EntityKind,
    alive: boolean,
    name: string,
    x: number,
    y: number,
    hp: number,
    maxHp: number,
  ) {
    const o = 4 + this.count * ENTITY_RECORD;
    if (o + ENTITY_RECORD > this.buf.length) {
      const b = new Uint8Array(this.buf.length * 2);
      b.set(this.buf);
      this.buf = b;
      this.dv = new DataView(b.buffer);
    }
    let n = this.names.get(name);
    if (n === undefined) {
      n = this.names.size;
      this.names.set(name, n);
    }
    const dv = this.dv;
    dv.setUint32(o, id, true);
    dv.setUint8(o + 4, KIND_CODES[kind]);
    dv.setUint8(o + 5, alive ? 1 : 0);
    dv.setUint16(o + 6, n, true);
    dv.setUint32(o + 8, Math.round(x * 16), true);
    dv.setUint32(o + 12, Math.round(y * 16), true);
    dv.setInt32(o + 16, hp, true);
    dv.setInt32(o + 20, maxHp, true);
    return this.count++;
  }

  finish(): Uint8Array {
    const encoded = [...this.names.keys()].map((k) => utf8.encode(k));
    const end = 4 + this.count * ENTITY_RECORD;
    const out = new Uint8Array(end + 2 + encoded.reduce((n, b) => n + 2 + b.length, 0));
    out.set(this.buf.subarray(0, end));
    const dv = new DataView(out.buffer);
    dv.setUint32(0, this.count, true);
    dv.setUint16(end, encoded.length, true);
    let o = end + 2;
    for (const b of encoded) {
      dv.setUint16(o, b.length, true);
      out.set(b, o + 2);
      o += 2 + b.length;
    }
    return out;
  }
}

function packEntities(ents: readonly EntityState[]): Uint8Array {
  const w = new EntityTableWriter();
  for (const e of ents) w.add(e.id, e.kind, e.alive, e.name, e.x, e.y, e.hp, e.maxHp);
  return w.finish();
}

function unpackEntities(data: Uint8Array): EntityState[] {
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const n = dv.getUint32(0, true);
  let o = 4 + n * ENTITY_RECORD;
  if (o + 2 > data.length) throw new RangeError("truncated entity table");
  const names: string[] = [];
  for (let k = dv.getUint16(o, true), p = o + 2; k > 0; k--) {
    const len = dv.getUint16(p, true);
    names.push(fromUtf8.decode(data.subarray(p + 2, p + 2 + len)));
    p += 2 + len;
  }
  const ents: EntityState[] = new Array(n);
  o = 4;
  for (let i = 0; i < n; i++, o += ENTITY_RECORD) {
    ents[i] = {
      id: dv.getUint32(o, true),
      kind: ENTITY_KINDS[dv.getUint8(o + 4)] ?? "mob",
      x: dv.getUint32(o + 8, true) / 16,
      y: dv.getUint32(o + 12, true) / 16,
      hp: dv.getInt32(o + 16, true),
      maxHp: dv.getInt32(o + 20, true),
      alive: dv.getUint8(o + 5) === 1,
      name: names[dv.getUint16(o + 6, true)] ?? "",
    };
  }
  return ents;
}

const codec = new ExtensionCodec();
codec.register({
  type: ENTITY_TABLE_EXT,
  encode: (v: unknown) =>
    v instanceof EntityTableWriter ? v.finish() : v instanceof EntityTable ? packEntities(v.ents) : null,
  decode: (data: Uint8Array) => unpackEntities(data),
});

export function encode<T>(msg: T): Uint8Array {
  return mpEncode(msg, { extensionCodec: codec });
}

export function decode<T>(data: Uint8Array): T {
  return mpDecode(data, { extensionCodec: codec }) as T;
}

/** An AoiFrame with its entity table packed (see the header); `decode` returns the same frame. */
export function encodeFrame(frame: AoiFrame): Uint8Array {
  return encode({ ...frame, ents: new EntityTable(frame.ents) });
}

/** The same, for a frame whose entity table was written with an EntityTableWriter. */
export function encodeFrameWith(frame: Omit<AoiFrame, "ents">, ents: EntityTableWriter): Uint8Array {
  return encode({ ...frame, ents });
}

/** The JetStream message id of one map's event batch (deduplicated by the stream). */
export function eventMessageId(map: string, fence: string, tick: number): string {
  return `${map}:${fence}:${tick}`;
}
