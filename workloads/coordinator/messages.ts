// The coordinator's signaling protocol (WebSocket, binary frames), built from the wire
// protocol's schema helpers (platform/protocol/schema.ts): same encoding rules, same bounds
// checks, its own type table. Also the probe messages peers exchange over their data channels
// to measure round trip, loss and jitter.
//
// Frame: [COORD_PROTOCOL_VERSION u8][type u8][body fields]. Type ids are append-only.
import {
  bool,
  cell,
  enumOf,
  f64,
  type Infer,
  ProtocolError,
  Reader,
  str,
  struct,
  u16,
  u32,
  Writer,
} from "../../platform/protocol/schema.ts";

/** Distinct from the game protocol's version byte so a stray frame of one is never read as the other. */
export const COORD_PROTOCOL_VERSION = 0xc1;
export const MAX_COORD_FRAME = 32 * 1024;

const peerId = str(64);
const sdp = str(16_384);

export const linkStates = ["open", "failed", "closed"] as const;
export type LinkState = (typeof linkStates)[number];

/** A peer's view of its links, sent with every heartbeat (the coordinator aggregates them). */
export const quality = struct({
  /** Median round trip to its mesh peers, ms (0 when it has no open link). */
  rttMs: f64,
  /** Probes lost, percent. */
  lossPercent: f64,
  /** Mean absolute difference of consecutive round trips, ms. */
  jitterMs: f64,
  /** Uplink the client can spare for the mesh, kbit/s (declared). */
  kbps: u32,
  /** Links with an open data channel. */
  open: u16,
});
export type Quality = Infer<typeof quality>;

interface Def {
  id: number;
  dir: "c2s" | "s2c" | "p2p";
  body: ReturnType<typeof struct>;
}

export const COORD_MESSAGES = {
  // ---- client to coordinator ----
  /** First frame: the character token (zone from its map), the gateway session and entity. */
  join: {
    id: 1,
    dir: "c2s",
    body: struct({ token: str(4096), session: str(64), entity: u32, x: cell, y: cell }),
  },
  leave: { id: 2, dir: "c2s", body: struct({}) },
  /** `n` numbers the offerer's attempts at a link; an answer echoes it, so a stale one is ignored. */
  offer: { id: 3, dir: "c2s", body: struct({ peer: peerId, n: u16, sdp }) },
  answer: { id: 4, dir: "c2s", body: struct({ peer: peerId, n: u16, sdp }) },
  candidate: { id: 5, dir: "c2s", body: struct({ peer: peerId, candidate: str(1024) }) },
  /** Liveness, position and link quality; answered by `ack`. */
  heartbeat: { id: 6, dir: "c2s", body: struct({ t: f64, x: cell, y: cell, q: quality }) },
  /** A link opened, or could not be made (the pair then goes through the server relay), or closed. */
  link: { id: 7, dir: "c2s", body: struct({ peer: peerId, state: enumOf(...linkStates) }) },

  // ---- coordinator to client ----
  joined: {
    id: 20,
    dir: "s2c",
    body: struct({ peer: peerId, zone: str(64), replica: str(64), heartbeatMs: u16, timeoutMs: u16 }),
  },
  /** A mesh mate: `offerer` says which side creates the offer. */
  peerJoined: {
    id: 21,
    dir: "s2c",
    body: struct({ peer: peerId, session: str(64), entity: u32, mesh: str(96), offerer: bool }),
  },
  peerLeft: { id: 22, dir: "s2c", body: struct({ peer: peerId, reason: str(64) }) },
  offerFrom: { id: 23, dir: "s2c", body: struct({ peer: peerId, n: u16, sdp }) },
  answerFrom: { id: 24, dir: "s2c", body: struct({ peer: peerId, n: u16, sdp }) },
  candidateFrom: { id: 25, dir: "s2c", body: struct({ peer: peerId, candidate: str(1024) }) },
  ack: { id: 26, dir: "s2c", body: struct({ t: f64 }) },
  /** This pair exchanges through the server relay (its direct connection could not be made). */
  relay: { id: 27, dir: "s2c", body: struct({ peer: peerId }) },
  /** The mesh's host (best round trip, loss and bandwidth, with hysteresis). */
  host: { id: 28, dir: "s2c", body: struct({ mesh: str(96), peer: peerId }) },
  /** The zone's P2P state as the coordinator decides it (quality thresholds, recovery). */
  zoneMode: {
    id: 29,
    dir: "s2c",
    body: struct({ mode: enumOf("p2p", "fallback"), reason: str(256) }),
  },
  refused: { id: 30, dir: "s2c", body: struct({ reason: str(64), message: str(256) }) },

  // ---- peer to peer, over a data channel ----
  probe: { id: 40, dir: "p2p", body: struct({ n: u32, t: f64 }) },
  probeAck: { id: 41, dir: "p2p", body: struct({ n: u32, t: f64 }) },
} as const satisfies Record<string, Def>;

