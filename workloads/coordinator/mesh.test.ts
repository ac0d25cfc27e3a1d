import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ProtocolError } from "../../platform/protocol/schema.ts";
import { TEST_THRESHOLDS } from "../../testkit/coordinator.ts";
import {
  assignMeshes,
  chooseHost,
  NO_QUALITY,
  nextArea,
  peerTooPoor,
  type RosterEntry,
  relayed,
  zoneVerdict,
} from "./mesh.ts";
import { decodeCoord, encodeCoord, type Quality } from "./messages.ts";

function entry(id: string, o: Partial<RosterEntry> = {}): RosterEntry {
  return {
    id,
    session: `s-${id}`,
    entity: 1,
    zone: "z",
    map: "m",
    x: 10,
    y: 10,
    ax: 0,
    ay: 0,
    joinedAt: 0,
    replica: "r",
    q: NO_QUALITY,
    failed: [],
    ...o,
  };
}

const q = (rttMs: number, o: Partial<Quality> = {}): Quality => ({
  rttMs,
  lossPercent: 0,
  jitterMs: 0,
  kbps: 2000,
  open: 3,
  ...o,
});

describe("assignMeshes", () => {
  it("cuts an area into meshes of at most maxPeers, every peer in exactly one", () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ area: fc.integer({ min: 0, max: 3 }), t: fc.nat(1000) }), { maxLength: 120 }),
        fc.integer({ min: 1, max: 40 }),
        (ps, max) => {
          const es = ps.map((p, i) => entry(`p${i}`, { ax: p.area, joinedAt: p.t }));
          const meshes = assignMeshes(es, max);
          const seen = new Set<string>();
          for (const [id, members] of meshes) {
            expect(members.length).toBeGreaterThan(0);
            expect(members.length).toBeLessThanOrEqual(max);
            const areas = new Set(members.map((m) => es.find((e) => e.id === m)!.ax));
            expect(areas.size).toBe(1);
            expect(id.startsWith(`m/${[...areas][0]}.0/`)).toBe(true);
            for (const m of members) {
              expect(seen.has(m)).toBe(false);
              seen.add(m);
            }
          }
          expect(seen.size).toBe(es.length);
        },
      ),
    );
  });

  it("is stable: a newcomer joins the last mesh, earlier meshes keep their members", () => {
    const es = Array.from({ length: 25 }, (_, i) => entry(`p${String(i).padStart(2, "0")}`, { joinedAt: i }));
    const before = assignMeshes(es, 10);
    const after = assignMeshes([...es, entry("a-new", { joinedAt: 100 })], 10);
    expect(after.get("m/0.0/0")).toEqual(before.get("m/0.0/0"));
    expect(after.get("m/0.0/1")).toEqual(before.get("m/0.0/1"));
    expect(after.get("m/0.0/2")).toEqual([...before.get("m/0.0/2")!, "a-new"]);
  });

  it("keeps maps apart", () => {
    const meshes = assignMeshes([entry("a"), entry("b", { map: "other" })], 10);
    expect([...meshes.values()]).toEqual([["a"], ["b"]]);
  });
});

describe("nextArea", () => {
  it("changes area only past the margin (no flapping at an edge)", () => {
    expect(nextArea(undefined, 57, 3, 56, 4)).toEqual({ ax: 1, ay: 0 });
    const cur = { ax: 0, ay: 0 };
    expect(nextArea(cur, 58, 3, 56, 4)).toBe(cur);
    expect(nextArea(cur, 59.9, 3, 56, 4)).toBe(cur);
    expect(nextArea(cur, 60, 3, 56, 4)).toEqual({ ax: 1, ay: 0 });
  });
});

