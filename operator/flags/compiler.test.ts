import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { effectiveP2P, inRollout, KNOWN_SERVICES, type ZoneFlags } from "../../platform/flags/layout.ts";
import { matchesSelector } from "../../platform/kube/selector.ts";
import { DEFAULT_BACKOFF, P2PPolicySpec } from "../api/p2ppolicy.ts";
import {
  ANNOTATION_FORCE_FALLBACK,
  ANNOTATION_FORCE_FALLBACK_SERVICES,
  type CompileInput,
  compile,
  DEFAULTS,
  documents,
  type PolicyInput,
  type RegionInput,
  type ZoneInput,
} from "./compiler.ts";
import { digestOf } from "./publisher.ts";

const NS = "eu";

function zone(
  name: string,
  labels: Record<string, string> = {},
  maps = [{ name: `${name}_f`, type: "Field" }],
  annotations?: Record<string, string>,
): ZoneInput {
  return {
    metadata: { name, namespace: NS, labels, ...(annotations ? { annotations } : {}) },
    spec: { regionRef: "eu1", maps },
  };
}

function policy(name: string, spec: PolicyInput["spec"]): PolicyInput {
  return { metadata: { name, namespace: NS, generation: 1 }, spec };
}

const region: RegionInput = { metadata: { name: "eu1", namespace: NS } };

