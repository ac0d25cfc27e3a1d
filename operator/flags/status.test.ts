import { describe, expect, it } from "vitest";
import type { PodMode, PodReport } from "../../platform/flags/layout.ts";
import { compile, type ZoneInput } from "./compiler.ts";
import { conflictCondition, foldPolicies, foldStatus, type ZoneForFold } from "./status.ts";

const NS = "eu";
const zones: (ZoneInput & ZoneForFold)[] = [
  {
    metadata: { name: "a", namespace: NS, labels: { t: "f" } },
    spec: { regionRef: { name: "r" }, maps: [{ name: "a", type: "Field" }], mapServer: { replicas: 2 } },
  },
  {
    metadata: { name: "b", namespace: NS, labels: { t: "f" } },
    spec: {
      regionRef: { name: "r" },
      maps: [
        { name: "b", type: "Field" },
        { name: "bt", type: "Town" },
      ],
    },
  },
  {
    metadata: { name: "t", namespace: NS, labels: { t: "t" } },
    spec: { regionRef: { name: "r" }, maps: [{ name: "t", type: "Town" }] },
  },
];
const policies = [
  {
    metadata: { name: "p", namespace: NS, generation: 3 },
    spec: { zoneSelector: { matchLabels: { t: "f" } }, enabled: true },
  },
];
const compiled = compile({ policies, zones, regions: [{ metadata: { name: "r", namespace: NS } }] });

const rep = (
  pod: string,
  zone: string,
  epoch: number,
  mode: PodMode,
  reason = "",
  since = "2026-01-01T00:00:00Z",
): PodReport => ({
  v: 1,
  pod,
  zone,
  namespace: NS,
  service: "map-server",
  epoch,
  mode,
  reason,
  since,
  updatedAt: since,
});

const fold = (
  reports: PodReport[],
  zs: (ZoneInput & ZoneForFold)[] = zones,
  ps: typeof policies = policies,
) => foldStatus({ compiled, epoch: 5, reports, zones: zs, policies: ps, now: "2026-01-02T00:00:00Z" });

/** A region-wide pod's report (gateway, coordinator) with per-zone entries. */
const regionRep = (pod: string, service: string, zones: PodReport["zones"]): PodReport => ({
  v: 1,
  pod,
  namespace: NS,
  service,
  epoch: 5,
  mode: "p2p",
  reason: "",
  since: "2026-01-01T00:00:00Z",
  updatedAt: "2026-01-01T00:00:00Z",
  zones,
});

