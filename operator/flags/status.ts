// Back into status: fold the pods' reports, the last compile and the live epoch into the flag
// fields of Zone and P2PPolicy status, and the fallback entry/exit Events. Pure.
//
// Ownership: on Zone, this writes only mode, policy, appliedEpoch, replicas.applied,
// fallbackReason, fallbackSince and p2pPeers (the Zone reconciler owns conditions,
// replicas.desired and selector). On P2PPolicy it owns the whole status.
//
// A zone's mode and fallback come from its map servers' reports, and also from the region-wide
// pods (gateway, coordinator) that hold that zone in fallback on their own: when the gateway
// loses the coordinator or the coordinator judges the mesh quality bad, the zone's players are
// in server mode whatever the map servers run. p2pPeers comes from the coordinator replicas'
// reports (they share one roster, so any of them can tell; the largest count is the freshest).
import type { PodReport, ZoneFlags, ZonePeers, ZonePlayers } from "../../platform/flags/layout.ts";
import { effectiveP2P } from "../../platform/flags/layout.ts";
import type { DesiredCondition } from "../controllers/conditions.ts";
import type { CompiledFlags, Conflict } from "./compiler.ts";

export type ZoneMode = "P2P" | "Server" | "Fallback" | "Mixed";

export interface ZoneForFold {
  metadata: { name?: string; namespace?: string; generation?: number };
  spec?: { mapServer?: { replicas?: number } };
  status?: {
    mode?: string;
    policy?: string;
    appliedEpoch?: number;
    replicas?: { desired?: number; applied?: number };
    fallbackReason?: string;
    fallbackSince?: string;
    p2pPeers?: Partial<ZonePeers>;
    p2pPlayers?: Partial<ZonePlayers & { rolloutPercent: number }>;
  };
}

export interface PolicyForFold {
  metadata: { name?: string; namespace?: string; generation?: number };
  status?: { observedGeneration?: number; epoch?: number; epochs?: { region: string; epoch: number }[] };
}

/** The Zone status fields the flag plane owns. null removes a field (merge patch). */
export interface ZoneFlagStatus {
  mode: ZoneMode;
  policy: string | null;
  appliedEpoch: number | null;
  replicas: { applied: number };
  fallbackReason: string | null;
  fallbackSince: string | null;
  p2pPeers: ZonePeers | null;
  /** The canary: P2P-capable players where P2P is on, and those playing P2P (gateway reports). */
  p2pPlayers: (ZonePlayers & { rolloutPercent: number }) | null;
}

export interface PolicyFlagStatus {
  observedGeneration: number;
  matchedZones: number;
  appliedZones: number;
  epoch: number;
  epochs: { region: string; epoch: number }[];
  conflicts: { zone: string; policies: string[]; winner: string; reason: string }[];
  conditions: DesiredCondition[];
}

export interface FlagEvent {
  kind: "Zone";
  namespace: string;
  name: string;
  type: "Normal" | "Warning";
  reason: "FallbackEntered" | "FallbackExited";
  message: string;
}

export interface FoldInput {
  compiled: CompiledFlags;
  /** The live epoch (flags/current). */
  epoch: number;
  reports: readonly PodReport[];
  zones: readonly ZoneForFold[];
  policies: readonly PolicyForFold[];
  /** RFC 3339, second precision. */
  now: string;
}

export interface FoldOutput {
  /** By `namespace/name`. */
  zones: Map<string, ZoneFlagStatus>;
  policies: Map<string, PolicyFlagStatus>;
  events: FlagEvent[];
}

const MAP_SERVER = "map-server";
const COORDINATOR = "coordinator";

