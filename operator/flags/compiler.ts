// The policy compiler: P2PPolicies, Zones and Regions in, one self-contained ZoneFlags document
// per zone out, plus what each policy matched, won and lost. Pure: same input (in any order),
// same output, byte for byte.
//
// The inputs are narrow structural types of just the fields read here, so the generated API
// types (operator/api) satisfy them and can grow without edits here.
import {
  canonicalJson,
  isKnownService,
  KNOWN_SERVICES,
  type MapFlags,
  type RecoveryMode,
  type ServiceFlags,
  type ZoneFlags,
} from "../../platform/flags/layout.ts";
import { type LabelSelector, matchesSelector } from "../../platform/kube/selector.ts";

// ---- inputs ---------------------------------------------------------------------------------

export interface ObjectMetaInput {
  name?: string;
  namespace?: string;
  labels?: Readonly<Record<string, string>>;
  annotations?: Readonly<Record<string, string>>;
  generation?: number;
  deletionTimestamp?: unknown;
}

interface Range3 {
  warn?: number;
  critical?: number;
  max?: number;
}

export interface PolicyInput {
  metadata: ObjectMetaInput;
  spec?: {
    zoneSelector?: LabelSelector;
    services?: readonly string[];
    enabled?: boolean;
    transports?: readonly string[];
    rolloutPercent?: number;
    includeTowns?: boolean;
    mesh?: { maxPeers?: number; maxLinks?: number; peerTTLSeconds?: number; refreshSeconds?: number };
    fallback?: {
      latencyMs?: Range3;
      lossPercent?: Range3;
      jitterMs?: Range3;
      coordinatorTimeoutMs?: number;
      minPeers?: number;
    };
    recovery?: { mode?: string; backoff?: { initialSeconds?: number; maxSeconds?: number } };
    forceFallback?: boolean;
    priority?: number;
  };
}

export interface ZoneInput {
  metadata: ObjectMetaInput;
  spec?: {
    regionRef?: string | { name?: string };
    maps?: readonly { name: string; type?: string; p2p?: string }[];
  };
}

export interface RegionInput {
  metadata: ObjectMetaInput;
}

export interface CompileInput {
  policies: readonly PolicyInput[];
  zones: readonly ZoneInput[];
  regions: readonly RegionInput[];
}

// ---- annotations the CLI and users set (documented in docs/flags.md) -------------------------

/** On a Zone: force the zone into fallback; the value is the reason. */
export const ANNOTATION_FORCE_FALLBACK = "hybridp2p.io/force-fallback";
/** On a Zone: any new value releases a Manual-recovery fallback on the zone's pods. */
export const ANNOTATION_FALLBACK_CLEAR = "hybridp2p.io/fallback-clear";
/** On a Region: comma-separated services forced into fallback in the whole region. */
export const ANNOTATION_FORCE_FALLBACK_SERVICES = "hybridp2p.io/force-fallback-services";
/** On a Region: comma-separated services with P2P switched off in the whole region. */
export const ANNOTATION_DISABLED_SERVICES = "hybridp2p.io/disabled-services";

export const TOWN_MAP_TYPE = "Town";

/** Figures from the original design; the same as the CRD's defaults (checked by a test). */
export const DEFAULTS = {
  transports: ["webrtc-datachannel", "websocket-relay"],
  mesh: { maxPeers: 40, maxLinks: 8, peerTTLSeconds: 30, refreshSeconds: 10 },
  latencyMs: { warn: 100, critical: 200, max: 300 },
  lossPercent: { warn: 1, critical: 2, max: 5 },
  jitterMs: { warn: 20, critical: 50 },
  coordinatorTimeoutMs: 1500,
  minPeers: 2,
  recovery: { mode: "Auto" as RecoveryMode, initialSeconds: 5, maxSeconds: 300 },
} as const;

// ---- outputs --------------------------------------------------------------------------------

export interface Conflict {
  /** The zone selected by more than one policy. */
  zone: string;
  /** The policy that governs it. */
  winner: string;
  /** Every policy that selects it, winner first. */
  policies: string[];
  /** Why the winner won. */
  reason: string;
}

export interface PolicyOutcome {
  namespace: string;
  name: string;
  generation?: number;
  /** Zones the selector matches (names, sorted). */
  matchedZones: string[];
  /** Zones this policy governs after overlap resolution. */
  governedZones: string[];
  /** Overlaps this policy takes part in, won or lost. */
  conflicts: Conflict[];
  /** Problems in the policy itself (unknown services, ...). */
  warnings: string[];
}

export interface CompiledFlags {
  /** Sorted by namespace, then zone name. */
  zones: ZoneFlags[];
  /** Sorted by namespace, then policy name. */
  policies: PolicyOutcome[];
}

// ---- helpers --------------------------------------------------------------------------------

