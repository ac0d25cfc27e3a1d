// A tiny schema language for the wire protocol: each field codec encodes, decodes with bounds
// checks, and carries a descriptor (for generated test data), and TypeScript infers the value
// type from it. Encoding is positional and compact: fixed-width little-endian integers,
// u16-length-prefixed UTF-8 strings, u16-count-prefixed lists, a byte per enum and boolean.
// Every read checks the bytes left and every bound, so a hostile frame can only produce a
// ProtocolError, never a crash, a huge allocation or a value outside its type.

export type ReasonCode = (typeof REASON_CODES)[number];

/**
 * Why a frame was rejected or a connection closed. The index is stable (append only): a close
 * code is 4000 + index, and the `error` message carries the name.
 */
export const REASON_CODES = [
  "bad_frame",
  "unsupported_version",
  "unknown_type",
  "unexpected_type",
  "too_large",
  "auth_failed",
  "auth_timeout",
  "not_authenticated",
  "rate_limited",
  "slow_consumer",
  "duplicate_session",
  "map_unavailable",
  "server_shutdown",
  "internal",
  "session_ended",
] as const;

export function closeCodeOf(reason: ReasonCode): number {
  return 4000 + REASON_CODES.indexOf(reason);
}

export function reasonOfCloseCode(code: number): ReasonCode | undefined {
  return REASON_CODES[code - 4000];
}

/** The only error the decoder throws. */
export class ProtocolError extends Error {
  readonly reason: ReasonCode;
  constructor(reason: ReasonCode, message: string) {
    super(message);
    this.name = "ProtocolError";
    this.reason = reason;
  }
}

const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

export class Writer {
  buf: Uint8Array;
  view: DataView;
  pos = 0;
  constructor(initial = 256) {
    this.buf = new Uint8Array(initial);
    this.view = new DataView(this.buf.buffer);
  }
  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }
  u8(v: number): void {
    this.ensure(1);
    this.buf[this.pos++] = v;
  }
  u16(v: number): void {
    this.ensure(2);
    this.view.setUint16(this.pos, v, true);
    this.pos += 2;
  }
  u32(v: number): void {
    this.ensure(4);
    this.view.setUint32(this.pos, v, true);
    this.pos += 4;
  }
  i32(v: number): void {
    this.ensure(4);
    this.view.setInt32(this.pos, v, true);
    this.pos += 4;
  }
  f64(v: number): void {
    this.ensure(8);
    this.view.setFloat64(this.pos, v, true);
    this.pos += 8;
  }
  bytes(b: Uint8Array): void {
    this.ensure(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }
  /** The bytes written (a view on the writer's buffer: the writer is not used afterwards). */
  finish(): Uint8Array {
    return this.buf.subarray(0, this.pos);
  }
}

export class Reader {
  readonly buf: Uint8Array;
  readonly view: DataView;
  pos: number;
  constructor(buf: Uint8Array, pos = 0) {
    this.buf = buf;
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    this.pos = pos;
  }
  need(n: number): void {
    if (this.pos + n > this.buf.length) throw new ProtocolError("bad_frame", "frame truncated");
  }
  u8(): number {
    this.need(1);
    return this.buf[this.pos++]!;
  }
  u16(): number {
    this.need(2);
    const v = this.view.getUint16(this.pos, true);
    this.pos += 2;
    return v;
  }
  u32(): number {
    this.need(4);
    const v = this.view.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }
  i32(): number {
    this.need(4);
    const v = this.view.getInt32(this.pos, true);
    this.pos += 4;
    return v;
  }
  f64(): number {
    this.need(8);
    const v = this.view.getFloat64(this.pos, true);
    this.pos += 8;
    return v;
  }
  bytes(n: number): Uint8Array {
    this.need(n);
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }
}

export type Descriptor =
  | { t: "u8" | "u16" | "u32" | "i32" | "f64" | "bool" | "cell" }
  | { t: "str"; max: number }
  | { t: "enum"; values: readonly string[] }
  | { t: "opt"; of: Descriptor }
  | { t: "list"; of: Descriptor; max: number }
  | { t: "struct"; fields: Record<string, Descriptor> };

export interface Codec<T> {
  readonly desc: Descriptor;
  enc(w: Writer, v: T): void;
  dec(r: Reader): T;
}

export type Infer<C> = C extends Codec<infer T> ? T : never;

function bad(what: string): never {
  throw new ProtocolError("bad_frame", what);
}

function intCodec(t: "u8" | "u16" | "u32" | "i32", min: number, max: number): Codec<number> {
  const check = (v: number) => {
    if (!Number.isInteger(v) || v < min || v > max) throw new RangeError(`${t} out of range: ${v}`);
  };
  return {
    desc: { t },
    enc: (w, v) => {
      check(v);
      w[t](v);
    },
    dec: (r) => r[t](),
  };
}

export const u8 = intCodec("u8", 0, 0xff);
export const u16 = intCodec("u16", 0, 0xffff);
export const u32 = intCodec("u32", 0, 0xffffffff);
export const i32 = intCodec("i32", -0x80000000, 0x7fffffff);

/** Finite doubles only (timestamps): NaN and infinities are rejected both ways. */
export const f64: Codec<number> = {
  desc: { t: "f64" },
  enc: (w, v) => {
    if (!Number.isFinite(v)) throw new RangeError(`f64 not finite: ${v}`);
    w.f64(v);
  },
  dec: (r) => {
    const v = r.f64();
    return Number.isFinite(v) ? v : bad("non-finite number");
  },
};

