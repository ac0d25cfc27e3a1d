// The wire protocol between clients, the gateway and peers: one table below defines every
// message; the encoder, the validating decoder and the TypeScript types all come from it.
//
// Frame: [version u8][type u8][seq u32 LE, server-authoritative messages only][body fields].
// `seq` counts a session's server-authoritative messages from 1 with no gaps, across map
// changes and mode switches, so a client proves it lost or reordered nothing.
// Versioning: a new field or message means a new PROTOCOL_VERSION; a peer speaking another
// version is refused with `unsupported_version`. Type ids and reason codes are append-only.
import {
  bool,
  type Codec,
  cell,
  enumOf,
  f64,
  type Infer,
  list,
  ProtocolError,
  REASON_CODES,
  Reader,
  str,
  struct,
  u8,
  u16,
  u32,
  Writer,
} from "./schema.ts";

export const PROTOCOL_VERSION = 3;

/** Caps on a whole frame, by who sends it. */
export const MAX_CLIENT_FRAME = 16 * 1024;
export const MAX_SERVER_FRAME = 256 * 1024;
export const MAX_PEER_FRAME = 1024;

const sessionId = str(64);
const mapName = str(32);
const charName = str(32);
/** Entity ids are small integers assigned by the map's owner (see platform/bus/contract.ts). */
const entityId = u32;
export const clientKinds = ["legacy", "p2p"] as const;
/** A map's mode as the map server reports it; "fallback" behaves as "server". */
export const modes = ["server", "p2p", "fallback"] as const;
export type Mode = (typeof modes)[number];

export const entity = struct({
  id: entityId,
  kind: enumOf("player", "mob"),
  name: charName,
  x: cell,
  y: cell,
  hp: u32,
  maxHp: u32,
  alive: bool,
});
export type Entity = Infer<typeof entity>;

export const correction = struct({
  /** The client input counter (`n`) this answers. */
  n: u32,
  kind: enumOf("smooth", "snap", "reject"),
  x: cell,
  y: cell,
  reason: str(64),
});
export type Correction = Infer<typeof correction>;

/** Who sends a message: client to server, server to client, or peer to peer (data channel). */
type Dir = "c2s" | "s2c" | "p2p";

interface MessageDef {
  id: number;
  dir: Dir;
  /** Server-authoritative: carries the session's sequence number. */
  seq: boolean;
  body: Codec<unknown>;
}

