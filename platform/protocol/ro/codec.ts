// The RO packet codec at PACKETVER 20101124: one table (PACKETS below) describes every packet
// this project reads or writes, field by field; encoders, validating decoders and TypeScript
// types come from it. A stream framer cuts a TCP byte stream into packets by the version's
// length table (lengths.ts).
//
// Wire facts (rAthena's sources for this version): integers little-endian; a variable-length
// packet is `<id:u16><len:u16>...` with len counting the whole packet; strings are fixed-size
// and NUL-padded, or NUL-terminated at the end of a variable packet; IPv4 addresses go in
// network byte order (a.b.c.d as four bytes); a position is 3 bytes, x<<14 | y<<4 | dir
// big-endian; a move is 6 bytes, from-x, from-y, to-x, to-y at 10 bits each, then two 4-bit
// sub-cell offsets. Text is carried byte for byte (latin1): clients of this era speak their
// locale's code page, and names here are ASCII.
//
// Errors: decoding a hostile packet can only throw RoProtocolError, never anything else.
import { packetLength, VAR } from "./lengths.ts";

export class RoProtocolError extends Error {
  /** bad_packet: malformed; unknown_packet: no length known; too_large: over the cap. */
  readonly reason: "bad_packet" | "unknown_packet" | "too_large";
  constructor(reason: RoProtocolError["reason"], message: string) {
    super(message);
    this.name = "RoProtocolError";
    this.reason = reason;
  }
}

// ---- field kinds ------------------------------------------------------------------------------

export interface Pos {
  x: number;
  y: number;
  dir: number;
}

export interface Move {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
  /** Sub-cell offsets (4 bits each; 8 = the cell's centre). */
  sx: number;
  sy: number;
}

type IntKind = "u8" | "u16" | "u32" | "i16" | "i32";
type Scalar = IntKind | "pos" | "move" | "ip";
type Kind = Scalar | { str: number } | { zero: number };

type KindValue<K> = K extends "pos"
  ? Pos
  : K extends "move"
    ? Move
    : K extends "ip"
      ? string
      : K extends { str: number }
        ? string
        : K extends { zero: number }
          ? undefined
          : number;

type Fields = Record<string, Kind>;
type ZeroKeys<F extends Fields> = { [K in keyof F]: F[K] extends { zero: number } ? K : never }[keyof F];
type FieldsValue<F extends Fields> = { [K in Exclude<keyof F, ZeroKeys<F>>]: KindValue<F[K]> };

/** What follows the fixed fields of a variable-length packet. */
type Tail = { text: true } | { list: Fields; size: number };
type TailValue<T> = T extends { text: true }
  ? { text: string }
  : T extends { list: infer L extends Fields }
    ? { items: FieldsValue<L>[] }
    : unknown;

export type Dir = "c2s" | "s2c";

interface PacketDef {
  id: number;
  dir: Dir;
  fields: Fields;
  tail?: Tail;
}

const sizeOfKind = (k: Kind): number => {
  if (typeof k === "object") return "str" in k ? k.str : k.zero;
  switch (k) {
    case "u8":
      return 1;
    case "u16":
    case "i16":
      return 2;
    case "u32":
    case "i32":
    case "ip":
      return 4;
    case "pos":
      return 3;
    case "move":
      return 6;
  }
};

const sizeOfFields = (f: Fields) => Object.values(f).reduce((n, k) => n + sizeOfKind(k), 0);

// ---- the 132-byte character block of 0x006b and 0x006d (rAthena char_mmo_char_tobuf) -------