/** Region-wide pods' fallback holds on one zone, as `reason (service: pods)` phrases. */
function heldReasons(
  regionReports: readonly PodReport[],
  zone: string,
): { reasons: string[]; since: string[] } {
  const byReason = new Map<string, string[]>();
  const since: string[] = [];
  for (const r of regionReports) {
    const f = r.zones?.[zone]?.fallback;
    if (f === undefined) continue;
    const k = `${f.reason}\u0000${r.service}`;
    byReason.set(k, [...(byReason.get(k) ?? []), r.pod]);
    since.push(f.since);
  }
  const reasons = [...byReason].map(([k, pods]) => {
    const [reason, service] = k.split("\u0000");
    return `${reason} (${service}: ${pods.join(", ")})`;
  });
  return { reasons, since };
}

/** Gateway replicas hold disjoint sessions: their counts add up. */
function playersOf(
  regionReports: readonly PodReport[],
  zone: string,
  doc: ZoneFlags | undefined,
): FoldedPlayers | null {
  let eligible = 0;
  let playing = 0;
  let heard = false;
  for (const r of regionReports) {
    const p: ZonePlayers | undefined = r.service === "gateway" ? r.zones?.[zone]?.players : undefined;
    if (p === undefined) continue;
    heard = true;
    eligible += p.eligible;
    playing += p.playing;
  }
  return heard ? { eligible, playing, rolloutPercent: doc?.rolloutPercent ?? 0 } : null;
}

type FoldedPlayers = ZonePlayers & { rolloutPercent: number };

function peersOf(regionReports: readonly PodReport[], zone: string): ZonePeers | null {
  let best: ZonePeers | null = null;
  for (const r of regionReports) {
    const p = r.service === COORDINATOR ? r.zones?.[zone]?.peers : undefined;
    if (p !== undefined && (best === null || p.connected > best.connected)) best = p;
  }
  return best === null ? null : { connected: best.connected, meshes: best.meshes, relayed: best.relayed };
}

function modeOf(modes: readonly string[], doc: ZoneFlags | undefined): ZoneMode {
  const partial = doc?.maps.some((m) => !m.p2p) === true;
  if (modes.length === 0) {
    if (doc === undefined) return "Server";
    if (doc.fallback || doc.services[MAP_SERVER]?.fallback) return "Fallback";
    if (effectiveP2P(doc, MAP_SERVER)) return partial ? "Mixed" : "P2P";
    return "Server";
  }
  const set = new Set(modes);
  if (set.size > 1) return "Mixed";
  if (set.has("fallback")) return "Fallback";
  if (set.has("p2p")) return partial ? "Mixed" : "P2P";
  return "Server";
}

/** Whether a zone counts as applied: the lowest epoch its replicas report, all desired reporting. */
export interface ZoneApplied {
  epoch: number;
  complete: boolean;
}

export interface ZoneFoldInput {
  zone: ZoneForFold;
  /** The zone's compiled document (undefined: not published, e.g. its Region is unknown). */
  doc: ZoneFlags | undefined;
  /** Reports of this zone's pods (only map servers count). */
  reports: readonly PodReport[];
  /** Reports of the region-wide pods of the zone's namespace. */
  regionReports: readonly PodReport[];
  /** The live epoch of the zone's flag store. */
  epoch: number;
  /** RFC 3339, second precision. */
  now: string;
}

export interface ZoneFold {
  status: ZoneFlagStatus;
  applied: ZoneApplied;
  event?: FlagEvent;
}

const byPod = (a: PodReport, b: PodReport) => (a.pod < b.pod ? -1 : a.pod > b.pod ? 1 : 0);