// Client inputs carry `n`, the client's own input counter, which corrections refer to.
// Retired ids, never to be reused: 18 (peers) and 19 (signal), the gateway's own meshes and
// WebRTC signaling before the coordinator took them over.
export const MESSAGES = {
  hello: {
    id: 1,
    dir: "c2s",
    seq: false,
    body: struct({ token: str(4096), kind: enumOf(...clientKinds) }),
  },
  welcome: {
    id: 2,
    dir: "s2c",
    seq: true,
    body: struct({
      session: sessionId,
      character: str(64),
      name: charName,
      map: mapName,
      entity: entityId,
      x: cell,
      y: cell,
      hp: u32,
      maxHp: u32,
      width: u16,
      height: u16,
      tickHz: u8,
      mode: enumOf(...modes),
      serverTime: f64,
    }),
  },
  /** Walk to a cell (server-side movement; every mode). */
  move: { id: 3, dir: "c2s", seq: false, body: struct({ n: u32, x: u16, y: u16 }) },
  /** A P2P client's own position while its map is in p2p mode (validated by the map server). */
  pos: { id: 4, dir: "c2s", seq: false, body: struct({ n: u32, x: cell, y: cell }) },
  stop: { id: 5, dir: "c2s", seq: false, body: struct({ n: u32 }) },
  chat: { id: 6, dir: "c2s", seq: false, body: struct({ n: u32, text: str(800) }) },
  attack: { id: 7, dir: "c2s", seq: false, body: struct({ n: u32, target: entityId }) },
  ping: { id: 8, dir: "c2s", seq: false, body: struct({ t: f64 }) },
  pong: { id: 9, dir: "s2c", seq: false, body: struct({ t: f64, serverTime: f64 }) },
  /** One tick of the client's area of interest. */
  aoi: {
    id: 10,
    dir: "s2c",
    seq: true,
    body: struct({
      map: mapName,
      tick: u32,
      /** When the gateway received the update (ms since the epoch), for latency figures. */
      t: f64,
      mode: enumOf(...modes),
      enter: list(entity, 4096),
      update: list(entity, 4096),
      leave: list(entityId, 4096),
      corrections: list(correction, 64),
    }),
  },
  chatMsg: {
    id: 11,
    dir: "s2c",
    seq: true,
    body: struct({ from: entityId, name: charName, text: str(800), t: f64 }),
  },
  combat: {
    id: 12,
    dir: "s2c",
    seq: true,
    body: struct({ from: entityId, target: entityId, damage: u32, hpLeft: u32, t: f64 }),
  },
  death: { id: 13, dir: "s2c", seq: true, body: struct({ entity: entityId, killer: entityId }) },
  loot: { id: 14, dir: "s2c", seq: true, body: struct({ exp: u32, zeny: u32 }) },
  respawn: { id: 15, dir: "s2c", seq: true, body: struct({ entity: entityId, x: cell, y: cell }) },
  /** The client's map changed mode: a P2P client switches paths when it reads this. */
  mode: {
    id: 16,
    dir: "s2c",
    seq: true,
    body: struct({ map: mapName, mode: enumOf(...modes), reason: str(128) }),
  },
  /** The session now plays on another map (possibly owned by another map-server pod). */
  mapChange: {
    id: 17,
    dir: "s2c",
    seq: true,
    body: struct({
      map: mapName,
      entity: entityId,
      x: cell,
      y: cell,
      width: u16,
      height: u16,
      mode: enumOf(...modes),
    }),
  },
  /**
   * The gateway sessions of the coordinator-mesh mates a P2P client has open channels with: the
   * gateway stops relaying their moves.
   */
  meshReport: { id: 20, dir: "c2s", seq: false, body: struct({ connected: list(sessionId, 64) }) },
  error: {
    id: 21,
    dir: "s2c",
    seq: false,
    body: struct({ reason: enumOf(...REASON_CODES), message: str(256) }),
  },
  /**
   * The gateway missed some of the map's updates (its bus connection dropped): forget every
   * entity seen; the whole view follows as entering.
   */
  viewReset: { id: 23, dir: "s2c", seq: true, body: struct({}) },
  /**
   * The P2P client configuration of the session's zone (platform/protocol/p2pconfig.ts, JSON):
   * sent to P2P sessions after the welcome and whenever it changes (flags, mode, map, TURN
   * credentials). Added in protocol version 2.
   */
  p2pConfig: { id: 24, dir: "s2c", seq: true, body: struct({ config: str(16_384) }) },
  /**
   * A world event's announcement (WorldEvent resources, delivered by the global orchestrator):
   * `event` names the occurrence, `text` is said to every player of the event's maps. Added in
   * protocol version 3.
   */
  announce: {
    id: 25,
    dir: "s2c",
    seq: true,
    body: struct({ event: str(160), text: str(800), t: f64 }),
  },
  /** Peer to peer over a data channel: movement, never authoritative. */
  peerMove: {
    id: 22,
    dir: "p2p",
    seq: false,
    body: struct({ entity: entityId, x: cell, y: cell, t: f64, n: u32 }),
  },
} as const satisfies Record<string, MessageDef>;

type Defs = typeof MESSAGES;
export type MessageType = keyof Defs;
type SeqPart<K extends MessageType> = Defs[K]["seq"] extends true ? { seq: number } : unknown;
export type MessageOf<K extends MessageType> = { type: K } & SeqPart<K> & Infer<Defs[K]["body"]>;
export type Message = { [K in MessageType]: MessageOf<K> }[MessageType];

