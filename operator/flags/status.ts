// Back into status: fold the pods' reports, the last compile and the live epoch into the flag
// fields of Zone and P2PPolicy status, and the fallback entry/exit Events. Pure.
//
// Ownership: on Zone, this writes only mode, policy, appliedEpoch, replicas.applied,
// fallbackReason and fallbackSince (the Zone reconciler owns conditions, replicas.desired and
// selector). On P2PPolicy it owns the whole status.
import type { PodReport, ZoneFlags } from "../../workloads/runtime/flags/layout.ts";
import { effectiveP2P } from "../../workloads/runtime/flags/layout.ts";
import type { CompiledFlags } from "./compiler.ts";

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
  };
}

export interface PolicyForFold {
  metadata: { name?: string; namespace?: string; generation?: number };
  status?: { observedGeneration?: number; epoch?: number };
}

/** The Zone status fields the flag plane owns. null removes a field (merge patch). */
export interface ZoneFlagStatus {
  mode: ZoneMode;
  policy: string | null;
  appliedEpoch: number | null;
  replicas: { applied: number };
  fallbackReason: string | null;
  fallbackSince: string | null;
}

export interface PolicyCondition {
  type: "Ready" | "Reconciling" | "Stalled";
  status: "True" | "False";
  reason: string;
  message: string;
}

export interface PolicyFlagStatus {
  observedGeneration: number;
  matchedZones: number;
  appliedZones: number;
  epoch: number;
  conflicts: { zone: string; policies: string[]; winner: string; reason: string }[];
  conditions: PolicyCondition[];
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

export function foldStatus(input: FoldInput): FoldOutput {
  const docs = new Map(input.compiled.zones.map((z) => [`${z.namespace}/${z.zone}`, z]));
  const byZone = new Map<string, PodReport[]>();
  for (const r of input.reports) {
    if (r.zone === undefined || r.service !== MAP_SERVER) continue;
    const k = `${r.namespace}/${r.zone}`;
    const list = byZone.get(k) ?? [];
    list.push(r);
    byZone.set(k, list);
  }
  const zones = new Map<string, ZoneFlagStatus>();
  const events: FlagEvent[] = [];
  const appliedAt = new Map<string, { epoch: number; complete: boolean }>();

  for (const z of input.zones) {
    const ns = z.metadata.namespace!;
    const name = z.metadata.name!;
    const key = `${ns}/${name}`;
    const doc = docs.get(key);
    const reports = (byZone.get(key) ?? []).sort((a, b) => (a.pod < b.pod ? -1 : a.pod > b.pod ? 1 : 0));
    const desired = z.spec?.mapServer?.replicas ?? 1;
    const mode = modeOf(
      reports.map((r) => r.mode),
      doc,
    );
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
    } else if (reports.length === 0 && mode === "Fallback") {
      fallbackReason = doc?.reason ?? doc?.services[MAP_SERVER]?.reason ?? "fallback forced";
      fallbackSince = z.status?.fallbackSince ?? input.now;
    }
    if (fallbackReason !== null) fallbackReason = fallbackReason.slice(0, 1024);
    const current = reports.filter((r) => r.epoch >= input.epoch && r.rejectedEpoch === undefined).length;
    const appliedEpoch = reports.length > 0 ? Math.min(...reports.map((r) => r.epoch)) : null;
    appliedAt.set(key, { epoch: appliedEpoch ?? 0, complete: desired === 0 || reports.length >= desired });
    zones.set(key, {
      mode,
      policy: doc?.policy ?? null,
      appliedEpoch,
      replicas: { applied: current },
      fallbackReason,
      fallbackSince,
    });

    const was = z.status?.fallbackReason !== undefined && z.status.fallbackReason !== null;
    if (!was && fallbackReason !== null) {
      events.push({
        kind: "Zone",
        namespace: ns,
        name,
        type: "Warning",
        reason: "FallbackEntered",
        message: fallbackReason,
      });
    } else if (was && fallbackReason === null) {
      events.push({
        kind: "Zone",
        namespace: ns,
        name,
        type: "Normal",
        reason: "FallbackExited",
        message: `left fallback (was: ${z.status!.fallbackReason}); mode ${mode}`,
      });
    }
  }

  const policies = new Map<string, PolicyFlagStatus>();
  const outcomes = new Map(input.compiled.policies.map((p) => [`${p.namespace}/${p.name}`, p]));
  for (const p of input.policies) {
    const key = `${p.metadata.namespace}/${p.metadata.name}`;
    const o = outcomes.get(key);
    const generation = p.metadata.generation ?? 0;
    // The epoch that carried this generation: kept while the generation is the same.
    const epoch =
      p.status?.observedGeneration === generation &&
      p.status.epoch !== undefined &&
      p.status.epoch <= input.epoch
        ? p.status.epoch
        : input.epoch;
    const governed = o?.governedZones ?? [];
    const pending = governed.filter((zone) => {
      const a = appliedAt.get(`${p.metadata.namespace}/${zone}`);
      return a === undefined || !a.complete || a.epoch < epoch;
    });
    const applied = governed.length - pending.length;
    const conditions: PolicyCondition[] =
      pending.length === 0
        ? [
            {
              type: "Ready",
              status: "True",
              reason: "Applied",
              message:
                governed.length === 0
                  ? "the policy governs no zone"
                  : `every pod of ${governed.length} zones runs epoch ${epoch} or later`,
            },
            { type: "Reconciling", status: "False", reason: "Applied", message: "" },
            { type: "Stalled", status: "False", reason: "Applied", message: "" },
          ]
        : [
            {
              type: "Ready",
              status: "False",
              reason: "Applying",
              message: `${pending.length} of ${governed.length} zones not yet at epoch ${epoch}`,
            },
            {
              type: "Reconciling",
              status: "True",
              reason: "Applying",
              message: `waiting for ${pending.slice(0, 10).join(", ")}${pending.length > 10 ? ", ..." : ""}`,
            },
            { type: "Stalled", status: "False", reason: "Applying", message: "" },
          ];
    policies.set(key, {
      observedGeneration: generation,
      matchedZones: o?.matchedZones.length ?? 0,
      appliedZones: applied,
      epoch,
      conflicts: (o?.conflicts ?? []).slice(0, 256).map((c) => ({
        zone: c.zone,
        policies: c.policies.slice(0, 64),
        winner: c.winner,
        reason: c.reason.slice(0, 1024),
      })),
      conditions,
    });
  }
  return { zones, policies, events };
}