export const CHARACTER_BLOCK = {
  charId: "u32",
  baseExp: "u32",
  zeny: "u32",
  jobExp: "u32",
  jobLevel: "u32",
  opt1: "u32",
  opt2: "u32",
  option: "u32",
  karma: "u32",
  manner: "u32",
  statusPoint: "u16",
  hp: "u32",
  maxHp: "u32",
  sp: "u16",
  maxSp: "u16",
  speed: "u16",
  job: "u16",
  hair: "u16",
  weapon: "u16",
  baseLevel: "u16",
  skillPoint: "u16",
  headBottom: "u16",
  shield: "u16",
  headTop: "u16",
  headMid: "u16",
  hairColor: "u16",
  clothesColor: "u16",
  name: { str: 24 },
  str: "u8",
  agi: "u8",
  vit: "u8",
  int: "u8",
  dex: "u8",
  luk: "u8",
  slot: "u16",
  renamed: "u16",
  lastMap: { str: 16 },
  deleteDate: "u32",
} as const satisfies Fields;

/** The fields of 0x07f8 (an actor appears) in order; 0x07f9 and 0x07f7 vary them (below). */
const UNIT_HEAD = {
  objectType: "u8",
  id: "u32",
  speed: "i16",
  bodyState: "i16",
  healthState: "i16",
  effectState: "i32",
  job: "i16",
  head: "u16",
  weapon: "u32",
  accessory: "u16",
} as const satisfies Fields;
const UNIT_LOOKS = {
  accessory2: "u16",
  accessory3: "u16",
  headPalette: "i16",
  bodyPalette: "i16",
  headDir: "i16",
  robe: "u16",
  guildId: "u32",
  emblemVersion: "i16",
  honor: "i16",
  virtue: "i32",
  pkMode: "u8",
  sex: "u8",
} as const satisfies Fields;

/**
 * Every UNIT_LOOKS field of an actor record at 0: no lower headgear or garment, default palettes,
 * facing ahead, no robe, guild, honour or PK mode, and sex 0 (set `sex` after it for a male).
 */
export const NO_LOOKS = Object.freeze(
  Object.fromEntries(Object.keys(UNIT_LOOKS).map((name) => [name, 0])),
) as Readonly<FieldsValue<typeof UNIT_LOOKS>>;

// ---- the packets ------------------------------------------------------------------------------

