import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { arbitraryMessage, arbitraryOf } from "../../testkit/protocol-arbitrary.ts";
import {
  type Accept,
  AoiBatchEncoder,
  type Correction,
  correction,
  decode,
  type Entity,
  encode,
  entity,
  MAX_CLIENT_FRAME,
  MESSAGES,
  type Message,
  type MessageType,
  PROTOCOL_VERSION,
  withSeq,
} from "./messages.ts";
import { closeCodeOf, ProtocolError, REASON_CODES, reasonOfCloseCode } from "./schema.ts";

function dirOf(t: MessageType): Accept {
  return MESSAGES[t].dir;
}

function reasonOf(f: () => unknown): string {
  try {
    f();
  } catch (err) {
    if (err instanceof ProtocolError) return err.reason;
    throw err;
  }
  return "ok";
}

describe("protocol", () => {
  it("round-trips every message type", () => {
    fc.assert(
      fc.property(arbitraryMessage(), (m) => {
        const frame = encode(m);
        expect(frame[0]).toBe(PROTOCOL_VERSION);
        expect(decode(frame, dirOf(m.type))).toEqual(m);
      }),
      { numRuns: 2000 },
    );
  }, 60_000);

  it("encodes a move compactly and types the decoded union", () => {
    const f = encode({ type: "move", n: 1, x: 150, y: 99 });
    expect(f.length).toBe(10);
    const m = decode(f, "c2s");
    if (m.type !== "move") throw new Error("wrong type");
    expect(m.x + m.y).toBe(249);
  });

  it("stamps a sequence number into a shared frame without touching the original", () => {
    const base = encode({ type: "mode", seq: 0, map: "prt_fild01", mode: "p2p", reason: "policy" });
    const a = withSeq(base, 41);
    expect(decode(a, "s2c")).toMatchObject({ type: "mode", seq: 41, mode: "p2p" });
    expect(decode(base, "s2c")).toMatchObject({ seq: 0 });
  });

  it("rejects bad frames with typed reasons", () => {
    const move = encode({ type: "move", n: 0, x: 1, y: 2 });
    expect(reasonOf(() => decode(new Uint8Array(0), "c2s"))).toBe("bad_frame");
    expect(reasonOf(() => decode(Uint8Array.of(9, 3, 0, 0, 0, 0, 0, 0, 0, 0), "c2s"))).toBe(
      "unsupported_version",
    );
    expect(reasonOf(() => decode(Uint8Array.of(PROTOCOL_VERSION, 200), "c2s"))).toBe("unknown_type");
    // Retired ids (the gateway's meshes and signaling) are unknown in every direction.
    for (const accept of ["c2s", "s2c"] as const)
      for (const id of [18, 19])
        expect(reasonOf(() => decode(Uint8Array.of(PROTOCOL_VERSION, id, 0, 0, 0, 0), accept))).toBe(
          "unknown_type",
        );
    expect(reasonOf(() => decode(move.subarray(0, 4), "c2s"))).toBe("bad_frame");
    expect(reasonOf(() => decode(Uint8Array.of(...move, 0), "c2s"))).toBe("bad_frame");
    // A server message sent by a client, a peer message sent to the gateway.
    const aoi = encode({
      type: "aoi",
      seq: 1,
      map: "prontera",
      tick: 1,
      t: 0,
      mode: "server",
      enter: [],
      update: [],
      leave: [],
      corrections: [],
    });
    expect(reasonOf(() => decode(aoi, "c2s"))).toBe("unexpected_type");
    expect(
      reasonOf(() => decode(encode({ type: "peerMove", entity: 1, x: 1, y: 1, t: 0, n: 0 }), "c2s")),
    ).toBe("unexpected_type");
    expect(reasonOf(() => decode(new Uint8Array(MAX_CLIENT_FRAME + 1), "c2s"))).toBe("too_large");
    // Invalid UTF-8 in a string, a bad boolean, an enum out of range, a lying list count.
    expect(
      reasonOf(() => decode(Uint8Array.of(PROTOCOL_VERSION, 6, 0, 0, 0, 0, 2, 0, 0xc3, 0x28), "c2s")),
    ).toBe("bad_frame");
    const e = { id: 1, kind: "mob", name: "poring", x: 1.5, y: 2, hp: 5, maxHp: 50, alive: true } as const;
    const aoiWithEntity = encode({
      type: "aoi",
      seq: 1,
      map: "m",
      tick: 1,
      t: 0,
      mode: "server",
      enter: [e],
      update: [],
      leave: [],
      corrections: [],
    });
    const badBool = aoiWithEntity.slice();
    badBool[badBool.length - 2 - 2 - 2 - 1] = 2; // the entity's `alive`
    expect(reasonOf(() => decode(badBool, "s2c"))).toBe("bad_frame");
    const badEnum = aoiWithEntity.slice();
    badEnum[6 + 3 + 4 + 8] = 3; // mode
    expect(reasonOf(() => decode(badEnum, "s2c"))).toBe("bad_frame");
    expect(reasonOf(() => decode(Uint8Array.of(PROTOCOL_VERSION, 20, 0xff, 0xff), "c2s"))).toBe("bad_frame");
    // NaN timestamps are not numbers a game can use.
    const ping = encode({ type: "ping", t: 1 });
    new DataView(ping.buffer).setFloat64(2, Number.NaN, true);
    expect(reasonOf(() => decode(ping, "c2s"))).toBe("bad_frame");
  });

  it("refuses to encode values outside their types", () => {
    expect(() => encode({ type: "move", n: 0, x: 70000, y: 0 })).toThrow(RangeError);
    expect(() => encode({ type: "pos", n: 0, x: -1, y: 0 })).toThrow(RangeError);
    expect(() => encode({ type: "chat", n: 0, text: "x".repeat(801) })).toThrow(RangeError);
    expect(() => encode({ type: "welcome", mode: "yes" } as unknown as Message)).toThrow(RangeError);
  });

  it("assembles per-session AOI messages from a shared entity table, byte-equal to encode", () => {
    const entities = fc.array(arbitraryOf(entity.desc), { minLength: 1, maxLength: 12 }) as fc.Arbitrary<
      Entity[]
    >;
    fc.assert(
      fc.property(
        entities,
        fc.array(fc.nat(), { maxLength: 12 }),
        fc.array(fc.nat(), { maxLength: 12 }),
        fc.array(fc.nat({ max: 0xffffffff }), { maxLength: 5 }),
        fc.array(arbitraryOf(correction.desc) as fc.Arbitrary<Correction>, { maxLength: 3 }),
        fc.nat({ max: 0xffffffff }),
        (table, enterRaw, updateRaw, leave, fixes, seq) => {
          const enter = enterRaw.map((i) => i % table.length);
          const update = updateRaw.map((i) => i % table.length);
          const head = { map: "prt_fild08", tick: 77, t: 1234.5, mode: "p2p" } as const;
          const enc = new AoiBatchEncoder(head, table);
          const fast = enc.encode(seq, enter, update, leave, fixes);
          const slow = encode({
            type: "aoi",
            seq,
            ...head,
            enter: enter.map((i) => table[i]!),
            update: update.map((i) => table[i]!),
            leave,
            corrections: fixes,
          });
          expect(Buffer.compare(fast, slow)).toBe(0);
        },
      ),
      { numRuns: 500 },
    );
  });

  it("maps reason codes to close codes and back", () => {
    for (const r of REASON_CODES) expect(reasonOfCloseCode(closeCodeOf(r))).toBe(r);
    expect(closeCodeOf("bad_frame")).toBe(4000);
  });

  // The fuzz: a seeded generator (reproducible, fast) producing a million frames: random bytes,
  // valid frames with bytes flipped, truncated, extended, spliced, and with lengths and counts
  // set to extremes. Every decode either returns a message that re-encodes to the same bytes or
  // throws a ProtocolError; anything else (a TypeError, a RangeError, a hang) fails the test.
  it("survives a million fuzzed frames with only typed errors", () => {
    let s = 0x9e3779b9;
    const rnd = () => {
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      return (s >>> 0) / 0x100000000;
    };
    const int = (n: number) => Math.floor(rnd() * n);
    const seeds: Uint8Array[] = fc
      .sample(arbitraryMessage(), { numRuns: 3000, seed: 42 })
      .map((m: Message) => encode(m));
    const accepts: Accept[] = ["c2s", "s2c", "p2p"];
    const reasons = new Map<string, number>();
    let ok = 0;
    const N = 1_000_000;
    for (let i = 0; i < N; i++) {
      const seed = seeds[int(seeds.length)]!;
      let f: Uint8Array;
      switch (i % 6) {
        case 0: {
          f = new Uint8Array(int(48));
          for (let j = 0; j < f.length; j++) f[j] = int(256);
          if (f.length > 1 && rnd() < 0.7) {
            f[0] = PROTOCOL_VERSION;
            f[1] = 1 + int(24);
          }
          break;
        }
        case 1: {
          f = seed.slice();
          for (let k = 1 + int(4); k > 0 && f.length > 0; k--) f[int(f.length)] = int(256);
          break;
        }
        case 2:
          f = seed.slice(0, int(seed.length + 1));
          break;
        case 3: {
          f = new Uint8Array(seed.length + 1 + int(8));
          f.set(seed);
          for (let j = seed.length; j < f.length; j++) f[j] = int(256);
          break;
        }
        case 4: {
          const other = seeds[int(seeds.length)]!;
          const cut = int(seed.length + 1);
          f = new Uint8Array(cut + other.length);
          f.set(seed.subarray(0, cut));
          f.set(other, cut);
          break;
        }
        default: {
          // Lengths and counts are u16: write 0xffff or a value just past the end somewhere.
          f = seed.slice();
          if (f.length > 3) {
            const at = 2 + int(f.length - 3);
            const v = rnd() < 0.5 ? 0xffff : f.length - at;
            f[at] = v & 0xff;
            f[at + 1] = (v >> 8) & 0xff;
          }
        }
      }
      const accept = accepts[int(3)]!;
      try {
        const m = decode(f, accept);
        ok++;
        if (Buffer.compare(encode(m), f) !== 0) throw new Error(`frame ${i} does not re-encode to itself`);
      } catch (err) {
        if (!(err instanceof ProtocolError)) throw err;
        reasons.set(err.reason, (reasons.get(err.reason) ?? 0) + 1);
      }
    }
    // The generator reaches the decoder's every branch: valid frames and each kind of rejection.
    expect(ok).toBeGreaterThan(10_000);
    for (const r of ["bad_frame", "unsupported_version", "unknown_type", "unexpected_type"])
      expect(reasons.get(r) ?? 0).toBeGreaterThan(100);
  }, 120_000);
});