type TypesFrom<D> = { [K in MessageType]: Defs[K]["dir"] extends D ? K : never }[MessageType];
export type ClientMessage = { [K in TypesFrom<"c2s">]: MessageOf<K> }[TypesFrom<"c2s">];
export type ServerMessage = { [K in TypesFrom<"s2c">]: MessageOf<K> }[TypesFrom<"s2c">];
export type PeerMessage = { [K in TypesFrom<"p2p">]: MessageOf<K> }[TypesFrom<"p2p">];
/** Server messages that carry a sequence number. */
export type SequencedType = { [K in MessageType]: Defs[K]["seq"] extends true ? K : never }[MessageType];

interface Compiled {
  type: MessageType;
  id: number;
  dir: Dir;
  seq: boolean;
  body: Codec<Record<string, unknown>>;
}

const byType = new Map<string, Compiled>();
const byId: (Compiled | undefined)[] = [];
for (const [type, def] of Object.entries(MESSAGES) as [MessageType, MessageDef][]) {
  const c = { type, ...def } as Compiled;
  byType.set(type, c);
  byId[def.id] = c;
}

export function isSequenced(type: MessageType): type is SequencedType {
  return byType.get(type)!.seq;
}

/** Offset of the sequence number in a sequenced frame. */
export const SEQ_OFFSET = 2;

/** Encodes a message; throws RangeError when a field is out of its type's bounds. */
export function encode(msg: Message): Uint8Array {
  const c = byType.get(msg.type);
  if (!c) throw new RangeError(`unknown message type ${String(msg.type)}`);
  const w = new Writer(256);
  w.u8(PROTOCOL_VERSION);
  w.u8(c.id);
  if (c.seq) w.u32((msg as { seq?: number }).seq ?? 0);
  c.body.enc(w, msg as unknown as Record<string, unknown>);
  return w.finish();
}

/** A copy of a sequenced frame with its sequence number set: encode once, send to many. */
export function withSeq(frame: Uint8Array, seq: number): Uint8Array {
  const out = new Uint8Array(frame.length);
  out.set(frame);
  new DataView(out.buffer).setUint32(SEQ_OFFSET, seq, true);
  return out;
}

/** The type of a frame without decoding it (undefined when the header is not ours). */
export function peekType(frame: Uint8Array): MessageType | undefined {
  if (frame.length < 2 || frame[0] !== PROTOCOL_VERSION) return undefined;
  return byId[frame[1]!]?.type;
}

export type Accept = "c2s" | "s2c" | "p2p";

const defaultCap: Record<Accept, number> = {
  c2s: MAX_CLIENT_FRAME,
  s2c: MAX_SERVER_FRAME,
  p2p: MAX_PEER_FRAME,
};

export function decode(frame: Uint8Array, accept: "c2s", maxBytes?: number): ClientMessage;
export function decode(frame: Uint8Array, accept: "s2c", maxBytes?: number): ServerMessage;
export function decode(frame: Uint8Array, accept: "p2p", maxBytes?: number): PeerMessage;
export function decode(frame: Uint8Array, accept: Accept, maxBytes?: number): Message;
/**
 * Decodes and validates one frame that travels in direction `accept`. Throws ProtocolError
 * (and nothing else) on any malformed, oversized, unknown or misdirected frame.
 */
export function decode(frame: Uint8Array, accept: Accept, maxBytes = defaultCap[accept]): Message {
  if (!(frame instanceof Uint8Array)) throw new ProtocolError("bad_frame", "not a binary frame");
  if (frame.length > maxBytes) throw new ProtocolError("too_large", `frame over ${maxBytes} bytes`);
  const r = new Reader(frame);
  const version = r.u8();
  if (version !== PROTOCOL_VERSION)
    throw new ProtocolError("unsupported_version", `protocol version ${version} (want ${PROTOCOL_VERSION})`);
  const tid = r.u8();
  const c = byId[tid];
  if (!c) throw new ProtocolError("unknown_type", `unknown message type ${tid}`);
  if (c.dir !== accept)
    throw new ProtocolError("unexpected_type", `${c.type} is not valid in this direction`);
  const seq = c.seq ? r.u32() : undefined;
  const body = c.body.dec(r);
  if (r.pos !== frame.length) throw new ProtocolError("bad_frame", "trailing bytes");
  return (seq === undefined ? { type: c.type, ...body } : { type: c.type, seq, ...body }) as Message;
}

