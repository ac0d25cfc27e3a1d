// The RO codec: the packet table agrees with the version's length table, every packet
// round-trips, and the framer and decoder, fed anything at all, return packets or throw
// RoProtocolError (fuzzed with fast-check).
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  decode,
  encode,
  NO_LOOKS,
  PACKETS,
  type Packet,
  PacketFramer,
  packetName,
  RoProtocolError,
  readMove,
  readPos,
  writeMove,
  writePos,
} from "./codec.ts";
import { knownIds, packetLength, VAR } from "./lengths.ts";

type Kind = string | { str: number } | { zero: number };

const latin1NoNul = (max: number) =>
  fc
    .array(fc.integer({ min: 1, max: 255 }), { maxLength: max })
    .map((codes) => String.fromCharCode(...codes));

function kindArb(kind: Kind): fc.Arbitrary<unknown> | undefined {
  if (typeof kind === "object") return "str" in kind ? latin1NoNul(kind.str) : undefined;
  switch (kind) {
    case "u8":
      return fc.integer({ min: 0, max: 0xff });
    case "u16":
      return fc.integer({ min: 0, max: 0xffff });
    case "i16":
      return fc.integer({ min: -0x8000, max: 0x7fff });
    case "u32":
      return fc.integer({ min: 0, max: 0xffffffff });
    case "i32":
      return fc.integer({ min: -0x80000000, max: 0x7fffffff });
    case "pos":
      return fc.record({
        x: fc.integer({ min: 0, max: 1023 }),
        y: fc.integer({ min: 0, max: 1023 }),
        dir: fc.integer({ min: 0, max: 15 }),
      });
    case "move":
      return fc.record({
        x0: fc.integer({ min: 0, max: 1023 }),
        y0: fc.integer({ min: 0, max: 1023 }),
        x1: fc.integer({ min: 0, max: 1023 }),
        y1: fc.integer({ min: 0, max: 1023 }),
        sx: fc.integer({ min: 0, max: 15 }),
        sy: fc.integer({ min: 0, max: 15 }),
      });
    case "ip":
      return fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((p) => p.join("."));
  }
  throw new Error(`no arbitrary for ${kind}`);
}

function fieldsArb(fields: Record<string, Kind>) {
  const rec: Record<string, fc.Arbitrary<unknown>> = {};
  for (const [name, kind] of Object.entries(fields)) {
    const a = kindArb(kind);
    if (a) rec[name] = a;
  }
  return fc.record(rec);
}

const packetArbs = Object.entries(PACKETS).map(([type, def]) => {
  const d = def as { fields: Record<string, Kind>; tail?: { text: true } | { list: Record<string, Kind> } };
  const tail: fc.Arbitrary<Record<string, unknown>> = !d.tail
    ? fc.constant({})
    : "text" in d.tail
      ? latin1NoNul(300).map((text) => ({ text }))
      : fc.array(fieldsArb(d.tail.list), { maxLength: 4 }).map((items) => ({ items }));
  return fc.tuple(fieldsArb(d.fields), tail).map(([f, t]) => ({ type, ...f, ...t }) as unknown as Packet);
});
const anyPacket = fc.oneof(...packetArbs);

/** Splits bytes into chunks at the given cut points. */
function chunks(bytes: Buffer, cuts: number[]): Buffer[] {
  const at = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const c of [...at, bytes.length]) {
    out.push(bytes.subarray(prev, c));
    prev = c;
  }
  return out;
}

describe("RO length table", () => {
  it("has every packet of the codec with the size of its fields", () => {
    // The codec checks this at load; here for the report.
    for (const def of Object.values(PACKETS)) expect(packetLength(def.id)).toBeDefined();
  });

  it("matches the documented layouts of this version", () => {
    const want: Record<number, number> = {
      100: 55,
      101: 17,
      102: 3,
      103: 37,
      106: 23,
      109: 134,
      113: 28,
      1078: 19,
      747: 13,
      125: 2,
      864: 6,
      127: 6,
      863: 5,
      135: 12,
      136: 10,
      134: 16,
      128: 7,
      872: 6,
      149: 30,
      1079: 7,
      280: 2,
      737: 33,
      394: 4,
      395: 4,
      178: 3,
      179: 3,
      // the padded ids of older clients keep their lengths (they are skipped, not parsed)
      137: 11,
      167: 9,
    };
    for (const [id, len] of Object.entries(want)) expect([id, packetLength(Number(id))]).toEqual([id, len]);
    for (const id of [0x0069, 0x006b, 0x00f3, 0x008d, 0x008e, 0x07f7, 0x07f8, 0x07f9])
      expect(packetLength(id)).toBe(VAR);
  });

  it("gives the actor records their rAthena sizes (no name field before 2013-12-23)", () => {
    const rec = { objectType: 0, id: 1, speed: 150, bodyState: 0, healthState: 0, effectState: 0, job: 0 };
    const looks = {
      head: 0,
      weapon: 0,
      accessory: 0,
      ...NO_LOOKS,
      xSize: 0,
      ySize: 0,
      level: 1,
      font: 0,
    };
    const pos = { x: 1, y: 2, dir: 0 };
    expect(encode({ type: "actorSpawn", ...rec, ...looks, pos }).length).toBe(64);
    expect(encode({ type: "actorStand", ...rec, ...looks, pos, state: 0 }).length).toBe(65);
    const move = { x0: 1, y0: 2, x1: 3, y1: 4, sx: 8, sy: 8 };
    expect(encode({ type: "actorWalking", ...rec, ...looks, move, moveStartTime: 0 }).length).toBe(71);
  });
});