type Defs = typeof COORD_MESSAGES;
export type CoordType = keyof Defs;
export type CoordMessageOf<K extends CoordType> = { type: K } & Infer<Defs[K]["body"]>;
export type CoordMessage = { [K in CoordType]: CoordMessageOf<K> }[CoordType];
type Of<D> = { [K in CoordType]: Defs[K]["dir"] extends D ? K : never }[CoordType];
export type ToCoordinator = { [K in Of<"c2s">]: CoordMessageOf<K> }[Of<"c2s">];
export type FromCoordinator = { [K in Of<"s2c">]: CoordMessageOf<K> }[Of<"s2c">];
export type ProbeMessage = { [K in Of<"p2p">]: CoordMessageOf<K> }[Of<"p2p">];

interface Compiled {
  type: CoordType;
  dir: Def["dir"];
  id: number;
  body: Def["body"];
}
const byType = new Map<string, Compiled>();
const byId: (Compiled | undefined)[] = [];
for (const [type, def] of Object.entries(COORD_MESSAGES) as [CoordType, Def][]) {
  const c: Compiled = { type, ...def };
  byType.set(type, c);
  byId[def.id] = c;
}

/** Encodes a message; throws RangeError when a field is out of bounds. */
export function encodeCoord(msg: CoordMessage): Uint8Array {
  const c = byType.get(msg.type);
  if (!c) throw new RangeError(`unknown coordinator message ${String(msg.type)}`);
  const w = new Writer(64);
  w.u8(COORD_PROTOCOL_VERSION);
  w.u8(c.id);
  c.body.enc(w, msg as unknown as Record<string, unknown>);
  return w.finish();
}

/** Whether a frame is one of ours (a data channel carries game frames too). */
export function isCoordFrame(frame: Uint8Array): boolean {
  return frame.length >= 2 && frame[0] === COORD_PROTOCOL_VERSION;
}

export function decodeCoord(frame: Uint8Array, dir: "c2s"): ToCoordinator;
export function decodeCoord(frame: Uint8Array, dir: "s2c"): FromCoordinator;
export function decodeCoord(frame: Uint8Array, dir: "p2p"): ProbeMessage;
/** Decodes and validates a frame travelling in `dir`; throws ProtocolError and nothing else. */
export function decodeCoord(frame: Uint8Array, dir: Def["dir"]): CoordMessage {
  if (!(frame instanceof Uint8Array)) throw new ProtocolError("bad_frame", "not a binary frame");
  if (frame.length > MAX_COORD_FRAME) throw new ProtocolError("too_large", "frame too large");
  const r = new Reader(frame);
  const v = r.u8();
  if (v !== COORD_PROTOCOL_VERSION) throw new ProtocolError("unsupported_version", `version ${v}`);
  const c = byId[r.u8()];
  if (!c) throw new ProtocolError("unknown_type", "unknown coordinator message");
  if (c.dir !== dir) throw new ProtocolError("unexpected_type", `${c.type} is not valid here`);
  const body = c.body.dec(r) as Record<string, unknown>;
  if (r.pos !== frame.length) throw new ProtocolError("bad_frame", "trailing bytes");
  return { type: c.type, ...body } as CoordMessage;
}