export const PACKETS = {
  // login server
  login: {
    id: 0x0064,
    dir: "c2s",
    fields: { version: "u32", username: { str: 24 }, password: { str: 24 }, clientType: "u8" },
  },
  loginOk: {
    id: 0x0069,
    dir: "s2c",
    fields: {
      loginId1: "u32",
      accountId: "u32",
      loginId2: "u32",
      lastIp: "u32",
      lastLogin: { str: 26 },
      sex: "u8",
    },
    tail: {
      list: { ip: "ip", port: "u16", name: { str: 20 }, users: "u16", type: "u16", isNew: "u16" },
      size: 32,
    },
  },
  loginRefused: { id: 0x006a, dir: "s2c", fields: { error: "u8", blockDate: { str: 20 } } },
  // char server
  charEnter: {
    id: 0x0065,
    dir: "c2s",
    fields: { accountId: "u32", loginId1: "u32", loginId2: "u32", unknown: "u16", sex: "u8" },
  },
  charList: {
    id: 0x006b,
    dir: "s2c",
    fields: { maxSlots: "u8", availableSlots: "u8", premiumSlots: "u8", reserved: { zero: 20 } },
    tail: { list: CHARACTER_BLOCK, size: 132 },
  },
  charRefused: { id: 0x006c, dir: "s2c", fields: { error: "u8" } },
  charCreate: {
    id: 0x0067,
    dir: "c2s",
    fields: {
      name: { str: 24 },
      str: "u8",
      agi: "u8",
      vit: "u8",
      int: "u8",
      dex: "u8",
      luk: "u8",
      slot: "u8",
      hairColor: "u16",
      hairStyle: "u16",
    },
  },
  charCreated: { id: 0x006d, dir: "s2c", fields: CHARACTER_BLOCK },
  charCreateFailed: { id: 0x006e, dir: "s2c", fields: { error: "u8" } },
  charSelect: { id: 0x0066, dir: "c2s", fields: { slot: "u8" } },
  mapServer: {
    id: 0x0071,
    dir: "s2c",
    fields: { charId: "u32", mapName: { str: 16 }, ip: "ip", port: "u16" },
  },
  charPing: { id: 0x0187, dir: "c2s", fields: { accountId: "u32" } },
  // map server (the gateway's RO endpoint)
  mapEnter: {
    id: 0x0436,
    dir: "c2s",
    fields: { accountId: "u32", charId: "u32", loginId1: "u32", clientTick: "u32", sex: "u8" },
  },
  accountId: { id: 0x0283, dir: "s2c", fields: { accountId: "u32" } },
  mapAccept: {
    id: 0x02eb,
    dir: "s2c",
    fields: { tick: "u32", pos: "pos", xSize: "u8", ySize: "u8", font: "u16" },
  },
  mapRefused: { id: 0x0074, dir: "s2c", fields: { error: "u8" } },
  kicked: { id: 0x0081, dir: "s2c", fields: { error: "u8" } },
  loadEnd: { id: 0x007d, dir: "c2s", fields: {} },
  tickSync: { id: 0x0360, dir: "c2s", fields: { clientTick: "u32" } },
  tickReply: { id: 0x007f, dir: "s2c", fields: { serverTick: "u32" } },
  walk: { id: 0x035f, dir: "c2s", fields: { dest: "pos" } },
  ownMove: { id: 0x0087, dir: "s2c", fields: { tick: "u32", move: "move" } },
  moveStop: { id: 0x0088, dir: "s2c", fields: { id: "u32", x: "u16", y: "u16" } },
  actorMove: { id: 0x0086, dir: "s2c", fields: { id: "u32", move: "move", tick: "u32" } },
  actorWalking: {
    id: 0x07f7,
    dir: "s2c",
    fields: {
      ...UNIT_HEAD,
      moveStartTime: "u32",
      ...UNIT_LOOKS,
      move: "move",
      xSize: "u8",
      ySize: "u8",
      level: "i16",
      font: "i16",
    },
  },
  actorSpawn: {
    id: 0x07f8,
    dir: "s2c",
    fields: { ...UNIT_HEAD, ...UNIT_LOOKS, pos: "pos", xSize: "u8", ySize: "u8", level: "i16", font: "i16" },
  },
  actorStand: {
    id: 0x07f9,
    dir: "s2c",
    fields: {
      ...UNIT_HEAD,
      ...UNIT_LOOKS,
      pos: "pos",
      xSize: "u8",
      ySize: "u8",
      state: "u8",
      level: "i16",
      font: "i16",
    },
  },
  vanish: { id: 0x0080, dir: "s2c", fields: { id: "u32", how: "u8" } },
  nameRequest: { id: 0x0368, dir: "c2s", fields: { id: "u32" } },
  nameReply: { id: 0x0095, dir: "s2c", fields: { id: "u32", name: { str: 24 } } },
  chat: { id: 0x00f3, dir: "c2s", fields: {}, tail: { text: true } },
  chatFrom: { id: 0x008d, dir: "s2c", fields: { id: "u32" }, tail: { text: true } },
  chatSelf: { id: 0x008e, dir: "s2c", fields: {}, tail: { text: true } },
  /** ZC_BROADCAST: a server-wide announcement (world events), shown in the chat window. */
  broadcast: { id: 0x009a, dir: "s2c", fields: {}, tail: { text: true } },
  attack: { id: 0x0437, dir: "c2s", fields: { target: "u32", action: "u8" } },
  stopAttack: { id: 0x0118, dir: "c2s", fields: {} },
  damage: {
    id: 0x02e1,
    dir: "s2c",
    fields: {
      src: "u32",
      target: "u32",
      tick: "u32",
      srcSpeed: "i32",
      dmgSpeed: "i32",
      damage: "i32",
      div: "u16",
      action: "u8",
      damage2: "i32",
    },
  },
  expGain: {
    id: 0x07f6,
    dir: "s2c",
    fields: { id: "u32", amount: "i32", varId: "u16", expType: "u16" },
  },
  param: { id: 0x00b0, dir: "s2c", fields: { param: "u16", value: "i32" } },
  longParam: { id: 0x00b1, dir: "s2c", fields: { param: "u16", value: "u32" } },
  changeMap: { id: 0x0091, dir: "s2c", fields: { mapName: { str: 16 }, x: "u16", y: "u16" } },
  quit: { id: 0x018a, dir: "c2s", fields: { kind: "u16" } },
  quitAck: { id: 0x018b, dir: "s2c", fields: { result: "u16" } },
  restart: { id: 0x00b2, dir: "c2s", fields: { kind: "u8" } },
  restartAck: { id: 0x00b3, dir: "s2c", fields: { kind: "u8" } },
} as const satisfies Record<string, PacketDef>;