const aoiId = MESSAGES.aoi.id;
const aoiHead = struct({ map: mapName, tick: u32, t: f64, mode: enumOf(...modes) });
const corrections = list(correction, 64);

/**
 * Builds the `aoi` messages of one bus frame (one table of entity states shared by many
 * sessions' views) without re-encoding an entity per viewer: each entity of the table is
 * encoded once, and a session's message is assembled by copying bytes. The output is exactly
 * what `encode` gives for the same message (the tests hold it to that).
 */
export class AoiBatchEncoder {
  private readonly head: Uint8Array;
  private readonly ents: Uint8Array;
  private readonly offsets: Uint32Array;

  constructor(head: { map: string; tick: number; t: number; mode: Mode }, table: readonly Entity[]) {
    const hw = new Writer(64);
    aoiHead.enc(hw, head);
    this.head = hw.finish();
    const ew = new Writer(64 + table.length * 32);
    this.offsets = new Uint32Array(table.length + 1);
    for (let i = 0; i < table.length; i++) {
      entity.enc(ew, table[i]!);
      this.offsets[i + 1] = ew.pos;
    }
    this.ents = ew.buf;
  }

  get size(): number {
    return this.offsets.length - 1;
  }

  private span(indexes: readonly number[]): number {
    let n = 0;
    for (const i of indexes) {
      if (!(i >= 0 && i < this.size)) throw new RangeError(`entity index ${i} outside the table`);
      n += this.offsets[i + 1]! - this.offsets[i]!;
    }
    return n;
  }

  private put(out: Buffer, at: number, indexes: readonly number[]): number {
    out.writeUInt16LE(indexes.length, at);
    let p = at + 2;
    for (const i of indexes) {
      const from = this.offsets[i]!;
      const to = this.offsets[i + 1]!;
      out.set(this.ents.subarray(from, to), p);
      p += to - from;
    }
    return p;
  }

  /** One session's message; `enter` and `update` index the table, `leave` lists entity ids. */
  encode(
    seq: number,
    enter: readonly number[],
    update: readonly number[],
    leave: readonly number[],
    fixes: readonly Correction[] = [],
  ): Uint8Array {
    if (enter.length > 4096 || update.length > 4096 || leave.length > 4096)
      throw new RangeError("aoi list longer than 4096");
    if (!(seq >= 0 && seq <= 0xffffffff && Number.isInteger(seq))) throw new RangeError(`bad seq ${seq}`);
    const fixBytes = fixes.length === 0 ? undefined : encodeCorrections(fixes);
    const size =
      6 +
      this.head.length +
      6 +
      this.span(enter) +
      this.span(update) +
      leave.length * 4 +
      (fixBytes?.length ?? 2);
    // One exact allocation per message (from Node's pool for small ones): this runs once per
    // client per tick.
    const out = Buffer.allocUnsafe(size);
    out[0] = PROTOCOL_VERSION;
    out[1] = aoiId;
    out.writeUInt32LE(seq, 2);
    out.set(this.head, 6);
    let p = this.put(out, 6 + this.head.length, enter);
    p = this.put(out, p, update);
    out.writeUInt16LE(leave.length, p);
    p += 2;
    for (const id of leave) {
      if (!(id >= 0 && id <= 0xffffffff && Number.isInteger(id))) throw new RangeError(`bad entity id ${id}`);
      out.writeUInt32LE(id, p);
      p += 4;
    }
    if (fixBytes) out.set(fixBytes, p);
    else out.writeUInt16LE(0, p);
    return out;
  }
}

function encodeCorrections(fixes: readonly Correction[]): Uint8Array {
  const w = new Writer(2 + fixes.length * 80);
  corrections.enc(w, fixes as Correction[]);
  return w.finish();
}