/** One zone's flag status and fallback Event from its pods' reports. */
export function foldZone(input: ZoneFoldInput): ZoneFold {
  const z = input.zone;
  const ns = z.metadata.namespace!;
  const name = z.metadata.name!;
  const doc = input.doc;
  const reports = input.reports.filter((r) => r.service === MAP_SERVER).sort(byPod);
  const regionReports = input.regionReports.filter((r) => r.zones !== undefined).sort(byPod);
  const desired = z.spec?.mapServer?.replicas ?? 1;
  const held = heldReasons(regionReports, name);
  const served = modeOf(
    reports.map((r) => r.mode),
    doc,
  );
  // A hold matters only where P2P runs: a server-only zone has nothing to fall back from.
  const mode = held.reasons.length > 0 && served !== "Server" ? "Fallback" : served;
  const inFallback = reports.filter((r) => r.mode === "fallback");
  let fallbackReason: string | null = null;
  let fallbackSince: string | null = null;
  if (inFallback.length > 0) {
    const first = inFallback[0]!;
    fallbackReason =
      inFallback.length === reports.length
        ? first.reason
        : `${first.reason} (${inFallback.length} of ${reports.length} pods: ${inFallback.map((r) => r.pod).join(", ")})`;
    fallbackSince = inFallback.map((r) => r.since).sort()[0] ?? input.now;
  } else if (reports.length === 0 && served === "Fallback") {
    fallbackReason = doc?.reason ?? doc?.services[MAP_SERVER]?.reason ?? "fallback forced";
    fallbackSince = z.status?.fallbackSince ?? input.now;
  }
  if (mode === "Fallback" && held.reasons.length > 0) {
    fallbackReason = [...(fallbackReason === null ? [] : [fallbackReason]), ...held.reasons].join("; ");
    fallbackSince = [...(fallbackSince === null ? [] : [fallbackSince]), ...held.since].sort()[0]!;
  }
  if (fallbackReason !== null) fallbackReason = fallbackReason.slice(0, 1024);
  const current = reports.filter((r) => r.epoch >= input.epoch && r.rejectedEpoch === undefined).length;
  let lowest: number | null = null;
  for (const r of reports) lowest = lowest === null ? r.epoch : Math.min(lowest, r.epoch);
  const status: ZoneFlagStatus = {
    mode,
    policy: doc?.policy ?? null,
    appliedEpoch: lowest,
    replicas: { applied: current },
    fallbackReason,
    fallbackSince,
    p2pPeers: peersOf(regionReports, name),
    p2pPlayers: playersOf(regionReports, name, doc),
  };
  const applied = { epoch: lowest ?? 0, complete: desired === 0 || reports.length >= desired };

  const was = z.status?.fallbackReason !== undefined && z.status.fallbackReason !== null;
  let event: FlagEvent | undefined;
  if (!was && fallbackReason !== null) {
    event = {
      kind: "Zone",
      namespace: ns,
      name,
      type: "Warning",
      reason: "FallbackEntered",
      message: fallbackReason,
    };
  } else if (was && fallbackReason === null) {
    event = {
      kind: "Zone",
      namespace: ns,
      name,
      type: "Normal",
      reason: "FallbackExited",
      message: `left fallback (was: ${z.status!.fallbackReason}); mode ${mode}`,
    };
  }
  return { status, applied, ...(event === undefined ? {} : { event }) };
}

export interface PolicyFoldInput {
  compiled: CompiledFlags;
  policies: readonly PolicyForFold[];
  /** How a governed zone stands (undefined: not folded yet). */
  applied(namespace: string, zone: string): ZoneApplied | undefined;
  /** The Region a zone belongs to. */
  regionOf(namespace: string, zone: string): string;
  /**
   * The epoch of the first publish to `region`'s flag store that carried `generation` of policy
   * `namespace/name`; undefined while that generation has not been published there.
   */
  carriedBy(namespace: string, policy: string, generation: number, region: string): number | undefined;
}