describe("chooseHost", () => {
  it("picks the best score and keeps the current host unless clearly beaten", () => {
    const ms = [
      { id: "a", q: q(40) },
      { id: "b", q: q(30) },
    ];
    expect(chooseHost(ms, undefined)).toBe("b");
    // a is current: b is better, but not by 30 %.
    expect(chooseHost(ms, "a")).toBe("a");
    expect(
      chooseHost(
        [
          { id: "a", q: q(40) },
          { id: "b", q: q(10) },
        ],
        "a",
      ),
    ).toBe("b");
    // Loss and low bandwidth count against a candidate.
    expect(
      chooseHost(
        [
          { id: "a", q: q(20, { lossPercent: 10 }) },
          { id: "b", q: q(25) },
        ],
        undefined,
      ),
    ).toBe("b");
    expect(
      chooseHost(
        [
          { id: "a", q: q(20, { kbps: 64 }) },
          { id: "b", q: q(25) },
        ],
        undefined,
      ),
    ).toBe("b");
    // A host that left, or lost every link, is replaced.
    expect(chooseHost(ms, "gone")).toBe("b");
    expect(
      chooseHost(
        [
          { id: "a", q: q(10, { open: 0 }) },
          { id: "b", q: q(90) },
        ],
        "a",
      ),
    ).toBe("b");
    expect(chooseHost([], "a")).toBeUndefined();
  });
});

describe("zoneVerdict", () => {
  const t = TEST_THRESHOLDS;
  it("falls back past latency max, loss max or jitter critical (median over connected peers)", () => {
    const ok = [entry("a", { q: q(50) }), entry("b", { q: q(60) }), entry("c", { q: q(900) })];
    expect(zoneVerdict(ok, t, 0, 0).fallback).toBeUndefined();
    const slow = [entry("a", { q: q(350) }), entry("b", { q: q(400) })];
    expect(zoneVerdict(slow, t, 0, 0).fallback).toMatch(/latency/);
    const lossy = [
      entry("a", { q: q(10, { lossPercent: 6 }) }),
      entry("b", { q: q(10, { lossPercent: 8 }) }),
    ];
    expect(zoneVerdict(lossy, t, 0, 0).fallback).toMatch(/loss/);
    const jittery = [entry("a", { q: q(10, { jitterMs: 60 }) }), entry("b", { q: q(10, { jitterMs: 70 }) })];
    expect(zoneVerdict(jittery, t, 0, 0).fallback).toMatch(/jitter/);
  });

  it("counts minimum peers only once peers had time to connect", () => {
    const lonely = [entry("a", { joinedAt: 0 }), entry("b", { joinedAt: 0 })];
    expect(zoneVerdict(lonely, t, 1000, 5000).fallback).toBeUndefined();
    expect(zoneVerdict(lonely, t, 6000, 5000).fallback).toMatch(/fewer than 2/);
    expect(zoneVerdict([entry("a")], t, 6000, 5000).fallback).toBeUndefined();
  });
});

describe("per-peer and per-pair fallback", () => {
  it("a peer past the latency or loss maximum is too poor; a failed pair is relayed both ways", () => {
    expect(peerTooPoor(q(301), TEST_THRESHOLDS)).toBe(true);
    expect(peerTooPoor(q(10, { lossPercent: 5.1 }), TEST_THRESHOLDS)).toBe(true);
    expect(peerTooPoor(q(299), TEST_THRESHOLDS)).toBe(false);
    expect(peerTooPoor(q(999, { open: 0 }), TEST_THRESHOLDS)).toBe(false);
    const a = entry("a", { failed: ["b"] });
    const b = entry("b");
    expect(relayed(a, b)).toBe(true);
    expect(relayed(b, a)).toBe(true);
    expect(relayed(b, entry("c"))).toBe(false);
  });
});

describe("coordinator messages", () => {
  it("round-trip and reject misdirected or malformed frames", () => {
    const hb = { type: "heartbeat", t: 1.5, x: 3, y: 4.5, q: q(12.5) } as const;
    expect(decodeCoord(encodeCoord(hb), "c2s")).toEqual(hb);
    const pj = {
      type: "peerJoined",
      peer: "p",
      session: "s",
      entity: 7,
      mesh: "m/0.0/0",
      offerer: true,
    } as const;
    expect(decodeCoord(encodeCoord(pj), "s2c")).toEqual(pj);
    expect(() => decodeCoord(encodeCoord(pj), "c2s")).toThrow(ProtocolError);
    const frame = encodeCoord(hb);
    expect(() => decodeCoord(frame.subarray(0, frame.length - 1), "c2s")).toThrow(ProtocolError);
    expect(() => decodeCoord(new Uint8Array([1, 1]), "c2s")).toThrow(ProtocolError);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        try {
          decodeCoord(bytes, "c2s");
        } catch (e) {
          expect(e).toBeInstanceOf(ProtocolError);
        }
      }),
    );
  });
});
