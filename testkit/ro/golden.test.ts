// Golden vectors on both sides: the server's codec and the independent test client produce
// and read the same documented bytes.
import { describe, expect, it } from "vitest";
import { decode, encode } from "../../platform/protocol/ro/codec.ts";
import { decodeServer } from "./client.ts";
import { GOLDEN } from "./golden.ts";

describe("RO golden vectors", () => {
  for (const v of GOLDEN) {
    it(`${v.name}: the server codec`, () => {
      expect(encode(v.value).toString("hex")).toBe(v.bytes.toString("hex"));
      expect(decode(v.bytes, v.dir as "c2s")).toEqual(v.value);
    });
    it(`${v.name}: the test client`, () => {
      if (v.dir === "c2s") expect(v.client?.().toString("hex")).toBe(v.bytes.toString("hex"));
      else expect(decodeServer(v.bytes)).toEqual(v.value);
    });
  }
});