describe("RO positions", () => {
  it("packs x<<14 | y<<4 | dir big-endian", () => {
    const b = new Uint8Array(3);
    writePos(b, 0, { x: 156, y: 191, dir: 3 });
    const v = (b[0]! << 16) | (b[1]! << 8) | b[2]!;
    expect(v).toBe((156 << 14) | (191 << 4) | 3);
    expect(readPos(b, 0)).toEqual({ x: 156, y: 191, dir: 3 });
  });

  it("round-trips every position and move", () => {
    fc.assert(
      fc.property(kindArb("move") as fc.Arbitrary<Parameters<typeof writeMove>[2]>, (m) => {
        const b = new Uint8Array(6);
        writeMove(b, 0, m);
        expect(readMove(b, 0)).toEqual(m);
      }),
    );
  });
});

describe("RO codec and framer", () => {
  it("round-trips every packet through any chunking", () => {
    fc.assert(
      fc.property(
        fc.array(anyPacket, { minLength: 1, maxLength: 8 }),
        fc.array(fc.nat(), { maxLength: 6 }),
        (ps, cuts) => {
          const bytes = Buffer.concat(ps.map((p) => encode(p)));
          const f = new PacketFramer({ maxPacket: 0xffff });
          const frames = chunks(bytes, cuts).flatMap((c) => f.push(c).map((fr) => Buffer.from(fr.data)));
          expect(f.pending).toBe(0);
          expect(frames.length).toBe(ps.length);
          frames.forEach((fr, i) => {
            const p = ps[i]!;
            const dir = (PACKETS as Record<string, { dir: "c2s" | "s2c" }>)[p.type]!.dir;
            expect(decode(fr, dir as "c2s")).toEqual(p);
          });
        },
      ),
      { numRuns: 2000 },
    );
  });

  it("frames unknown-but-listed ids and leaves them to the caller", () => {
    const f = new PacketFramer();
    const padded = Buffer.alloc(9);
    padded.writeUInt16LE(0x00a7, 0);
    const guild = Buffer.from([0x4f, 0x01, 1, 2, 3, 4]);
    const walk = encode({ type: "walk", dest: { x: 10, y: 20, dir: 0 } });
    const frames = f.push(Buffer.concat([padded, guild, walk]));
    expect(frames.map((fr) => fr.id)).toEqual([0x00a7, 0x014f, 0x035f]);
    expect(packetName(0x00a7)).toBeUndefined();
    expect(decode(frames[2]!.data, "c2s")).toEqual({ type: "walk", dest: { x: 10, y: 20, dir: 0 } });
  });

  it("refuses an id with no known length, a short variable length and an oversized packet", () => {
    expect(() => new PacketFramer().push(Buffer.from([0xff, 0xff, 0, 0]))).toThrow(RoProtocolError);
    expect(() => new PacketFramer().push(Buffer.from([0xf3, 0x00, 3, 0]))).toThrow(/length 3/);
    const big = Buffer.alloc(5000);
    big.writeUInt16LE(0x00f3, 0);
    big.writeUInt16LE(5000, 2);
    expect(() => new PacketFramer({ maxPacket: 2048 }).push(big.subarray(0, 4))).toThrow(/too|cap/);
  });

  it("fuzz: the framer and decoder only ever return packets or throw RoProtocolError", () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 8 }),
        fc.constantFrom<"c2s" | "s2c">("c2s", "s2c"),
        (parts, dir) => {
          const f = new PacketFramer({ maxPacket: 2048 });
          try {
            for (const p of parts)
              for (const fr of f.push(p)) {
                try {
                  decode(fr.data, dir as "c2s");
                } catch (e) {
                  if (!(e instanceof RoProtocolError)) throw e;
                }
              }
          } catch (e) {
            if (!(e instanceof RoProtocolError)) throw e;
          }
        },
      ),
      { numRuns: 20_000 },
    );
  });

  it("fuzz: packets of known ids with random bodies decode or throw RoProtocolError", () => {
    const ids = knownIds().filter((id) => packetName(id) !== undefined);
    fc.assert(
      fc.property(fc.constantFrom(...ids), fc.uint8Array({ maxLength: 200 }), (id, body) => {
        const len = packetLength(id)!;
        const size = len === VAR ? 4 + body.length : len;
        const buf = Buffer.alloc(size);
        buf.writeUInt16LE(id, 0);
        if (len === VAR) buf.writeUInt16LE(size, 2);
        Buffer.from(body).copy(buf, len === VAR ? 4 : 2, 0, size - (len === VAR ? 4 : 2));
        for (const dir of ["c2s", "s2c"] as const) {
          try {
            const p = decode(buf, dir as "c2s");
            // A decoded packet re-encodes to a packet that decodes the same.
            expect(decode(encode(p), dir as "c2s")).toEqual(p);
          } catch (e) {
            if (!(e instanceof RoProtocolError)) throw e;
          }
        }
      }),
      { numRuns: 20_000 },
    );
  });
});