describe("status fold", () => {
  it("derives zone mode, applied epoch and replicas from the reports", () => {
    const out = fold([
      rep("a-0", "a", 5, "p2p"),
      rep("a-1", "a", 4, "p2p"),
      rep("b-0", "b", 5, "p2p"),
      rep("t-0", "t", 5, "server"),
    ]);
    expect(out.zones.get("eu/a")).toEqual({
      mode: "P2P",
      policy: "p",
      appliedEpoch: 4,
      replicas: { applied: 1 },
      fallbackReason: null,
      fallbackSince: null,
      p2pPeers: null,
      p2pPlayers: null,
    });
    expect(out.zones.get("eu/b")!.mode).toBe("Mixed"); // its town map stays server-side
    expect(out.zones.get("eu/t")).toMatchObject({ mode: "Server", policy: null, appliedEpoch: 5 });
    const p = out.policies.get("eu/p")!;
    expect(p).toMatchObject({ observedGeneration: 3, matchedZones: 2, appliedZones: 1, epoch: 5 });
    expect(p.conditions.find((c) => c.type === "Ready")).toMatchObject({
      status: "False",
      reason: "Applying",
    });
    expect(p.conditions.find((c) => c.type === "Reconciling")!.message).toMatch(/waiting for a/);
    expect(out.events).toEqual([]);
  });

  it("is Mixed when replicas disagree and names the pods in fallback", () => {
    const out = fold([
      rep("a-0", "a", 5, "p2p"),
      rep("a-1", "a", 5, "fallback", "coordinator unreachable", "2026-01-01T10:00:00Z"),
    ]);
    const a = out.zones.get("eu/a")!;
    expect(a.mode).toBe("Mixed");
    expect(a.fallbackReason).toBe("coordinator unreachable (1 of 2 pods: a-1)");
    expect(a.fallbackSince).toBe("2026-01-01T10:00:00Z");
    expect(out.events).toEqual([
      {
        kind: "Zone",
        namespace: NS,
        name: "a",
        type: "Warning",
        reason: "FallbackEntered",
        message: a.fallbackReason,
      },
    ]);
  });

  it("emits FallbackExited when the zone leaves fallback, and nothing while it stays", () => {
    const inFallback = zones.map((z) =>
      z.metadata.name === "a" ? { ...z, status: { fallbackReason: "x", mode: "Fallback" } } : z,
    );
    const stays = fold(
      [rep("a-0", "a", 5, "fallback", "x"), rep("a-1", "a", 5, "fallback", "x")],
      inFallback,
    );
    expect(stays.zones.get("eu/a")!.mode).toBe("Fallback");
    expect(stays.events).toEqual([]);
    const leaves = fold([rep("a-0", "a", 5, "p2p"), rep("a-1", "a", 5, "p2p")], inFallback);
    expect(leaves.events).toEqual([
      expect.objectContaining({ name: "a", type: "Normal", reason: "FallbackExited" }),
    ]);
  });

  it("keeps the epoch that carried a generation, and is Ready once every governed zone is applied", () => {
    const seen = [{ ...policies[0]!, status: { observedGeneration: 3, epoch: 4 } }];
    const all = [rep("a-0", "a", 5, "p2p"), rep("a-1", "a", 5, "p2p"), rep("b-0", "b", 4, "p2p")];
    const p = fold(all, zones, seen).policies.get("eu/p")!;
    expect(p.epoch).toBe(4); // generation 3 went out in epoch 4; later epochs do not move it
    expect(p.appliedZones).toBe(2);
    expect(p.conditions.find((c) => c.type === "Ready")!.status).toBe("True");
  });

  it("without reports, shows the published intent (forced fallback included)", () => {
    const forced = compile({
      policies: [{ ...policies[0]!, spec: { ...policies[0]!.spec, forceFallback: true } }],
      zones,
      regions: [],
    });
    const out = foldStatus({
      compiled: forced,
      epoch: 5,
      reports: [],
      zones,
      policies,
      now: "2026-01-02T00:00:00Z",
    });
    expect(out.zones.get("eu/a")).toMatchObject({
      mode: "Fallback",
      appliedEpoch: null,
      fallbackSince: "2026-01-02T00:00:00Z",
    });
    expect(out.zones.get("eu/a")!.fallbackReason).toMatch(/forced by policy p/);
    expect(out.events.map((e) => e.name)).toEqual(["a", "b"]);
  });

  it("a zone held in fallback by region-wide pods is in Fallback, naming who and why; other zones are not", () => {
    const lost = {
      reason: "coordinator unreachable: no replica heard for 600 ms",
      since: "2026-01-01T00:00:07Z",
    };
    const out = fold([
      rep("a-0", "a", 5, "p2p"),
      rep("a-1", "a", 5, "p2p"),
      rep("b-0", "b", 5, "p2p"),
      rep("t-0", "t", 5, "server"),
      regionRep("gw-1", "gateway", { a: { fallback: lost }, t: { fallback: lost } }),
      regionRep("gw-0", "gateway", { a: { fallback: lost } }),
      regionRep("co-0", "coordinator", {
        a: { fallback: { reason: "latency p95 412 ms > max 300 ms", since: "2026-01-01T00:00:05Z" } },
      }),
    ]);
    expect(out.zones.get("eu/a")).toMatchObject({
      mode: "Fallback",
      fallbackReason:
        "latency p95 412 ms > max 300 ms (coordinator: co-0); coordinator unreachable: no replica heard for 600 ms (gateway: gw-0, gw-1)",
      fallbackSince: "2026-01-01T00:00:05Z",
    });
    // Not held by anyone: stays as its map servers say.
    expect(out.zones.get("eu/b")).toMatchObject({ mode: "Mixed", fallbackReason: null });
    // P2P never ran in the town zone: a hold there changes nothing.
    expect(out.zones.get("eu/t")).toMatchObject({ mode: "Server", fallbackReason: null });
    expect(out.events.map((e) => `${e.name} ${e.reason}`)).toEqual(["a FallbackEntered"]);
  });

  it("takes p2pPeers from the coordinator replicas (the largest count), not from other pods", () => {
    const out = fold([
      rep("a-0", "a", 5, "p2p"),
      regionRep("co-0", "coordinator", { a: { peers: { connected: 28, meshes: 3, relayed: 6 } } }),
      regionRep("co-1", "coordinator", { a: { peers: { connected: 30, meshes: 3, relayed: 7 } } }),
      regionRep("gw-0", "gateway", { a: { peers: { connected: 99, meshes: 9, relayed: 9 } } }),
    ]);
    expect(out.zones.get("eu/a")!.p2pPeers).toEqual({ connected: 30, meshes: 3, relayed: 7 });
    expect(out.zones.get("eu/b")!.p2pPeers).toBeNull();
  });

  it("adds up the canary's players over the gateway replicas, with the rollout in force", () => {
    const out = fold([
      rep("a-0", "a", 5, "p2p"),
      regionRep("gw-0", "gateway", { a: { players: { eligible: 10, playing: 3 } } }),
      regionRep("gw-1", "gateway", { a: { players: { eligible: 6, playing: 2 } } }),
      regionRep("co-0", "coordinator", { a: { players: { eligible: 99, playing: 99 } } }),
    ]);
    const players = out.zones.get("eu/a")!.p2pPlayers!;
    expect(players).toMatchObject({ eligible: 16, playing: 5 });
    expect(players.rolloutPercent).toBeGreaterThanOrEqual(0);
    expect(out.zones.get("eu/b")!.p2pPlayers).toBeNull();
  });

  it("names the epoch per Region (each its own flag store) and applies each zone against its own", () => {
    const applied = new Map([
      ["a", { epoch: 7, complete: true }], // Region r's store is at 7
      ["b", { epoch: 3, complete: true }], // Region s's store is at 3
    ]);
    const regionOf = (_ns: string, zone: string) => (zone === "a" ? "r" : "s");
    const carriedBy = (_ns: string, _p: string, _g: number, region: string) => (region === "r" ? 7 : 3);
    const out = foldPolicies({
      compiled,
      policies,
      applied: (_ns, zone) => applied.get(zone),
      regionOf,
      carriedBy,
    }).get("eu/p")!;
    expect(out.epochs).toEqual([
      { region: "r", epoch: 7 },
      { region: "s", epoch: 3 },
    ]);
    expect(out.epoch).toBe(7);
    expect(out.appliedZones).toBe(2); // b counts at its own store's 3, not at r's 7
    // Kept while the generation is the same, per Region: an operator that restarted and
    // published the same generation again at a later epoch does not move it.
    const again = foldPolicies({
      compiled,
      policies: [{ ...policies[0]!, status: { observedGeneration: 3, epoch: 7, epochs: out.epochs } }],
      applied: (_ns, zone) => applied.get(zone),
      regionOf,
      carriedBy: (...a) => carriedBy(...a) + 1,
    }).get("eu/p")!;
    expect(again.epochs).toEqual(out.epochs);
  });

  it("names no epoch for a Region, and counts its zones pending, until the generation is published there", () => {
    // Region r's store still serves epoch 7 from before the policy's generation 3: status folded
    // between the policy's write and the publish must not name 7 for it (and keep it after).
    const applied = new Map([
      ["a", { epoch: 7, complete: true }],
      ["b", { epoch: 3, complete: true }],
    ]);
    const fold = (
      rPublished: boolean,
      status?: { observedGeneration: number; epochs: { region: string; epoch: number }[] },
    ) =>
      foldPolicies({
        compiled,
        policies: [{ ...policies[0]!, ...(status ? { status } : {}) }],
        applied: (_ns, zone) => applied.get(zone),
        regionOf: (_ns, zone) => (zone === "a" ? "r" : "s"),
        carriedBy: (_ns, _p, _g, region) => (region === "r" ? (rPublished ? 8 : undefined) : 3),
      }).get("eu/p")!;
    const before = fold(false);
    expect(before.epochs).toEqual([
      { region: "r", epoch: 0 },
      { region: "s", epoch: 3 },
    ]);
    expect(before.appliedZones).toBe(1);
    expect(before.conditions.find((c) => c.type === "Ready")?.status).toBe("False");
    // Published at 8: the status written before names 8, not a kept 0 or the old 7.
    const after = fold(true, { observedGeneration: 3, epochs: before.epochs });
    expect(after.epochs).toEqual([
      { region: "r", epoch: 8 },
      { region: "s", epoch: 3 },
    ]);
    expect(after.appliedZones).toBe(1); // a is still at 7
  });
});

