// fast-check arbitraries derived from the message table, for property tests and fuzzing (test
// and bench code only: fast-check is a dev dependency).
import fc from "fast-check";
import { MESSAGES, type Message, type MessageType } from "../platform/protocol/messages.ts";
import type { Descriptor } from "../platform/protocol/schema.ts";

function maxUtf8(max: number) {
  // Up to 4 bytes per code point: stay within the byte bound.
  return fc.string({ unit: "binary", maxLength: Math.floor(max / 4) });
}

export function arbitraryOf(d: Descriptor, listCap = 8): fc.Arbitrary<unknown> {
  switch (d.t) {
    case "u8":
      return fc.integer({ min: 0, max: 0xff });
    case "u16":
      return fc.integer({ min: 0, max: 0xffff });
    case "u32":
      return fc.integer({ min: 0, max: 0xffffffff });
    case "i32":
      return fc.integer({ min: -0x80000000, max: 0x7fffffff });
    case "f64":
      return fc.double({ noNaN: true, noDefaultInfinity: true });
    case "cell":
      return fc.integer({ min: 0, max: 0xffff }).map((q) => q / 16);
    case "bool":
      return fc.boolean();
    case "str":
      return maxUtf8(d.max);
    case "enum":
      return fc.constantFrom(...d.values);
    case "opt":
      return fc.option(arbitraryOf(d.of, listCap), { nil: undefined });
    case "list":
      return fc.array(arbitraryOf(d.of, listCap), { maxLength: Math.min(d.max, listCap) });
    case "struct": {
      const rec: Record<string, fc.Arbitrary<unknown>> = {};
      for (const [k, f] of Object.entries(d.fields)) rec[k] = arbitraryOf(f, listCap);
      // Optional fields are absent rather than undefined, as the decoder returns them.
      return fc.record(rec).map((o) => {
        for (const k of Object.keys(o)) if (o[k] === undefined) delete o[k];
        return o;
      });
    }
  }
}

export function arbitraryMessage(type?: MessageType): fc.Arbitrary<Message> {
  const types = type ? [type] : (Object.keys(MESSAGES) as MessageType[]);
  return fc.oneof(
    ...types.map((t) => {
      const def = MESSAGES[t];
      const body = arbitraryOf(def.body.desc) as fc.Arbitrary<Record<string, unknown>>;
      return def.seq
        ? fc
            .tuple(body, fc.integer({ min: 0, max: 0xffffffff }))
            .map(([b, seq]) => ({ type: t, seq, ...b }) as Message)
        : body.map((b) => ({ type: t, ...b }) as Message);
    }),
  );
}