type Defs = typeof PACKETS;
export type PacketName = keyof Defs;
type Body<N extends PacketName> = FieldsValue<Defs[N]["fields"]> &
  (Defs[N] extends { tail: infer T } ? TailValue<T> : unknown);
export type PacketOf<N extends PacketName> = { type: N } & Body<N>;
export type Packet = { [N in PacketName]: PacketOf<N> }[PacketName];
type NamesFrom<D extends Dir> = { [N in PacketName]: Defs[N]["dir"] extends D ? N : never }[PacketName];
export type ClientPacket = { [N in NamesFrom<"c2s">]: PacketOf<N> }[NamesFrom<"c2s">];
export type ServerPacket = { [N in NamesFrom<"s2c">]: PacketOf<N> }[NamesFrom<"s2c">];
export type CharacterBlock = FieldsValue<typeof CHARACTER_BLOCK>;

interface Compiled {
  name: PacketName;
  id: number;
  dir: Dir;
  fields: [string, Kind][];
  fixed: number;
  variable: boolean;
  tail?: Tail;
}

const byName = new Map<string, Compiled>();
const byId = new Map<number, Compiled>();
for (const [name, def] of Object.entries(PACKETS) as [PacketName, PacketDef][]) {
  const len = packetLength(def.id);
  const variable = len === VAR;
  const fixed = (variable ? 4 : 2) + sizeOfFields(def.fields);
  if (len === undefined)
    throw new Error(`packet ${name} (0x${def.id.toString(16)}) is not in the length table`);
  if (!variable && (def.tail || fixed !== len))
    throw new Error(`packet ${name}: fields make ${fixed} bytes, the length table says ${len}`);
  const c: Compiled = { name, id: def.id, dir: def.dir, fields: Object.entries(def.fields), fixed, variable };
  if (def.tail) c.tail = def.tail;
  byName.set(name, c);
  byId.set(def.id, c);
}

/** The packet name of an id this codec knows (undefined: only its length is known, or nothing). */
export function packetName(id: number): PacketName | undefined {
  return byId.get(id)?.name;
}

export function packetId(name: PacketName): number {
  return byName.get(name)!.id;
}

// ---- encoding ---------------------------------------------------------------------------------

const latin1 = (s: string) => Buffer.from(s, "latin1");

// A switch per kind, not a table of Buffer method names: the table made encode and decode
// about half again as slow (measured on actorSpawn), and these run per packet on the gateway.
function putInt(buf: Buffer, o: number, kind: IntKind, v: unknown, what: string): void {
  const n = v as number;
  const bad = () => new RangeError(`${what}: ${String(v)} does not fit ${kind}`);
  if (typeof n !== "number" || !Number.isInteger(n)) throw bad();
  switch (kind) {
    case "u8":
      if (n < 0 || n > 0xff) throw bad();
      buf[o] = n;
      return;
    case "u16":
      if (n < 0 || n > 0xffff) throw bad();
      buf.writeUInt16LE(n, o);
      return;
    case "i16":
      if (n < -0x8000 || n > 0x7fff) throw bad();
      buf.writeInt16LE(n, o);
      return;
    case "u32":
      if (n < 0 || n > 0xffffffff) throw bad();
      buf.writeUInt32LE(n, o);
      return;
    case "i32":
      if (n < -0x80000000 || n > 0x7fffffff) throw bad();
      buf.writeInt32LE(n, o);
      return;
  }
}