function csv(v: string | undefined): string[] {
  if (!v) return [];
  return v
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

function regionName(z: ZoneInput): string | null {
  const r = z.spec?.regionRef;
  if (typeof r === "string") return r || null;
  return r?.name || null;
}

const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** Overlap order: higher priority first, then name. */
export function policyOrder(a: PolicyInput, b: PolicyInput): number {
  const pa = a.spec?.priority ?? 0;
  const pb = b.spec?.priority ?? 0;
  if (pa !== pb) return pb - pa;
  return cmp(a.metadata.name ?? "", b.metadata.name ?? "");
}

const live = (m: ObjectMetaInput) => !!m.name && !!m.namespace && !m.deletionTimestamp;

// ---- the compiler ---------------------------------------------------------------------------

export function compile(input: CompileInput): CompiledFlags {
  const policies = input.policies.filter((p) => live(p.metadata)).sort(policyOrder);
  const zones = input.zones
    .filter((z) => live(z.metadata))
    .sort(
      (a, b) => cmp(a.metadata.namespace!, b.metadata.namespace!) || cmp(a.metadata.name!, b.metadata.name!),
    );
  const regions = new Map<string, RegionInput>();
  for (const r of input.regions)
    if (live(r.metadata)) regions.set(`${r.metadata.namespace}/${r.metadata.name}`, r);

  const outcomes = new Map<string, PolicyOutcome>();
  const keyOf = (p: PolicyInput) => `${p.metadata.namespace}/${p.metadata.name}`;
  for (const p of policies) {
    const warnings: string[] = [];
    const unknown = (p.spec?.services ?? []).filter((s) => !isKnownService(s));
    if (unknown.length > 0)
      warnings.push(`unknown services ignored: ${[...new Set(unknown)].sort().join(", ")}`);
    if (p.spec?.zoneSelector === undefined) warnings.push("no zoneSelector: the policy selects no zone");
    outcomes.set(keyOf(p), {
      namespace: p.metadata.namespace!,
      name: p.metadata.name!,
      ...(p.metadata.generation !== undefined ? { generation: p.metadata.generation } : {}),
      matchedZones: [],
      governedZones: [],
      conflicts: [],
      warnings,
    });
  }

  const docs: ZoneFlags[] = [];
  for (const z of zones) {
    const ns = z.metadata.namespace!;
    const name = z.metadata.name!;
    const labels = z.metadata.labels ?? {};
    const matching = policies.filter(
      (p) => p.metadata.namespace === ns && matchesSelector(p.spec?.zoneSelector, labels),
    );
    for (const p of matching) outcomes.get(keyOf(p))!.matchedZones.push(name);
    const winner = matching[0];
    if (winner !== undefined) outcomes.get(keyOf(winner))!.governedZones.push(name);
    if (matching.length > 1) {
      const names = matching.map((p) => p.metadata.name!);
      const conflict: Conflict = {
        zone: name,
        winner: names[0]!,
        policies: names,
        reason: `zone ${name} is selected by ${names.join(", ")}; ${names[0]} governs it (priority ${winner!.spec?.priority ?? 0}, then name)`,
      };
      for (const p of matching) outcomes.get(keyOf(p))!.conflicts.push(conflict);
    }
    const region = regionName(z);
    const regionObj = region === null ? undefined : regions.get(`${ns}/${region}`);
    docs.push(zoneDoc(z, winner, regionObj, region));
  }

  return {
    zones: docs,
    policies: [...outcomes.values()].sort((a, b) => cmp(a.namespace, b.namespace) || cmp(a.name, b.name)),
  };
}

function zoneDoc(
  z: ZoneInput,
  p: PolicyInput | undefined,
  region: RegionInput | undefined,
  regionName: string | null,
): ZoneFlags {
  const ns = z.metadata.namespace!;
  const name = z.metadata.name!;
  const spec = p?.spec ?? {};
  const includeTowns = spec.includeTowns === true;
  const maps: MapFlags[] = (z.spec?.maps ?? [])
    .map((m) => {
      const type = m.type ?? "Field";
      // A map marked Deny stays server-only whatever the policy says; towns need includeTowns.
      return { name: m.name, type, p2p: m.p2p !== "Deny" && (type !== TOWN_MAP_TYPE || includeTowns) };
    })
    .sort((a, b) => cmp(a.name, b.name));

  // Zone enabled: a policy governs it, says enabled with a rollout above 0 %, and it has a map
  // that may go P2P (towns only with includeTowns). The rollout itself picks players, not
  // zones: the gateway lets the players in it play P2P (inRollout in layout.ts).
  let enabled = false;
  let reason: string | undefined;
  const rollout = Math.max(0, Math.min(100, spec.rolloutPercent ?? 100));
  if (p === undefined) reason = "no P2PPolicy selects this zone";
  else if (spec.enabled === false) reason = `P2P disabled by policy ${p.metadata.name}`;
  else if (rollout === 0) reason = `the rollout of policy ${p.metadata.name} is 0%`;
  else if (maps.length > 0 && !maps.some((m) => m.p2p))
    reason = "no map may go P2P (only town maps without includeTowns, or maps set to Deny)";
  else enabled = true;

  // Zone fallback: forced by the governing policy or by the zone's annotation.
  const forcedByZone = z.metadata.annotations?.[ANNOTATION_FORCE_FALLBACK];
  let fallback = false;
  if (p !== undefined && spec.forceFallback === true) {
    fallback = true;
    reason = `fallback forced by policy ${p.metadata.name}`;
  } else if (forcedByZone !== undefined) {
    fallback = true;
    reason = `fallback forced on the zone${forcedByZone ? `: ${forcedByZone}` : ""}`;
  }

  const policyServices = new Set((spec.services ?? KNOWN_SERVICES).filter(isKnownService));
  const forcedServices = new Set(csv(region?.metadata.annotations?.[ANNOTATION_FORCE_FALLBACK_SERVICES]));
  const disabledServices = new Set(csv(region?.metadata.annotations?.[ANNOTATION_DISABLED_SERVICES]));
  const services: Record<string, ServiceFlags> = {};
  for (const s of KNOWN_SERVICES) {
    const f: ServiceFlags = {
      enabled: p !== undefined && policyServices.has(s) && !disabledServices.has(s),
      fallback: false,
    };
    if (p !== undefined && !policyServices.has(s)) f.reason = `not covered by policy ${p.metadata.name}`;
    if (disabledServices.has(s)) f.reason = `disabled on region ${regionName}`;
    if (forcedServices.has(s)) {
      f.fallback = true;
      f.reason = `fallback forced on region ${regionName}`;
    }
    services[s] = f;
  }

  const fb = spec.fallback ?? {};
  const recMode: RecoveryMode = spec.recovery?.mode === "Manual" ? "Manual" : "Auto";
  const doc: ZoneFlags = {
    v: 1,
    namespace: ns,
    zone: name,
    region: regionName,
    policy: p?.metadata.name ?? null,
    enabled,
    fallback,
    services,
    maps,
    transports: [...(spec.transports ?? DEFAULTS.transports)],
    rolloutPercent: rollout,
    mesh: {
      maxPeers: spec.mesh?.maxPeers ?? DEFAULTS.mesh.maxPeers,
      maxLinks: spec.mesh?.maxLinks ?? DEFAULTS.mesh.maxLinks,
      peerTTLSeconds: spec.mesh?.peerTTLSeconds ?? DEFAULTS.mesh.peerTTLSeconds,
      refreshSeconds: spec.mesh?.refreshSeconds ?? DEFAULTS.mesh.refreshSeconds,
    },
    thresholds: {
      latencyMs: {
        warn: fb.latencyMs?.warn ?? DEFAULTS.latencyMs.warn,
        critical: fb.latencyMs?.critical ?? DEFAULTS.latencyMs.critical,
        max: fb.latencyMs?.max ?? DEFAULTS.latencyMs.max,
      },
      lossPercent: {
        warn: fb.lossPercent?.warn ?? DEFAULTS.lossPercent.warn,
        critical: fb.lossPercent?.critical ?? DEFAULTS.lossPercent.critical,
        max: fb.lossPercent?.max ?? DEFAULTS.lossPercent.max,
      },
      jitterMs: {
        warn: fb.jitterMs?.warn ?? DEFAULTS.jitterMs.warn,
        critical: fb.jitterMs?.critical ?? DEFAULTS.jitterMs.critical,
      },
      coordinatorTimeoutMs: fb.coordinatorTimeoutMs ?? DEFAULTS.coordinatorTimeoutMs,
      minPeers: fb.minPeers ?? DEFAULTS.minPeers,
    },
    recovery: {
      mode: recMode,
      initialSeconds: spec.recovery?.backoff?.initialSeconds ?? DEFAULTS.recovery.initialSeconds,
      maxSeconds: spec.recovery?.backoff?.maxSeconds ?? DEFAULTS.recovery.maxSeconds,
      clearToken: z.metadata.annotations?.[ANNOTATION_FALLBACK_CLEAR] ?? "",
    },
  };
  if (reason !== undefined) doc.reason = reason;
  return doc;
}

/** The documents of one compile, as (key relative to the epoch directory, canonical JSON), sorted by key. */
export function documents(c: CompiledFlags): [string, string][] {
  return c.zones
    .map((z): [string, string] => [`zones/${z.namespace}/${z.zone}`, canonicalJson(z)])
    .sort((a, b) => cmp(a[0], b[0]));
}