describe("compiler", () => {
  it("agrees with the API on services and defaults", () => {
    expect(DEFAULTS.recovery.initialSeconds).toBe(DEFAULT_BACKOFF.initialSeconds);
    expect(DEFAULTS.recovery.maxSeconds).toBe(DEFAULT_BACKOFF.maxSeconds);
    const schema = P2PPolicySpec.properties;
    expect(schema.transports.default).toEqual(DEFAULTS.transports);
    expect(schema.enabled.default).toBe(true);
  });

  it("enables P2P for selected zones and leaves unselected zones disabled", () => {
    const out = compile({
      policies: [policy("fields", { zoneSelector: { matchLabels: { kind: "field" } }, enabled: true })],
      zones: [zone("prontera-field", { kind: "field" }), zone("prontera", { kind: "town" })],
      regions: [region],
    });
    const byName = new Map(out.zones.map((z) => [z.zone, z]));
    expect(effectiveP2P(byName.get("prontera-field"), "map-server")).toBe(true);
    expect(effectiveP2P(byName.get("prontera"), "map-server")).toBe(false);
    expect(byName.get("prontera")!.reason).toMatch(/no P2PPolicy/);
    expect(out.policies[0]!.matchedZones).toEqual(["prontera-field"]);
    expect(out.policies[0]!.governedZones).toEqual(["prontera-field"]);
  });

  it("keeps town maps server-side unless the policy includes towns", () => {
    const maps = [
      { name: "prontera", type: "Town" },
      { name: "prt_fild01", type: "Field" },
    ];
    const townOnly = [{ name: "geffen", type: "Town" }];
    const input = (includeTowns: boolean): CompileInput => ({
      policies: [policy("all", { zoneSelector: {}, enabled: true, includeTowns })],
      zones: [zone("mixed", {}, maps), zone("town", {}, townOnly)],
      regions: [region],
    });
    const off = compile(input(false)).zones;
    expect(off[0]!.maps).toEqual([
      { name: "prontera", type: "Town", p2p: false },
      { name: "prt_fild01", type: "Field", p2p: true },
    ]);
    expect(off[0]!.enabled).toBe(true);
    expect(off[1]!.enabled).toBe(false);
    expect(off[1]!.reason).toMatch(/town/);
    const on = compile(input(true)).zones;
    expect(on[0]!.maps.every((m) => m.p2p)).toBe(true);
    expect(on[1]!.enabled).toBe(true);
  });

  it("keeps a map set to Deny server-only, even in a policy that includes towns", () => {
    const maps = [
      { name: "prontera", type: "Town", p2p: "Deny" },
      { name: "prt_fild01", type: "Field", p2p: "Deny" },
      { name: "prt_fild02", type: "Field", p2p: "Inherit" },
    ];
    const out = compile({
      policies: [policy("all", { zoneSelector: {}, enabled: true, includeTowns: true })],
      zones: [zone("denied", {}, maps), zone("all-denied", {}, maps.slice(0, 2))],
      regions: [region],
    }).zones;
    const byName = (n: string) => out.find((z) => z.zone === n)!;
    expect(byName("denied").maps.map((m) => [m.name, m.p2p])).toEqual([
      ["prontera", false],
      ["prt_fild01", false],
      ["prt_fild02", true],
    ]);
    expect(byName("denied").enabled).toBe(true);
    expect(byName("all-denied").enabled).toBe(false);
    expect(byName("all-denied").reason).toMatch(/Deny/);
  });

  it("resolves overlaps by priority, then name, and reports the conflict on every policy involved", () => {
    const out = compile({
      policies: [
        policy("b-low", { zoneSelector: {}, enabled: true, priority: 1 }),
        policy("a-high", { zoneSelector: {}, enabled: false, priority: 5 }),
        policy("c-high", { zoneSelector: {}, enabled: true, priority: 5 }),
      ],
      zones: [zone("z1")],
      regions: [region],
    });
    expect(out.zones[0]!.policy).toBe("a-high");
    expect(out.zones[0]!.enabled).toBe(false);
    for (const p of out.policies) {
      expect(p.conflicts).toHaveLength(1);
      expect(p.conflicts[0]!.winner).toBe("a-high");
      expect(p.conflicts[0]!.policies).toEqual(["a-high", "c-high", "b-low"]);
    }
    expect(out.policies.find((p) => p.name === "a-high")!.governedZones).toEqual(["z1"]);
    expect(out.policies.find((p) => p.name === "b-low")!.governedZones).toEqual([]);
  });

  it("forces fallback from the policy, the zone annotation and the region's service annotation", () => {
    const out = compile({
      policies: [
        policy("forced", { zoneSelector: { matchLabels: { f: "1" } }, enabled: true, forceFallback: true }),
        policy("normal", { zoneSelector: { matchLabels: { f: "0" } }, enabled: true }),
      ],
      zones: [
        zone("a", { f: "1" }),
        zone("b", { f: "0" }, undefined, { [ANNOTATION_FORCE_FALLBACK]: "incident 42" }),
        zone("c", { f: "0" }),
      ],
      regions: [
        {
          metadata: {
            name: "eu1",
            namespace: NS,
            annotations: { [ANNOTATION_FORCE_FALLBACK_SERVICES]: "coordinator" },
          },
        },
      ],
    });
    const [a, b, c] = out.zones;
    expect(a!.fallback).toBe(true);
    expect(a!.reason).toMatch(/policy forced/);
    expect(b!.fallback).toBe(true);
    expect(b!.reason).toMatch(/incident 42/);
    expect(c!.fallback).toBe(false);
    expect(effectiveP2P(c, "map-server")).toBe(true);
    expect(c!.services.coordinator!.fallback).toBe(true);
    expect(effectiveP2P(c, "coordinator")).toBe(false);
  });

  it("treats unknown services as disabled and warns about them in the policy", () => {
    const out = compile({
      policies: [policy("p", { zoneSelector: {}, enabled: true, services: ["map-server", "teleporter"] })],
      zones: [zone("z")],
      regions: [region],
    });
    expect(out.policies[0]!.warnings[0]).toMatch(/teleporter/);
    expect(effectiveP2P(out.zones[0], "map-server")).toBe(true);
    expect(effectiveP2P(out.zones[0], "gateway")).toBe(false);
    expect(effectiveP2P(out.zones[0], "teleporter")).toBe(false);
    expect(effectiveP2P(undefined, "map-server")).toBe(false);
  });

  it("carries the rollout to the zones for the gateway to pick players; 0 % turns P2P off", () => {
    const at = (pct: number) =>
      compile({
        policies: [policy("p", { zoneSelector: {}, enabled: true, rolloutPercent: pct })],
        zones: [zone("z1"), zone("z2")],
        regions: [region],
      }).zones;
    expect(at(30).map((z) => [z.enabled, z.rolloutPercent])).toEqual([
      [true, 30],
      [true, 30],
    ]);
    expect(at(0).map((z) => [z.enabled, z.reason])).toEqual([
      [false, "the rollout of policy p is 0%"],
      [false, "the rollout of policy p is 0%"],
    ]);
  });

  it("picks rollout players by a stable hash: about the share asked, and widening only adds", () => {
    const players = Array.from({ length: 2000 }, (_, i) => String(100_000 + i));
    const at = (pct: number) => new Set(players.filter((p) => inRollout(p, pct)));
    const [p0, p30, p60, p100] = [at(0), at(30), at(60), at(100)];
    expect(p0.size).toBe(0);
    expect(p100.size).toBe(2000);
    expect(p30.size).toBeGreaterThan(450);
    expect(p30.size).toBeLessThan(750);
    for (const p of p30) expect(p60.has(p)).toBe(true);
  });

  it("matches selector expressions like Kubernetes", () => {
    const labels = { tier: "field", region: "eu" };
    expect(matchesSelector(undefined, labels)).toBe(false);
    expect(matchesSelector({}, labels)).toBe(true);
    expect(
      matchesSelector(
        { matchExpressions: [{ key: "tier", operator: "In", values: ["field", "dungeon"] }] },
        labels,
      ),
    ).toBe(true);
    expect(
      matchesSelector({ matchExpressions: [{ key: "tier", operator: "NotIn", values: ["field"] }] }, labels),
    ).toBe(false);
    expect(matchesSelector({ matchExpressions: [{ key: "x", operator: "DoesNotExist" }] }, labels)).toBe(
      true,
    );
    expect(matchesSelector({ matchExpressions: [{ key: "x", operator: "Exists" }] }, labels)).toBe(false);
  });
});