describe("the Conflicted condition", () => {
  const overlapping = [
    ...policies,
    {
      metadata: { name: "all", namespace: NS, generation: 1 },
      spec: { zoneSelector: {}, enabled: false, priority: 10 },
    },
    {
      metadata: { name: "towns", namespace: NS, generation: 1 },
      spec: { zoneSelector: { matchLabels: { t: "t" } }, enabled: true },
    },
  ];
  const fold = (ps: typeof overlapping) =>
    foldPolicies({
      compiled: compile({ policies: ps, zones, regions: [{ metadata: { name: "r", namespace: NS } }] }),
      policies: ps,
      applied: () => ({ epoch: 1, complete: true }),
      regionOf: () => "r",
      carriedBy: () => 1,
    });
  const conflicted = (s: { conditions: { type: string }[] } | undefined) =>
    s?.conditions.find((c) => c.type === "Conflicted");

  it("is True on every policy of an overlap, naming the other policy and the zones", () => {
    const out = fold(overlapping);
    expect(conflicted(out.get("eu/p"))).toEqual({
      type: "Conflicted",
      status: "True",
      reason: "Overridden",
      message: "overlaps other policies: zones a, b governed by all instead (higher priority, then name)",
    });
    expect(conflicted(out.get("eu/towns"))).toMatchObject({
      status: "True",
      reason: "Overridden",
      message: expect.stringContaining("zone t governed by all"),
    });
    // The winner is told too: it governs those zones, but someone else selects them.
    expect(conflicted(out.get("eu/all"))).toEqual({
      type: "Conflicted",
      status: "True",
      reason: "Overlapping",
      message:
        "overlaps other policies: zones a, b also selected by p, governed by this policy; zone t also selected by towns, governed by this policy",
    });
    // The conflict does not stop a policy from being applied: Ready says how the rollout stands.
    expect(out.get("eu/p")!.conditions.find((c) => c.type === "Ready")?.status).toBe("True");
  });

  it("is False once the overlap is gone", () => {
    const out = fold(overlapping.filter((p) => p.metadata.name !== "all"));
    for (const k of ["eu/p", "eu/towns"])
      expect(conflicted(out.get(k))).toEqual({
        type: "Conflicted",
        status: "False",
        reason: "NoConflict",
        message: "",
      });
  });

  it("keeps a long message within the API's bound", () => {
    const many = Array.from({ length: 400 }, (_, i) => ({
      zone: `zone-with-a-long-name-${i}`,
      winner: `w${i % 50}`,
      policies: [`w${i % 50}`, "loser"],
      reason: "",
    }));
    const c = conflictCondition("loser", many);
    expect(c.message.length).toBeLessThanOrEqual(1024);
    expect(c.message).toContain("governed by w0 instead");
    expect(c.message).toMatch(/; and \d+ more overlaps \(status.conflicts\)$/);
    const one = conflictCondition(
      "loser",
      many.slice(0, 12).map((c) => ({ ...c, winner: "w", policies: ["w", "loser"] })),
    );
    expect(one.message).toContain("and 2 more governed by w instead");
  });
});
