// Following a P2PPolicy edit until every replica of every zone it governs runs the epoch that
// carries it. With the report channel (--nats-url, $HYBRIDP2P_NATS_URL: the Region's NATS)
// hybridctl counts the pods' acks as they arrive; without it, it reads the Zones' status, which
// the operator folds from the same acks, coalesced per zone. The second way is what works
// against a cluster whose stores are only reachable inside it (hack/local-region.sh's env.sh
// exports KUBECONFIG alone).
import type { CustomObjectsApi } from "@kubernetes/client-node";
import { P2P_POLICY, ZONE } from "../operator/api/constants.ts";
import { layout, type PodReport } from "../platform/flags/layout.ts";
import { ReportTable } from "../platform/flags/reports.ts";
import { sleep } from "../platform/time.ts";
import {
  CliError,
  compileNamespace,
  type Globals,
  getObj,
  type Io,
  type KObj,
  list,
  natsOf,
  natsUrl,
} from "./common.ts";

type Missing = { zone: string; detail: string };

/** Waits until the policy's generation is published and every replica of its zones reports that epoch. */
export async function waitApplied(
  g: Globals,
  api: CustomObjectsApi,
  ns: string,
  policy: string,
  generation: number,
  timeoutS: number,
  io: Io,
): Promise<void> {
  const deadline = Date.now() + timeoutS * 1000;
  // The acks start arriving as soon as the operator publishes: listen before asking.
  const url = natsUrl(g);
  const nc = url === undefined ? undefined : await natsOf(url);
  const acks = nc && new ReportTable(nc, layout(g.prefix), { namespace: ns });
  try {
    await acks?.start();
    // 1. The operator has published this generation: its status names the epoch (per Region)
    // that carries it, 0 for a Region whose store it has not reached yet.
    let epochs: { epoch: number; byRegion: Map<string, number> } | undefined;
    while (epochs === undefined) {
      const p = await getObj(api, P2P_POLICY.plural, ns, policy);
      const s = p.status;
      const observed = (s?.observedGeneration ?? -1) >= generation && s?.epoch !== undefined;
      const unpublished = observed ? (s.epochs ?? []).filter((e) => e.epoch === 0).map((e) => e.region) : [];
      if (observed && unpublished.length === 0)
        epochs = { epoch: s.epoch!, byRegion: new Map((s.epochs ?? []).map((e) => [e.region, e.epoch])) };
      else if (Date.now() > deadline) {
        throw new CliError(
          unpublished.length > 0
            ? `timed out: generation ${generation} of ${policy} is not published in Region ${unpublished.join(", ")} yet (is its flag store up? see the Region's Degraded condition)`
            : `timed out: the operator has not published generation ${generation} of ${policy} (is it running?)`,
        );
      } else await sleep(100);
    }
    const shown =
      epochs.byRegion.size > 1
        ? [...epochs.byRegion].map(([r, e]) => `${e} in Region ${r}`).join(", ")
        : String(epochs.epoch);
    io.err(`published as epoch ${shown}`);
    // 2. Every replica of every zone the policy governs reports it.
    const { zones, compiled } = await compileNamespace(api, ns);
    const governed = compiled.policies.find((p) => p.name === policy)?.governedZones ?? [];
    const desired = new Map(zones.map((z) => [z.metadata.name, z.spec?.mapServer?.replicas ?? 1]));
    const regionOf = new Map(zones.map((z) => [z.metadata.name, z.spec?.regionRef?.name ?? ""]));
    const target = (zone: string) => epochs.byRegion.get(regionOf.get(zone) ?? "") ?? epochs.epoch;
    if (acks === undefined)
      io.err("no report channel given (--nats-url, $HYBRIDP2P_NATS_URL): following the Zones' status");
    const pods = [...governed].reduce((n, z) => n + (desired.get(z) ?? 1), 0);
    let lastLine = "";
    let lastAt = 0;
    for (;;) {
      const shortfall = acks
        ? byReports((zone) => acks.zoneReports(ns, zone), target)
        : byStatus(await list(api, ZONE.plural, ns), target);
      const missing = progress(governed, desired, shortfall);
      const done = governed.length - missing.length;
      const acked = acks
        ? `, ${governed.reduce((n, z) => n + Math.min(desired.get(z) ?? 1, countAt(acks.zoneReports(ns, z), target(z))), 0)}/${pods} pods acked`
        : "";
      const line = `epoch ${shown}: ${done}/${governed.length} zones applied${acked}${
        missing.length > 0
          ? ` (waiting: ${missing
              .map((m) => m.zone)
              .slice(0, 5)
              .join(", ")}${missing.length > 5 ? ", ..." : ""})`
          : ""
      }`;
      // Progress at most every 250 ms (or when done), and only when it moved.
      if (line !== lastLine && (missing.length === 0 || Date.now() - lastAt >= 250)) {
        io.err(line);
        lastLine = line;
        lastAt = Date.now();
      }
      if (missing.length === 0) {
        io.out(`applied: every replica of ${governed.length} zones runs epoch ${shown}`);
        return;
      }
      if (Date.now() > deadline) {
        throw new CliError(
          `timed out after ${timeoutS}s at epoch ${shown}; missing:\n${missing.map((m) => `  ${m.zone}: ${m.detail}`).join("\n")}`,
        );
      }
      // Acks are in memory; the Zones' status is a request to the API server each time.
      await sleep(acks ? 50 : 500);
    }
  } finally {
    acks?.close();
    await nc?.close();
  }
}

