// The orchestrator's decisions, pure: from a WorldEvent, the Regions and Zones, what each
// targeted Region's bus holds and reports, and the time, it computes the record each Region must
// hold (platform/bus/world.ts) and the WorldEvent's status. Side effects (reading buses, writing
// records and status) live in orchestrator.ts; everything here is unit-tested.
//
// Occurrences. A clock event has one occurrence (spec.schedule.start, or the object's creation)
// or one per cron match; an occurrence is identified by the WorldEvent's uid and its start, so a
// restarted orchestrator computes the same ids. A population-triggered event starts in each
// Region on its own when the Region's players reach the threshold; the start is the moment the
// orchestrator saw it, written to the Region's bus, and read back from there after a restart (the
// bus, not the status, is the source of truth: nothing fires twice).
//
// Catch-up. A Region whose bus cannot be reached is Failed (reason BusUnreachable) while its
// occurrence runs; it gets the record as soon as its bus is back, unless the occurrence has
// ended by then (Ended, reason Missed).

import {
  occurrenceId,
  type WorldAction,
  type WorldEventRecord,
  type WorldLiveReport,
} from "../../platform/bus/world.ts";
import type { KubeObject } from "../../platform/kube/meta.ts";
import { type LabelSelector, matchesSelector } from "../../platform/kube/selector.ts";
import { nextCron, parseCron, previousCron } from "./schedule.ts";

/** Records of an upcoming occurrence are delivered this long before it starts. */
export const SCHEDULE_LEAD_MS = 60_000;

// The fields of the API objects the orchestrator reads (operator/api has the full types; the
// workloads never import the operator, so the shapes are restated here).

export interface WorldEventSpec {
  type: "Boss" | "Invasion" | "Rates" | "Announcement";
  boss?: { mob: string; count?: number; x?: number; y?: number };
  invasion?: { mob: string; count?: number; endWhenCleared?: boolean };
  rates?: { exp?: number; drop?: number };
  announcement?: { message: string; onEnd?: string };
  targets: {
    regions?: Array<{ namespace: string; name: string }>;
    regionSelector?: LabelSelector;
    zoneSelector?: LabelSelector;
    maps?: string[];
  };
  schedule?: { start?: string; cron?: string; durationSeconds?: number };
  triggers?: { population?: { minPlayers: number; scope?: "Zone" | "Region" } };
  cancelled?: boolean;
}

export type RegionEventState = "Scheduled" | "Waiting" | "Active" | "Ended" | "Failed";

export interface RegionEventStatus {
  namespace: string;
  name: string;
  state: RegionEventState;
  reason?: string;
  message?: string;
  occurrence?: string;
  startTime?: string;
  endTime?: string;
  maps?: number;
  players?: number;
  spawned?: number;
  alive?: number;
  lastTransitionTime?: string;
}

export interface WorldEventStatus {
  observedGeneration?: number;
  conditions?: Array<{
    type: string;
    status: string;
    reason: string;
    message: string;
    lastTransitionTime: string;
    observedGeneration?: number;
  }>;
  phase?: RegionEventState;
  occurrences?: number;
  nextStartTime?: string;
  targetRegions?: number;
  activeRegions?: number;
  regions?: RegionEventStatus[];
}

export interface WorldEventObject extends KubeObject {
  spec: WorldEventSpec;
  status?: WorldEventStatus;
}

export interface RegionObject extends KubeObject {
  spec?: {
    dataStores?: { nats?: { mode?: string; external?: { endpoints?: string[] } } };
  };
}

export interface ZoneObject extends KubeObject {
  spec: { regionRef: { name: string }; maps: Array<{ name: string }> };
}

/** What the orchestrator knows of one Region's bus. */
export interface RegionView {
  reachable: boolean;
  error?: string;
  /** The Region's record of this WorldEvent, if any. */
  current?: WorldEventRecord;
  /** The Region's fresh live reports. */
  live: WorldLiveReport[];
}