/** Writes a 3-byte position (x, y up to 1023, dir up to 15). */
export function writePos(buf: Uint8Array, o: number, p: Pos): void {
  if (!(p.x >= 0 && p.x < 1024 && p.y >= 0 && p.y < 1024 && p.dir >= 0 && p.dir < 16))
    throw new RangeError(`position out of range: ${JSON.stringify(p)}`);
  buf[o] = p.x >> 2;
  buf[o + 1] = ((p.x << 6) | ((p.y >> 4) & 0x3f)) & 0xff;
  buf[o + 2] = ((p.y << 4) | (p.dir & 0x0f)) & 0xff;
}

export function readPos(buf: Uint8Array, o: number): Pos {
  const b0 = buf[o]!;
  const b1 = buf[o + 1]!;
  const b2 = buf[o + 2]!;
  return { x: (b0 << 2) | (b1 >> 6), y: ((b1 & 0x3f) << 4) | (b2 >> 4), dir: b2 & 0x0f };
}

/** Writes a 6-byte move (coordinates up to 1023, sub-cell offsets up to 15). */
export function writeMove(buf: Uint8Array, o: number, m: Move): void {
  for (const v of [m.x0, m.y0, m.x1, m.y1])
    if (!(Number.isInteger(v) && v >= 0 && v < 1024))
      throw new RangeError(`move out of range: ${JSON.stringify(m)}`);
  buf[o] = m.x0 >> 2;
  buf[o + 1] = ((m.x0 << 6) | ((m.y0 >> 4) & 0x3f)) & 0xff;
  buf[o + 2] = ((m.y0 << 4) | ((m.x1 >> 6) & 0x0f)) & 0xff;
  buf[o + 3] = ((m.x1 << 2) | ((m.y1 >> 8) & 0x03)) & 0xff;
  buf[o + 4] = m.y1 & 0xff;
  buf[o + 5] = ((m.sx & 0x0f) << 4) | (m.sy & 0x0f);
}

export function readMove(buf: Uint8Array, o: number): Move {
  const b = (i: number) => buf[o + i]!;
  return {
    x0: (b(0) << 2) | (b(1) >> 6),
    y0: ((b(1) & 0x3f) << 4) | (b(2) >> 4),
    x1: ((b(2) & 0x0f) << 6) | (b(3) >> 2),
    y1: ((b(3) & 0x03) << 8) | b(4),
    sx: b(5) >> 4,
    sy: b(5) & 0x0f,
  };
}

function writeFields(buf: Buffer, at: number, fields: [string, Kind][], v: Record<string, unknown>): number {
  let o = at;
  for (const [name, kind] of fields) {
    if (typeof kind === "object") {
      if ("str" in kind) {
        const s = v[name];
        if (typeof s !== "string") throw new RangeError(`${name}: not a string`);
        const b = latin1(s);
        // One byte stays NUL when the string fills the field less than fully; a full field has none.
        if (b.length > kind.str) throw new RangeError(`${name}: longer than ${kind.str} bytes`);
        b.copy(buf, o);
      }
      o += sizeOfKind(kind);
      continue;
    }
    switch (kind) {
      case "pos":
        writePos(buf, o, v[name] as Pos);
        break;
      case "move":
        writeMove(buf, o, v[name] as Move);
        break;
      case "ip": {
        const parts = String(v[name]).split(".").map(Number);
        if (parts.length !== 4 || parts.some((p) => !(Number.isInteger(p) && p >= 0 && p <= 255)))
          throw new RangeError(`${name}: not an IPv4 address`);
        for (let i = 0; i < 4; i++) buf[o + i] = parts[i]!;
        break;
      }
      default:
        putInt(buf, o, kind, v[name], name);
    }
    o += sizeOfKind(kind);
  }
  return o;
}