/**
 * A map coordinate in cells, as a u16 fixed-point number of 1/16 cells (0 to 4095.9375): the
 * bus contract already rounds positions to 1/16 cell.
 */
export const cell: Codec<number> = {
  desc: { t: "cell" },
  enc: (w, v) => {
    const q = Math.round(v * 16);
    if (!(q >= 0 && q <= 0xffff)) throw new RangeError(`cell coordinate out of range: ${v}`);
    w.u16(q);
  },
  dec: (r) => r.u16() / 16,
};

export const bool: Codec<boolean> = {
  desc: { t: "bool" },
  enc: (w, v) => {
    if (typeof v !== "boolean") throw new RangeError(`not a boolean: ${typeof v}`);
    w.u8(v ? 1 : 0);
  },
  dec: (r) => {
    const b = r.u8();
    return b === 1 ? true : b === 0 ? false : bad("bad boolean");
  },
};

/** A UTF-8 string of at most `max` bytes; invalid UTF-8 is rejected. */
export function str(max: number): Codec<string> {
  if (max > 0xffff) throw new RangeError("str max must fit a u16 length");
  return {
    desc: { t: "str", max },
    enc: (w, v) => {
      if (typeof v !== "string") throw new RangeError(`not a string: ${typeof v}`);
      // Straight into the frame (no intermediate array): at most 3 bytes per UTF-16 unit.
      w.ensure(2 + v.length * 3);
      const n = utf8.encodeInto(v, w.buf.subarray(w.pos + 2)).written;
      if (n > max) throw new RangeError(`string longer than ${max} bytes`);
      w.view.setUint16(w.pos, n, true);
      w.pos += 2 + n;
    },
    dec: (r) => {
      const n = r.u16();
      if (n > max) bad(`string longer than ${max} bytes`);
      if (n === 0) return "";
      try {
        return strictUtf8.decode(r.bytes(n));
      } catch {
        return bad("invalid UTF-8");
      }
    },
  };
}

export function enumOf<const V extends readonly string[]>(...values: V): Codec<V[number]> {
  if (values.length > 255) throw new RangeError("too many enum values");
  const index = new Map<string, number>(values.map((v, i) => [v, i]));
  return {
    desc: { t: "enum", values },
    enc: (w, v) => {
      const i = index.get(v);
      if (i === undefined) throw new RangeError(`not one of ${values.join(", ")}: ${v}`);
      w.u8(i);
    },
    dec: (r) => values[r.u8()] ?? bad("enum value out of range"),
  };
}

export function opt<T>(of: Codec<T>): Codec<T | undefined> {
  return {
    desc: { t: "opt", of: of.desc },
    enc: (w, v) => {
      if (v === undefined) w.u8(0);
      else {
        w.u8(1);
        of.enc(w, v);
      }
    },
    dec: (r) => {
      const b = r.u8();
      if (b === 0) return undefined;
      return b === 1 ? of.dec(r) : bad("bad option tag");
    },
  };
}

export function list<T>(of: Codec<T>, max: number): Codec<T[]> {
  if (max > 0xffff) throw new RangeError("list max must fit a u16 count");
  return {
    desc: { t: "list", of: of.desc, max },
    enc: (w, v) => {
      if (!Array.isArray(v)) throw new RangeError("not a list");
      if (v.length > max) throw new RangeError(`list longer than ${max}`);
      w.u16(v.length);
      for (const x of v) of.enc(w, x);
    },
    dec: (r) => {
      const n = r.u16();
      if (n > max) bad(`list longer than ${max}`);
      // Every element takes at least one byte: a count beyond what is left is a lie, caught
      // before allocating.
      if (n > r.buf.length - r.pos) bad("list count exceeds frame");
      const out: T[] = new Array(n);
      for (let i = 0; i < n; i++) out[i] = of.dec(r);
      return out;
    },
  };
}

type Shape = Record<string, Codec<unknown>>;
// Optional fields (opt codecs) become optional properties.
type OptKeys<S extends Shape> = { [K in keyof S]: undefined extends Infer<S[K]> ? K : never }[keyof S];
type Simplify<T> = { [K in keyof T]: T[K] } & {};
export type StructOf<S extends Shape> = Simplify<
  { [K in Exclude<keyof S, OptKeys<S>>]: Infer<S[K]> } & { [K in OptKeys<S>]?: Infer<S[K]> }
>;

export function struct<S extends Shape>(shape: S): Codec<StructOf<S>> {
  const entries = Object.entries(shape);
  const fields: Record<string, Descriptor> = {};
  for (const [k, c] of entries) fields[k] = c.desc;
  return {
    desc: { t: "struct", fields },
    enc: (w, v) => {
      if (typeof v !== "object" || v === null) throw new RangeError("not an object");
      const o = v as Record<string, unknown>;
      for (const [k, c] of entries) c.enc(w, o[k]);
    },
    dec: (r) => {
      const o: Record<string, unknown> = {};
      for (const [k, c] of entries) {
        const x = c.dec(r);
        if (x !== undefined) o[k] = x;
      }
      return o as StructOf<S>;
    },
  };
}
