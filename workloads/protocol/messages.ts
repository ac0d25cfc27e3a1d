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
  enumOf,
  f64,
  type Infer,
  list,
  opt,
  ProtocolError,
  REASON_CODES,
  Reader,
  str,
  struct,
  u16,
  u32,
  Writer,
} from "./schema.ts";

export const PROTOCOL_VERSION = 1;

/** Caps on a whole frame, by who sends it. */
export const MAX_CLIENT_FRAME = 16 * 1024;
export const MAX_SERVER_FRAME = 256 * 1024;
export const MAX_PEER_FRAME = 1024;

const id = str(64);
const mapName = str(32);
const charName = str(32);
const chatChannel = enumOf("say", "shout");
export const clientKinds = ["legacy", "p2p"] as const;
export const modes = ["server", "p2p"] as const;

export const entity = struct({
  id,
  kind: enumOf("player", "mob", "npc"),
  name: opt(charName),
  x: u16,
  y: u16,
  hp: opt(u32),
});
export type Entity = Infer<typeof entity>;

/** Who sends a message: client to server, server to client, either, or peer to peer (data channel). */
type Dir = "c2s" | "s2c" | "both" | "p2p";

interface MessageDef {
  id: number;
  dir: Dir;
  /** Server-authoritative: carries the session's sequence number. */
  seq: boolean;
  body: Codec<unknown>;
}

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
      session: id,
      character: id,
      name: charName,
      map: mapName,
      x: u16,
      y: u16,
      mode: enumOf(...modes),
      serverTime: f64,
    }),
  },
  move: { id: 3, dir: "c2s", seq: false, body: struct({ x: u16, y: u16 }) },
  chat: { id: 4, dir: "c2s", seq: false, body: struct({ channel: chatChannel, text: str(256) }) },
  attack: { id: 5, dir: "c2s", seq: false, body: struct({ target: id }) },
  ping: { id: 6, dir: "c2s", seq: false, body: struct({ t: f64 }) },
  pong: { id: 7, dir: "s2c", seq: false, body: struct({ t: f64, serverTime: f64 }) },
  aoi: {
    id: 8,
    dir: "s2c",
    seq: true,
    body: struct({
      map: mapName,
      tick: u32,
      /** Server time the update was produced (ms since the epoch), for latency figures. */
      t: f64,
      entities: list(entity, 2048),
      gone: list(id, 2048),
    }),
  },
  chatMsg: {
    id: 9,
    dir: "s2c",
    seq: true,
    body: struct({ from: id, name: charName, channel: chatChannel, text: str(256), t: f64 }),
  },
  combat: {
    id: 10,
    dir: "s2c",
    seq: true,
    body: struct({ attacker: id, target: id, damage: u32, hp: u32, killed: bool, t: f64 }),
  },
  mode: {
    id: 11,
    dir: "s2c",
    seq: true,
    body: struct({ mode: enumOf(...modes), reason: str(128), epoch: u32 }),
  },
  mapChange: { id: 12, dir: "s2c", seq: true, body: struct({ map: mapName, x: u16, y: u16 }) },
  /** The peers a P2P client should hold data channels with (its mesh); empty in server mode. */
  peers: { id: 13, dir: "s2c", seq: true, body: struct({ peers: list(id, 64) }) },
  /** WebRTC signaling relayed by the gateway: `peer` is the target (c2s) or the sender (s2c). */
  signal: { id: 14, dir: "both", seq: false, body: struct({ peer: id, data: str(8192) }) },
  /** The mesh peers a P2P client has open channels with: the gateway stops relaying their moves. */
  meshReport: { id: 15, dir: "c2s", seq: false, body: struct({ connected: list(id, 64) }) },
  error: {
    id: 16,
    dir: "s2c",
    seq: false,
    body: struct({ reason: enumOf(...REASON_CODES), message: str(256) }),
  },
  /** Peer to peer over a data channel: movement and cosmetic state, never authoritative. */
  peerMove: { id: 17, dir: "p2p", seq: false, body: struct({ id, x: u16, y: u16, t: f64, n: u32 }) },
} as const satisfies Record<string, MessageDef>;

type Defs = typeof MESSAGES;
export type MessageType = keyof Defs;
type SeqPart<K extends MessageType> = Defs[K]["seq"] extends true ? { seq: number } : unknown;
export type MessageOf<K extends MessageType> = { type: K } & SeqPart<K> & Infer<Defs[K]["body"]>;
export type Message = { [K in MessageType]: MessageOf<K> }[MessageType];

type TypesFrom<D> = { [K in MessageType]: Defs[K]["dir"] extends D ? K : never }[MessageType];
export type ClientMessage = { [K in TypesFrom<"c2s" | "both">]: MessageOf<K> }[TypesFrom<"c2s" | "both">];
export type ServerMessage = { [K in TypesFrom<"s2c" | "both">]: MessageOf<K> }[TypesFrom<"s2c" | "both">];
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
  const w = new Writer(64);
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

const accepted: Record<Accept, ReadonlySet<Dir>> = {
  c2s: new Set<Dir>(["c2s", "both"]),
  s2c: new Set<Dir>(["s2c", "both"]),
  p2p: new Set<Dir>(["p2p"]),
};
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
  if (!accepted[accept].has(c.dir))
    throw new ProtocolError("unexpected_type", `${c.type} is not valid in this direction`);
  const seq = c.seq ? r.u32() : undefined;
  const body = c.body.dec(r);
  if (r.pos !== frame.length) throw new ProtocolError("bad_frame", "trailing bytes");
  return (seq === undefined ? { type: c.type, ...body } : { type: c.type, seq, ...body }) as Message;
}