/** Every P2PPolicy's status: matched and applied zones, the epochs that carried its generation. */
export function foldPolicies(input: PolicyFoldInput): Map<string, PolicyFlagStatus> {
  const policies = new Map<string, PolicyFlagStatus>();
  const outcomes = new Map(input.compiled.policies.map((p) => [`${p.namespace}/${p.name}`, p]));
  for (const p of input.policies) {
    const ns = p.metadata.namespace!;
    const key = `${ns}/${p.metadata.name}`;
    const o = outcomes.get(key);
    const generation = p.metadata.generation ?? 0;
    const governed = o?.governedZones ?? [];
    // Per Region (each its own flag store): the epoch that carried this generation, kept while
    // the generation is the same.
    const same = p.status?.observedGeneration === generation;
    const kept = new Map(same ? (p.status?.epochs ?? []).map((e) => [e.region, e.epoch]) : []);
    // A status written before epochs were per Region names one epoch for all.
    const keptForAll = same && p.status?.epochs === undefined ? p.status?.epoch : undefined;
    // The store's live epoch is no answer: status may fold between the policy's write and the
    // publish that carries it, and would then name (and keep) an epoch from before the change.
    // 0: not yet published in that Region (its zones are pending). A kept epoch was written only
    // when it carried this generation; it stands until the store shows a reset (a lower epoch).
    const epochs = new Map<string, number>();
    for (const zone of governed) {
      const region = input.regionOf(ns, zone);
      if (epochs.has(region)) continue;
      const carried = input.carriedBy(ns, p.metadata.name!, generation, region);
      const k = kept.get(region) ?? keptForAll;
      const known = k !== undefined && k > 0;
      epochs.set(region, carried === undefined ? (known ? k : 0) : known && k <= carried ? k : carried);
    }
    const pending = governed.filter((zone) => {
      const a = input.applied(ns, zone);
      const need = epochs.get(input.regionOf(ns, zone)) ?? 0;
      return a === undefined || !a.complete || need === 0 || a.epoch < need;
    });
    const applied = governed.length - pending.length;
    const epoch = Math.max(0, ...epochs.values(), same && epochs.size === 0 ? (p.status?.epoch ?? 0) : 0);
    const epochText = epochs.size > 1 ? [...epochs].map(([r, e]) => `${e} (${r})`).join(", ") : String(epoch);
    const conditions: DesiredCondition[] =
      pending.length === 0
        ? [
            {
              type: "Ready",
              status: "True",
              reason: "Applied",
              message:
                governed.length === 0
                  ? "the policy governs no zone"
                  : `every pod of ${governed.length} zones runs epoch ${epochText} or later`,
            },
            { type: "Reconciling", status: "False", reason: "Applied", message: "" },
            { type: "Stalled", status: "False", reason: "Applied", message: "" },
          ]
        : [
            {
              type: "Ready",
              status: "False",
              reason: "Applying",
              message: `${pending.length} of ${governed.length} zones not yet at epoch ${epochText}`,
            },
            {
              type: "Reconciling",
              status: "True",
              reason: "Applying",
              message: `waiting for ${pending.slice(0, 10).join(", ")}${pending.length > 10 ? ", ..." : ""}`,
            },
            { type: "Stalled", status: "False", reason: "Applying", message: "" },
          ];
    conditions.push(conflictCondition(p.metadata.name!, o?.conflicts ?? []));
    policies.set(key, {
      observedGeneration: generation,
      matchedZones: o?.matchedZones.length ?? 0,
      appliedZones: applied,
      epoch,
      epochs: [...epochs]
        .sort()
        .map(([region, e]) => ({ region, epoch: e }))
        .slice(0, 256),
      conflicts: (o?.conflicts ?? []).slice(0, 256).map((c) => ({
        zone: c.zone,
        policies: c.policies.slice(0, 64),
        winner: c.winner,
        reason: c.reason.slice(0, 1024),
      })),
      conditions,
    });
  }
  return policies;
}

const MAX_MESSAGE = 1024;

/** A list of names for a message: the first few, then how many more. */
function names(list: readonly string[], max = 10): string {
  return list.length <= max
    ? list.join(", ")
    : `${list.slice(0, max).join(", ")} and ${list.length - max} more`;
}

