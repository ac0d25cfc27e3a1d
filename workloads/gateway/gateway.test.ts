import { describe, expect, it } from "vitest";
import { encode, type Message } from "../../platform/protocol/messages.ts";
import { fitEntity } from "./fanout.ts";
import { staticDirectory } from "./routing.ts";

describe("gateway helpers", () => {
  it("fits bus entity states into what the wire carries", () => {
    const ok = { id: 1, kind: "mob", x: 1.5, y: 2, hp: 5, maxHp: 50, alive: true, name: "poring" } as const;
    expect(fitEntity(ok)).toBe(ok);
    const odd = fitEntity({ ...ok, hp: -3, x: -1, y: 5000, name: "é".repeat(40) });
    expect(odd).toMatchObject({ hp: 0, x: 0, y: 0xffff / 16 });
    expect(Buffer.byteLength(odd.name)).toBeLessThanOrEqual(32);
    // It encodes.
    const frame: Message = {
      type: "aoi",
      seq: 1,
      map: "m",
      tick: 1,
      t: 0,
      mode: "server",
      enter: [odd],
      update: [],
      leave: [],
      corrections: [],
    };
    expect(() => encode(frame)).not.toThrow();
  });

  it("looks maps up in a static directory", () => {
    const d = staticDirectory({ prt: ["prontera", "prt_fild08"], pay: ["payon"] });
    expect(d.zoneOf("prt_fild08")).toBe("prt");
    expect(d.zoneOf("payon")).toBe("pay");
    expect(d.zoneOf("geffen")).toBeUndefined();
  });
});