/** Encodes a packet; throws RangeError when a value does not fit its field. */
export function encode(p: Packet): Buffer {
  const c = byName.get(p.type);
  if (!c) throw new RangeError(`unknown packet ${String(p.type)}`);
  const v = p as unknown as Record<string, unknown>;
  let size = c.fixed;
  let text: Buffer | undefined;
  let items: Record<string, unknown>[] = [];
  const tail = c.tail;
  if (tail && "text" in tail) {
    text = latin1(String(v.text ?? ""));
    size += text.length + 1;
  } else if (tail) {
    items = (v.items as Record<string, unknown>[]) ?? [];
    size += items.length * tail.size;
  }
  if (size > 0xffff) throw new RangeError(`packet ${p.type} is ${size} bytes`);
  const buf = Buffer.alloc(size);
  buf.writeUInt16LE(c.id, 0);
  let o = 2;
  if (c.variable) {
    buf.writeUInt16LE(size, 2);
    o = 4;
  }
  o = writeFields(buf, o, c.fields, v);
  if (text) text.copy(buf, o);
  else if (tail && "list" in tail) {
    const f = Object.entries(tail.list);
    for (const item of items) o = writeFields(buf, o, f, item);
  }
  return buf;
}

// ---- decoding ---------------------------------------------------------------------------------

function readFields(
  buf: Uint8Array,
  at: number,
  fields: [string, Kind][],
  out: Record<string, unknown>,
): number {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let o = at;
  for (const [name, kind] of fields) {
    if (typeof kind === "object") {
      if ("str" in kind) out[name] = cString(buf, o, kind.str);
      o += sizeOfKind(kind);
      continue;
    }
    switch (kind) {
      case "u8":
        out[name] = buf[o];
        break;
      case "u16":
        out[name] = dv.getUint16(o, true);
        break;
      case "i16":
        out[name] = dv.getInt16(o, true);
        break;
      case "u32":
        out[name] = dv.getUint32(o, true);
        break;
      case "i32":
        out[name] = dv.getInt32(o, true);
        break;
      case "pos":
        out[name] = readPos(buf, o);
        break;
      case "move":
        out[name] = readMove(buf, o);
        break;
      case "ip":
        out[name] = `${buf[o]}.${buf[o + 1]}.${buf[o + 2]}.${buf[o + 3]}`;
        break;
    }
    o += sizeOfKind(kind);
  }
  return o;
}

/** A NUL-terminated (or field-filling) latin1 string. */
function cString(buf: Uint8Array, o: number, max: number): string {
  let end = o;
  while (end < o + max && buf[end] !== 0) end++;
  return Buffer.from(buf.buffer, buf.byteOffset + o, end - o).toString("latin1");
}

export function decode(packet: Uint8Array, accept: "c2s"): ClientPacket;
export function decode(packet: Uint8Array, accept: "s2c"): ServerPacket;
/**
 * Decodes one whole packet (as the framer cut it) travelling in direction `accept`. Throws
 * RoProtocolError for a packet of another direction, an id the codec does not know, or a
 * length that does not match its layout.
 */