const countAt = (rs: readonly PodReport[], epoch: number) =>
  rs.filter((r) => r.service === "map-server" && r.epoch >= epoch).length;

/** What keeps one zone from counting as applied, given its desired replicas; undefined: nothing. */
type Shortfall = (zone: string, want: number) => string | undefined;

/** The zones that fall short, and why. */
export function progress(
  zones: readonly string[],
  desired: ReadonlyMap<string, number>,
  shortfall: Shortfall,
): Missing[] {
  return zones.flatMap((zone) => {
    const detail = shortfall(zone, desired.get(zone) ?? 1);
    return detail === undefined ? [] : [{ zone, detail }];
  });
}

/** Fewer than the desired map-server replicas report the zone's target epoch or later: which lag,
 * how many are absent. */
export const byReports =
  (reportsOf: (zone: string) => readonly PodReport[], target: (zone: string) => number): Shortfall =>
  (zone, want) => {
    const epoch = target(zone);
    const rs = reportsOf(zone).filter((r) => r.service === "map-server");
    const ok = rs.filter((r) => r.epoch >= epoch);
    if (ok.length >= want) return undefined;
    const lagging = rs
      .filter((r) => r.epoch < epoch)
      .map((r) => `${r.pod} at epoch ${r.epoch}${r.rejectedEpoch ? ` (rejected ${r.rejectedEpoch})` : ""}`);
    const absent = want - rs.length;
    return `${ok.length} of ${want} replicas at epoch ${epoch}${lagging.length ? `; lagging: ${lagging.join(", ")}` : ""}${absent > 0 ? `; ${absent} replicas not reporting` : ""}`;
  };

/**
 * The same from the Zones' status: appliedEpoch is the lowest epoch any reporting replica runs,
 * replicas.applied how many run the live epoch (ours or a later one).
 */
export const byStatus =
  (zones: readonly KObj[], target: (zone: string) => number): Shortfall =>
  (zone, want) => {
    const epoch = target(zone);
    const s = zones.find((z) => z.metadata.name === zone)?.status;
    const applied = s?.replicas?.applied ?? 0;
    const lowest = s?.appliedEpoch;
    if (applied >= want && (want === 0 || (lowest ?? -1) >= epoch)) return undefined;
    return `status: ${applied} of ${want} replicas at the live epoch, lowest applied epoch ${lowest ?? "none"}`;
  };