// ---- properties -----------------------------------------------------------------------------

const labelValue = fc.constantFrom("a", "b", "c");
const labelsArb = fc.record({ tier: labelValue, size: labelValue }, { requiredKeys: [] });
const selectorArb = fc.oneof(
  fc.constant(undefined),
  fc.constant({}),
  fc.record({ matchLabels: labelsArb }),
  fc.record({
    matchExpressions: fc.array(
      fc.record({
        key: fc.constantFrom("tier", "size"),
        operator: fc.constantFrom("In", "NotIn", "Exists", "DoesNotExist"),
        values: fc.array(labelValue, { maxLength: 2 }),
      }),
      { maxLength: 2 },
    ),
  }),
);
const serviceArb = fc.constantFrom(...KNOWN_SERVICES, "unknown-svc");
const policyArb = fc.record({
  name: fc.stringMatching(/^[a-z]{1,6}$/),
  spec: fc.record(
    {
      zoneSelector: selectorArb,
      services: fc.uniqueArray(serviceArb, { maxLength: 6 }),
      enabled: fc.boolean(),
      rolloutPercent: fc.integer({ min: 0, max: 100 }),
      includeTowns: fc.boolean(),
      forceFallback: fc.boolean(),
      priority: fc.integer({ min: -3, max: 3 }),
      recovery: fc.record({ mode: fc.constantFrom("Auto", "Manual") }),
    },
    { requiredKeys: [] },
  ),
});
const zoneArb = fc.record({
  name: fc.stringMatching(/^[a-z]{1,6}$/),
  labels: labelsArb,
  maps: fc.array(
    fc.record({ name: fc.stringMatching(/^[a-z]{1,4}$/), type: fc.constantFrom("Town", "Field", "Dungeon") }),
    {
      maxLength: 3,
    },
  ),
  forced: fc.boolean(),
});
const inputArb = fc
  .record({
    policies: fc.uniqueArray(policyArb, { selector: (p) => p.name, maxLength: 5 }),
    zones: fc.uniqueArray(zoneArb, { selector: (z) => z.name, maxLength: 8 }),
    forcedServices: fc.uniqueArray(serviceArb, { maxLength: 2 }),
  })
  .map(
    (r): CompileInput => ({
      policies: r.policies.map((p) => ({
        metadata: { name: p.name, namespace: NS },
        spec: p.spec as PolicyInput["spec"],
      })),
      zones: r.zones.map((z) => ({
        metadata: {
          name: z.name,
          namespace: NS,
          labels: z.labels,
          ...(z.forced ? { annotations: { [ANNOTATION_FORCE_FALLBACK]: "x" } } : {}),
        },
        spec: { regionRef: "eu1", maps: z.maps },
      })),
      regions: [
        {
          metadata: {
            name: "eu1",
            namespace: NS,
            annotations: { [ANNOTATION_FORCE_FALLBACK_SERVICES]: r.forcedServices.join(",") },
          },
        },
      ],
    }),
  );

