import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ProtocolError } from "../../platform/protocol/schema.ts";
import { TEST_THRESHOLDS } from "../../testkit/coordinator.ts";
import {
  assignMeshes,
  chooseHost,
  LINK_GRID_CELLS,
  meshLinks,
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

describe("meshLinks", () => {
  const members = fc.array(fc.record({ x: fc.nat(60), y: fc.nat(60), t: fc.nat(1000) }), { maxLength: 50 });

  it("links symmetrically, at most maxLinks per peer, and a pair is left out only when one end is full", () => {
    fc.assert(
      fc.property(members, fc.integer({ min: 1, max: 49 }), (ps, k) => {
        const es = ps.map((p, i) => entry(`p${i}`, { x: p.x, y: p.y, joinedAt: p.t }));
        const links = meshLinks(es, k);
        expect([...links.keys()].sort()).toEqual(es.map((e) => e.id).sort());
        for (const [a, to] of links) {
          expect(to.length).toBeLessThanOrEqual(k);
          expect(to).not.toContain(a);
          for (const b of to) expect(links.get(b)).toContain(a);
        }
        for (const a of es)
          for (const b of es)
            if (a.id !== b.id && !links.get(a.id)!.includes(b.id))
              expect(links.get(a.id)!.length === k || links.get(b.id)!.length === k).toBe(true);
      }),
    );
  });

  it("gives the same links whatever order the roster lists the members in", () => {
    fc.assert(
      fc.property(members, fc.integer({ min: 1, max: 10 }), (ps, k) => {
        const es = ps.map((p, i) => entry(`p${i}`, { x: p.x, y: p.y, joinedAt: p.t }));
        const sorted = (m: Map<string, string[]>) => [...m].map(([a, to]) => [a, [...to].sort()]).sort();
        expect(sorted(meshLinks([...es].reverse(), k))).toEqual(sorted(meshLinks(es, k)));
      }),
    );
  });

  it("is a full mesh up to maxLinks + 1 members", () => {
    const es = Array.from({ length: 9 }, (_, i) => entry(`p${i}`, { x: i * 20 }));
    for (const [a, to] of meshLinks(es, 8)) expect(to.length, a).toBe(8);
  });

  it("links nearest mates first, older pairs first among equals", () => {
    // A row, one grid square apart: with two links each, every peer links its neighbours, and
    // the two ends, left with room, each other.
    const row = Array.from({ length: 6 }, (_, i) => entry(`p${i}`, { x: i * LINK_GRID_CELLS, joinedAt: i }));
    const links = meshLinks(row, 2);
    expect(links.get("p0")).toEqual(["p1", "p5"]);
    expect(links.get("p2")).toEqual(["p1", "p3"]);
    expect(links.get("p5")).toEqual(["p0", "p4"]);
    // Four in one square and a newcomer there: the older pairs keep their links (a, b and c are
    // full), the newcomer gets the one peer with room.
    const square = ["a", "b", "c", "d"].map((id, i) => entry(id, { joinedAt: i }));
    const late = meshLinks([...square, entry("e", { joinedAt: 10 })], 2);
    expect(late.get("a")).toEqual(["b", "c"]);
    expect(late.get("e")).toEqual(["d"]);
    // Walking inside its grid square changes nothing.
    const moved = meshLinks([...square.slice(0, 3), entry("d", { joinedAt: 3, x: 11 })], 2);
    expect(moved).toEqual(meshLinks(square.slice(0, 3).concat(entry("d", { joinedAt: 3, x: 10 })), 2));
  });
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