export interface DesiredCondition {
  type: "Ready" | "Reconciling" | "Stalled" | "Degraded";
  status: "True" | "False";
  reason: string;
  message: string;
}

export interface Plan {
  /** Records to write, by Region key (namespace/name). */
  writes: Map<string, WorldEventRecord>;
  status: Omit<WorldEventStatus, "conditions" | "observedGeneration">;
  conditions: DesiredCondition[];
}

export const regionKey = (namespace: string, name: string) => `${namespace}/${name}`;

export interface RegionTarget {
  namespace: string;
  name: string;
  /** The Region object (absent: named in the spec but not found). */
  region?: RegionObject;
  targets: Array<{ zone: string; maps: string[] }>;
}

/** The targeted Regions, sorted, with their zones and maps. */
export function resolveTargets(
  spec: WorldEventSpec,
  regions: readonly RegionObject[],
  zones: readonly ZoneObject[],
): RegionTarget[] {
  const out = new Map<string, RegionTarget>();
  const add = (namespace: string, name: string, region?: RegionObject) => {
    const key = regionKey(namespace, name);
    if (!out.has(key) || region) out.set(key, { namespace, name, region, targets: [] });
  };
  const byKey = new Map(regions.map((r) => [regionKey(r.metadata.namespace ?? "", r.metadata.name), r]));
  for (const ref of spec.targets.regions ?? [])
    add(ref.namespace, ref.name, byKey.get(regionKey(ref.namespace, ref.name)));
  if (spec.targets.regionSelector) {
    for (const r of regions)
      if (matchesSelector(spec.targets.regionSelector, r.metadata.labels))
        add(r.metadata.namespace ?? "", r.metadata.name, r);
  }
  const wantMaps = spec.targets.maps ? new Set(spec.targets.maps) : undefined;
  for (const t of out.values()) {
    if (!t.region) continue;
    for (const z of zones) {
      if (z.metadata.namespace !== t.namespace || z.spec?.regionRef?.name !== t.name) continue;
      if (spec.targets.zoneSelector && !matchesSelector(spec.targets.zoneSelector, z.metadata.labels))
        continue;
      const maps = (z.spec.maps ?? []).map((m) => m.name).filter((m) => !wantMaps || wantMaps.has(m));
      if (maps.length > 0) t.targets.push({ zone: z.metadata.name, maps: maps.sort() });
    }
    t.targets.sort((a, b) => a.zone.localeCompare(b.zone));
  }
  return [...out.values()].sort((a, b) =>
    regionKey(a.namespace, a.name).localeCompare(regionKey(b.namespace, b.name)),
  );
}

/** What an occurrence does, from the spec. */
export function actionOf(spec: WorldEventSpec): WorldAction {
  switch (spec.type) {
    case "Boss":
      return {
        type: "Boss",
        mob: spec.boss?.mob,
        count: spec.boss?.count ?? 1,
        ...(spec.boss?.x !== undefined && spec.boss?.y !== undefined
          ? { x: spec.boss.x, y: spec.boss.y }
          : {}),
      };
    case "Invasion":
      return {
        type: "Invasion",
        mob: spec.invasion?.mob,
        count: spec.invasion?.count ?? 20,
        endWhenCleared: spec.invasion?.endWhenCleared ?? true,
      };
    case "Rates":
      return { type: "Rates", exp: spec.rates?.exp ?? 1, drop: spec.rates?.drop ?? 1 };
    default:
      return { type: "Announcement" };
  }
}

const iso = (ms: number | undefined) => (ms === undefined ? undefined : new Date(ms).toISOString());

function sameRecord(a: WorldEventRecord | undefined, b: WorldEventRecord): boolean {
  return a !== undefined && JSON.stringify(normal(a)) === JSON.stringify(normal(b));
}
function normal(r: WorldEventRecord): unknown {
  return { ...r, action: { ...r.action }, reason: r.reason ?? null, announcement: r.announcement ?? null };
}