/**
 * The `Conflicted` condition of one policy from its overlaps: True while another policy selects
 * one of its zones (reason Overridden when it loses at least one zone, Overlapping when it governs
 * them all), naming the other policies and the zones; False once none does. The compiled list
 * in `status.conflicts` keeps every detail; the condition is what tools and alerts read.
 *
 * Only the policies get it: the Zone is governed all the same (by the winner, which its
 * status.policy names), and its conditions belong to the Zone reconciler.
 */
export function conflictCondition(policy: string, conflicts: readonly Conflict[]): DesiredCondition {
  if (conflicts.length === 0)
    return { type: "Conflicted", status: "False", reason: "NoConflict", message: "" };
  // Zones lost, by the policy that governs them; zones won, by the policies they were won over.
  const lost = new Map<string, string[]>();
  const won = new Map<string, string[]>();
  for (const c of conflicts) {
    if (c.winner === policy) {
      const others = c.policies.filter((q) => q !== policy).join(", ");
      won.set(others, [...(won.get(others) ?? []), c.zone]);
    } else lost.set(c.winner, [...(lost.get(c.winner) ?? []), c.zone]);
  }
  const zonesOf = (zs: string[]) => `${zs.length === 1 ? "zone" : "zones"} ${names(zs.sort())}`;
  const parts = [
    ...[...lost]
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([winner, zs]) => `${zonesOf(zs)} governed by ${winner} instead (higher priority, then name)`),
    ...[...won]
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([others, zs]) => `${zonesOf(zs)} also selected by ${others}, governed by this policy`),
  ];
  // As many overlaps as fit the API's bound on a message; the rest only counted.
  let message = "overlaps other policies: ";
  for (const [n, part] of parts.entries()) {
    const rest = parts.length - n;
    const tail = rest > 1 ? `; and ${rest} more overlaps (status.conflicts)` : "";
    if (message.length + part.length + tail.length + 2 > MAX_MESSAGE) {
      message += `${n > 0 ? "; and " : ""}${rest} more overlaps (status.conflicts)`;
      break;
    }
    message += `${n > 0 ? "; " : ""}${part}`;
  }
  return {
    type: "Conflicted",
    status: "True",
    reason: lost.size > 0 ? "Overridden" : "Overlapping",
    message,
  };
}

/** Everything at once, every zone in one flag store at `epoch` (tests; the flag plane folds per zone). */
export function foldStatus(input: FoldInput): FoldOutput {
  const docs = new Map(input.compiled.zones.map((z) => [`${z.namespace}/${z.zone}`, z]));
  const byZone = new Map<string, PodReport[]>();
  const regionWide = new Map<string, PodReport[]>();
  for (const r of input.reports) {
    if (r.zone === undefined) {
      regionWide.set(r.namespace, [...(regionWide.get(r.namespace) ?? []), r]);
      continue;
    }
    const k = `${r.namespace}/${r.zone}`;
    byZone.set(k, [...(byZone.get(k) ?? []), r]);
  }
  const zones = new Map<string, ZoneFlagStatus>();
  const events: FlagEvent[] = [];
  const appliedAt = new Map<string, ZoneApplied>();
  const regionOfZone = new Map<string, string>();
  for (const z of input.zones) {
    const key = `${z.metadata.namespace}/${z.metadata.name}`;
    const f = foldZone({
      zone: z,
      doc: docs.get(key),
      reports: byZone.get(key) ?? [],
      regionReports: regionWide.get(z.metadata.namespace!) ?? [],
      epoch: input.epoch,
      now: input.now,
    });
    zones.set(key, f.status);
    appliedAt.set(key, f.applied);
    if (f.event) events.push(f.event);
    regionOfZone.set(key, docs.get(key)?.region ?? "");
  }
  const policies = foldPolicies({
    compiled: input.compiled,
    policies: input.policies,
    applied: (ns, zone) => appliedAt.get(`${ns}/${zone}`),
    regionOf: (ns, zone) => regionOfZone.get(`${ns}/${zone}`) ?? "",
    carriedBy: () => input.epoch, // everything compiled is live at `epoch`
  });
  return { zones, policies, events };
}