export function decode(packet: Uint8Array, accept: Dir): Packet {
  if (packet.length < 2) throw new RoProtocolError("bad_packet", "packet shorter than its id");
  const id = packet[0]! | (packet[1]! << 8);
  const c = byId.get(id);
  if (!c || c.dir !== accept)
    throw new RoProtocolError("unknown_packet", `no ${accept} packet 0x${id.toString(16).padStart(4, "0")}`);
  if (c.variable) {
    if (packet.length < 4) throw new RoProtocolError("bad_packet", `${c.name}: no length`);
    const len = packet[2]! | (packet[3]! << 8);
    if (len !== packet.length) throw new RoProtocolError("bad_packet", `${c.name}: length field ${len}`);
    if (len < c.fixed)
      throw new RoProtocolError("bad_packet", `${c.name}: ${len} bytes, at least ${c.fixed} needed`);
  } else if (packet.length !== c.fixed) {
    throw new RoProtocolError("bad_packet", `${c.name}: ${packet.length} bytes, ${c.fixed} expected`);
  }
  const out: Record<string, unknown> = { type: c.name };
  const o = readFields(packet, c.variable ? 4 : 2, c.fields, out);
  const tail = c.tail;
  if (tail && "text" in tail) {
    out.text = cString(packet, o, packet.length - o);
  } else if (tail) {
    const rest = packet.length - o;
    if (rest % tail.size !== 0)
      throw new RoProtocolError("bad_packet", `${c.name}: ${rest} bytes of entries of ${tail.size}`);
    const f = Object.entries(tail.list);
    const items: Record<string, unknown>[] = [];
    for (let p = o; p < packet.length; p += tail.size) {
      const item: Record<string, unknown> = {};
      readFields(packet, p, f, item);
      items.push(item);
    }
    out.items = items;
  }
  return out as unknown as Packet;
}

// ---- framing ----------------------------------------------------------------------------------

export interface Frame {
  id: number;
  /** The whole packet, id and length included (a view into the framer's buffer: copy to keep). */
  data: Buffer;
}

/**
 * Cuts a TCP byte stream into packets by the version's length table. `push` returns the whole
 * packets received so far; a partial packet waits for more bytes. Throws RoProtocolError for an
 * id the table does not have (its end cannot be known), a variable length below 4 or above
 * `maxPacket`; the connection is then beyond repair and must be closed.
 */
export class PacketFramer {
  private buf: Buffer = Buffer.alloc(0);
  private readonly maxPacket: number;
  private readonly maxBuffered: number;

  constructor(opts: { maxPacket?: number; maxBuffered?: number } = {}) {
    this.maxPacket = opts.maxPacket ?? 4096;
    this.maxBuffered = opts.maxBuffered ?? 64 * 1024;
  }

  /** Bytes received and not yet part of a whole packet. */
  get pending(): number {
    return this.buf.length;
  }

  push(chunk: Uint8Array): Frame[] {
    this.buf = this.buf.length === 0 ? Buffer.from(chunk) : Buffer.concat([this.buf, chunk]);
    if (this.buf.length > this.maxBuffered + this.maxPacket)
      throw new RoProtocolError("too_large", `more than ${this.maxBuffered} bytes unread`);
    const out: Frame[] = [];
    let o = 0;
    for (;;) {
      const left = this.buf.length - o;
      if (left < 2) break;
      const id = this.buf.readUInt16LE(o);
      const known = packetLength(id);
      if (known === undefined)
        throw new RoProtocolError(
          "unknown_packet",
          `packet 0x${id.toString(16).padStart(4, "0")} has no known length`,
        );
      let len = known;
      if (known === VAR) {
        if (left < 4) break;
        len = this.buf.readUInt16LE(o + 2);
        if (len < 4)
          throw new RoProtocolError("bad_packet", `variable packet 0x${id.toString(16)} of length ${len}`);
      }
      if (len > this.maxPacket)
        throw new RoProtocolError(
          "too_large",
          `packet 0x${id.toString(16)} of ${len} bytes (cap ${this.maxPacket})`,
        );
      if (left < len) break;
      out.push({ id, data: this.buf.subarray(o, o + len) });
      o += len;
    }
    this.buf = o === this.buf.length ? Buffer.alloc(0) : this.buf.subarray(o);
    return out;
  }
}
