import { describe, expect, it } from "vitest";
import { type AoiFrame, decode, encode, encodeFrame, parseMapSubject, subjects } from "./contract.ts";

const frame: AoiFrame = {
  v: 1,
  map: "prt_fild08",
  tick: 42,
  mode: "p2p",
  fence: "1234",
  ents: [
    { id: 0, kind: "mob", x: 10.5, y: 3.0625, hp: 50, maxHp: 50, alive: true, name: "poring" },
    { id: 7, kind: "player", x: 200.5, y: 399.9375, hp: 0, maxHp: 400, alive: false, name: "Ålice ✓" },
    { id: 9, kind: "mob", x: 0, y: 0, hp: 1, maxHp: 50, alive: true, name: "poring" },
  ],
  views: [{ session: "s1", self: 7, enter: [0, 1], update: [2], leave: [5], corrections: [] }],
};

describe("bus contract", () => {
  it("packs AoiFrame entity tables and decodes them to the same frame", () => {
    const packed = encodeFrame(frame);
    expect(decode<AoiFrame>(packed)).toEqual(frame);
    // The plain form decodes to the same too, and the packed one is smaller.
    expect(decode<AoiFrame>(encode(frame))).toEqual(frame);
    expect(packed.length).toBeLessThan(encode(frame).length);
  });

  it("builds and parses subjects, refusing tokens that would break them", () => {
    const a = { region: "eu1", zone: "fields", map: "prt_fild08" };
    expect(subjects.aoi(a, "gw-1")).toBe("hp2p.eu1.fields.prt_fild08.aoi.gw-1");
    expect(parseMapSubject(subjects.aoi(a, "gw-1"))).toEqual({ ...a, kind: "aoi", gateway: "gw-1" });
    expect(() => subjects.input({ ...a, map: "a.b" })).toThrow(/invalid map/);
    expect(() => subjects.input({ ...a, zone: "*" })).toThrow(/invalid zone/);
  });
});