function shuffle<T>(xs: readonly T[], seed: number): T[] {
  const out = [...xs];
  let s = seed >>> 0 || 1;
  for (let i = out.length - 1; i > 0; i--) {
    s = Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) >>> 0;
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

describe("compiler properties", () => {
  it("is deterministic: any input order gives byte-identical documents and outcomes", () => {
    fc.assert(
      fc.property(inputArb, fc.integer(), (input, seed) => {
        const a = compile(input);
        const b = compile({
          policies: shuffle(input.policies, seed),
          zones: shuffle(input.zones, seed + 1),
          regions: shuffle(input.regions, seed + 2),
        });
        expect(documents(b)).toEqual(documents(a));
        expect(b.policies).toEqual(a.policies);
      }),
    );
  });

  it("is idempotent: compiling again gives the same digest, so the publisher has nothing to write", () => {
    fc.assert(
      fc.property(inputArb, (input) => {
        const frozen = structuredClone(input);
        const first = digestOf(documents(compile(input)));
        expect(input).toEqual(frozen); // pure: the input is not touched
        expect(digestOf(documents(compile(input)))).toBe(first);
      }),
    );
  });

  it("follows the effective-P2P rule for every (service, zone), and unknown ones are disabled", () => {
    fc.assert(
      fc.property(inputArb, serviceArb, (input, service) => {
        const out = compile(input);
        for (const z of out.zones) {
          const s = z.services[service];
          const expected = s?.enabled === true && z.enabled && !s.fallback && !z.fallback;
          expect(effectiveP2P(z, service)).toBe(expected);
          if (service === "unknown-svc") expect(effectiveP2P(z, service)).toBe(false);
          // Fallback forced anywhere wins over enabled.
          if (z.fallback || s?.fallback) expect(effectiveP2P(z, service)).toBe(false);
          // A zone no policy governs is never P2P.
          if (z.policy === null) expect(effectiveP2P(z, service)).toBe(false);
          // Town maps are never P2P unless the governing policy includes towns.
          const gov = input.policies.find((p) => p.metadata.name === z.policy);
          if (!gov?.spec?.includeTowns) expect(z.maps.filter((m) => m.type === "Town" && m.p2p)).toEqual([]);
        }
        expect(effectiveP2P(undefined as ZoneFlags | undefined, service)).toBe(false);
      }),
    );
  });

  it("gives each zone to the highest-priority policy, ties broken by name", () => {
    fc.assert(
      fc.property(inputArb, (input) => {
        const out = compile(input);
        for (const z of out.zones) {
          const zin = input.zones.find((x) => x.metadata.name === z.zone)!;
          const matching = input.policies.filter((p) =>
            matchesSelector(p.spec?.zoneSelector, zin.metadata.labels ?? {}),
          );
          const best = [...matching].sort(
            (a, b) =>
              (b.spec?.priority ?? 0) - (a.spec?.priority ?? 0) ||
              (a.metadata.name! < b.metadata.name! ? -1 : 1),
          )[0];
          expect(z.policy).toBe(best?.metadata.name ?? null);
          const conflicts = out.policies.flatMap((p) => p.conflicts.filter((c) => c.zone === z.zone));
          expect(conflicts.length).toBe(matching.length > 1 ? matching.length : 0);
        }
      }),
    );
  });
});