interface Occurrence {
  start: number;
  end: number;
}

/** Players on the targeted maps: the largest zone's (scope Zone) or the Region's total. */
function population(live: readonly WorldLiveReport[], t: RegionTarget, scope: "Zone" | "Region"): number {
  const perZone = new Map<string, number>();
  for (const r of live) {
    const tz = t.targets.find((z) => z.zone === r.zone);
    if (!tz?.maps.includes(r.map)) continue;
    perZone.set(r.zone, (perZone.get(r.zone) ?? 0) + r.players);
  }
  const counts = [...perZone.values()];
  if (scope === "Region") return counts.reduce((a, b) => a + b, 0);
  return counts.reduce((a, b) => Math.max(a, b), 0);
}

/** Decides one WorldEvent at `now`. */
export function planEvent(
  ev: WorldEventObject,
  regions: readonly RegionObject[],
  zones: readonly ZoneObject[],
  views: ReadonlyMap<string, RegionView>,
  now: number,
): Plan {
  const spec = ev.spec;
  const uid = ev.metadata.uid ?? "";
  const name = regionKey(ev.metadata.namespace ?? "", ev.metadata.name);
  const duration = (spec.schedule?.durationSeconds ?? 3600) * 1000;
  const created = Date.parse(ev.metadata.creationTimestamp ?? "") || now;
  const writes = new Map<string, WorldEventRecord>();
  const previous = new Map(
    (ev.status?.regions ?? []).map((r) => [regionKey(r.namespace, r.name), r] as const),
  );
  const stalled = (reason: string, message: string): Plan => ({
    writes,
    status: { phase: "Failed", targetRegions: 0, activeRegions: 0, regions: ev.status?.regions ?? [] },
    conditions: [
      { type: "Ready", status: "False", reason, message },
      { type: "Reconciling", status: "False", reason, message },
      { type: "Stalled", status: "True", reason, message },
      { type: "Degraded", status: "False", reason, message },
    ],
  });

  // ---- the clock
  let clock: Occurrence | undefined;
  let upcoming: number | undefined;
  const population_ = spec.triggers?.population;
  if (spec.schedule?.cron) {
    let cron: ReturnType<typeof parseCron>;
    try {
      cron = parseCron(spec.schedule.cron);
    } catch (err) {
      return stalled("InvalidSchedule", (err as Error).message);
    }
    // Matches since the event exists (minute-aligned creation included).
    const prev = previousCron(cron, now, Math.floor(created / 60_000) * 60_000);
    if (prev !== undefined && now < prev + duration) clock = { start: prev, end: prev + duration };
    upcoming = nextCron(cron, now);
    if (!clock && upcoming !== undefined && upcoming - now <= SCHEDULE_LEAD_MS)
      clock = { start: upcoming, end: upcoming + duration };
  } else if (!population_) {
    const start = spec.schedule?.start ? Date.parse(spec.schedule.start) : created;
    clock = { start, end: start + duration };
    if (now < start) upcoming = start;
  }
  const armedAt = spec.schedule?.start ? Date.parse(spec.schedule.start) : created;

  const targets = resolveTargets(spec, regions, zones);
  const base = {
    v: 1 as const,
    uid,
    name,
    action: actionOf(spec),
    ...(spec.announcement ? { announcement: { ...spec.announcement } } : {}),
  };
  const statuses: RegionEventStatus[] = [];
  // Occurrences that started, counted once over every Region.
  const started = new Set<string>();
  const known = new Set((ev.status?.regions ?? []).map((r) => r.occurrence));

  for (const t of targets) {
    const key = regionKey(t.namespace, t.name);
    const view = views.get(key) ?? { reachable: false, error: "not connected yet", live: [] };
    const cur = view.current?.uid === uid ? view.current : undefined;
    const prev = previous.get(key);
    const mapCount = t.targets.reduce((n, z) => n + z.maps.length, 0);
    const st: RegionEventStatus = { namespace: t.namespace, name: t.name, state: "Ended", maps: mapCount };
    const done = (s: RegionEventStatus) => {
      s.lastTransitionTime =
        prev && prev.state === s.state && prev.lastTransitionTime ? prev.lastTransitionTime : iso(now);
      statuses.push(s);
    };
    if (!t.region) {
      done({ ...st, state: "Failed", reason: "RegionNotFound", message: `Region ${key} does not exist` });
      continue;
    }
    if (mapCount === 0) {
      done({ ...st, state: "Failed", reason: "NoMaps", message: "no Zone of the Region has a targeted map" });
      continue;
    }

    // Which occurrence the Region should hold.
    let occ: Occurrence | undefined;
    if (population_) {
      if (cur) occ = { start: cur.startsAt, end: cur.endsAt };
      else if (!spec.cancelled && now >= armedAt) {
        const players = population(view.live, t, population_.scope ?? "Zone");
        if (view.reachable && players >= population_.minPlayers) occ = { start: now, end: now + duration };
        else {
          done({
            ...st,
            state: "Waiting",
            reason: view.reachable ? "BelowThreshold" : "BusUnreachable",
            message: view.reachable
              ? `${players} of ${population_.minPlayers} players`
              : `the Region's bus is unreachable: ${view.error ?? "unknown"}`,
            players,
          });
          continue;
        }
      }
    } else occ = clock;
    // An older occurrence the Region holds that has not ended is ended first (cron moved on).
    if (cur && cur.state !== "ended" && (!occ || occurrenceId(uid, occ.start) !== cur.id)) {
      const ending = now >= cur.endsAt || spec.cancelled || !occ;
      if (ending) {
        const reason = spec.cancelled ? "Cancelled" : "Completed";
        if (view.reachable) writes.set(key, { ...cur, state: "ended", reason });
      }
    }
    if (!occ) {
      const cancelled = spec.cancelled === true;
      done({
        ...st,
        state: cancelled ? "Ended" : upcoming !== undefined ? "Scheduled" : "Ended",
        reason: cancelled ? "Cancelled" : upcoming !== undefined ? "Scheduled" : "Completed",
        message: cancelled ? "cancelled" : upcoming !== undefined ? `next start ${iso(upcoming)}` : "",
        ...(cur ? { occurrence: cur.id, startTime: iso(cur.startsAt), endTime: iso(cur.endsAt) } : {}),
      });
      continue;
    }

    const id = occurrenceId(uid, occ.start);
    const mine = cur?.id === id ? cur : undefined;
    const reports = view.live.filter((r) => r.events[id]);
    const onMaps = reports.map((r) => r.events[id]!);
    const spawned = onMaps.reduce((n, e) => n + e.spawned, 0);
    const alive = onMaps.reduce((n, e) => n + e.alive, 0);
    const players = reports.reduce((n, r) => n + r.players, 0);
    let state: WorldEventRecord["state"] = now < occ.start ? "scheduled" : now < occ.end ? "active" : "ended";
    let reason: string | undefined = state === "ended" ? "Completed" : undefined;
    if (spec.cancelled && mine?.state !== "ended") {
      state = "ended";
      reason = "Cancelled";
    } else if (mine?.state === "ended") {
      // Ended early (cancelled, cleared): stays ended.
      state = "ended";
      reason = mine.reason ?? "Completed";
    } else if (
      state === "active" &&
      base.action.type === "Invasion" &&
      base.action.endWhenCleared &&
      onMaps.length >= mapCount &&
      onMaps.every((e) => e.state === "ended" && e.reason === "Cleared")
    ) {
      state = "ended";
      reason = "Cleared";
    }
    const record: WorldEventRecord = {
      ...base,
      id,
      state,
      ...(reason ? { reason } : {}),
      startsAt: occ.start,
      endsAt: occ.end,
      targets: t.targets,
    };
    const times = {
      occurrence: id,
      startTime: iso(occ.start),
      endTime: iso(occ.end),
      players,
      spawned,
      alive,
    };
    if (state === "ended" && !mine) {
      // It ended before the Region got it: nothing to deliver.
      const cancelled = reason === "Cancelled";
      done({
        ...st,
        ...times,
        state: "Ended",
        reason: cancelled ? "Cancelled" : view.reachable ? "Completed" : "Missed",
        message:
          cancelled || view.reachable ? "" : "the occurrence ended while the Region's bus was unreachable",
      });
      continue;
    }
    if (!sameRecord(mine, record)) {
      if (view.reachable) writes.set(key, record);
    }
    if (state !== "scheduled") started.add(id);
    if (!view.reachable && state !== "ended" && !sameRecord(mine, record)) {
      done({
        ...st,
        ...times,
        state: "Failed",
        reason: "BusUnreachable",
        message: `the Region's bus is unreachable (${view.error ?? "unknown"}); the event is delivered when it returns`,
      });
      continue;
    }
    const applied = new Set(reports.map((r) => `${r.zone}/${r.map}`)).size;
    done({
      ...st,
      ...times,
      state: state === "scheduled" ? "Scheduled" : state === "active" ? "Active" : "Ended",
      reason:
        state === "scheduled" ? "Scheduled" : state === "active" ? "Delivered" : (reason ?? "Completed"),
      message:
        state === "active"
          ? `applied on ${applied} of ${mapCount} maps`
          : state === "scheduled"
            ? "delivered"
            : "",
    });
  }

  // ---- the whole event
  const count = (s: RegionEventState) => statuses.filter((r) => r.state === s).length;
  const failed = count("Failed");
  const phase: RegionEventState =
    statuses.length === 0
      ? "Failed"
      : count("Active") > 0
        ? "Active"
        : count("Scheduled") > 0 || (upcoming !== undefined && !spec.cancelled)
          ? "Scheduled"
          : count("Waiting") > 0
            ? "Waiting"
            : failed === statuses.length
              ? "Failed"
              : "Ended";
  const conditions: DesiredCondition[] = [];
  if (statuses.length === 0) {
    const msg = "no Region matches the targets";
    conditions.push(
      { type: "Ready", status: "False", reason: "NoTargets", message: msg },
      { type: "Reconciling", status: "False", reason: "NoTargets", message: msg },
      { type: "Stalled", status: "True", reason: "NoTargets", message: msg },
      { type: "Degraded", status: "False", reason: "NoTargets", message: msg },
    );
  } else {
    const failing = statuses.filter((r) => r.state === "Failed");
    const msg = failing.map((r) => `${regionKey(r.namespace, r.name)}: ${r.reason}`).join("; ");
    conditions.push(
      failing.length === 0
        ? { type: "Ready", status: "True", reason: phase, message: `${phase} in ${statuses.length} Regions` }
        : { type: "Ready", status: "False", reason: "RegionsFailed", message: msg },
      writes.size > 0
        ? {
            type: "Reconciling",
            status: "True",
            reason: "Delivering",
            message: `${writes.size} Regions to update`,
          }
        : {
            type: "Reconciling",
            status: "False",
            reason: "Delivered",
            message: "every reachable Region is up to date",
          },
      { type: "Stalled", status: "False", reason: "Planned", message: "" },
      failing.length > 0
        ? { type: "Degraded", status: "True", reason: "RegionsFailed", message: msg }
        : { type: "Degraded", status: "False", reason: "AllRegions", message: "" },
    );
  }
  return {
    writes,
    status: {
      phase,
      occurrences: (ev.status?.occurrences ?? 0) + [...started].filter((id) => !known.has(id)).length,
      nextStartTime: spec.cancelled ? undefined : iso(upcoming),
      targetRegions: statuses.length,
      activeRegions: count("Active"),
      regions: statuses,
    },
    conditions,
  };
}
