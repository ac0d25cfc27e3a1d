// Following a P2PPolicy edit until every replica of every zone it governs runs the epoch that
// carries it. With a flag store (--etcd-endpoints, $HYBRIDP2P_ETCD_ENDPOINTS) hybridctl reads the
// pods' reports there; without one it reads the Zones' status, which the operator folds from
// the same reports. The second way is what works against a cluster whose flag store is only
// reachable inside it (hack/local-region.sh's env.sh exports KUBECONFIG alone).
import type { CustomObjectsApi } from "@kubernetes/client-node";
import { P2P_POLICY, ZONE } from "../operator/api/constants.ts";
import { ReportWatcher } from "../operator/flags/reports.ts";
import { layout, type PodReport } from "../platform/flags/layout.ts";
import { sleep } from "../platform/time.ts";
import {
  CliError,
  compileNamespace,
  etcdEndpoints,
  etcdOf,
  type Globals,
  getObj,
  type Io,
  type KObj,
  list,
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
  // 1. The operator has compiled this generation: its status names the epoch that carries it.
  let epoch: number | undefined;
  while (epoch === undefined) {
    const p = await getObj(api, P2P_POLICY.plural, ns, policy);
    if ((p.status?.observedGeneration ?? -1) >= generation && p.status?.epoch !== undefined)
      epoch = p.status.epoch;
    else if (Date.now() > deadline) {
      throw new CliError(
        `timed out: the operator has not published generation ${generation} of ${policy} (is it running?)`,
      );
    } else await sleep(100);
  }
  io.err(`published as epoch ${epoch}`);
  // 2. Every replica of every zone the policy governs reports it.
  const { zones, compiled } = await compileNamespace(api, ns);
  const governed = compiled.policies.find((p) => p.name === policy)?.governedZones ?? [];
  const desired = new Map(zones.map((z) => [z.metadata.name, z.spec?.mapServer?.replicas ?? 1]));
  const etcd = etcdEndpoints(g) === undefined ? undefined : etcdOf(g);
  const watcher = etcd && new ReportWatcher(etcd, layout(g.prefix), { namespace: ns });
  if (watcher === undefined)
    io.err("no flag store given (--etcd-endpoints, $HYBRIDP2P_ETCD_ENDPOINTS): following the Zones' status");
  try {
    await watcher?.start();
    let lastLine = "";
    for (;;) {
      const missing = progress(
        governed,
        desired,
        watcher ? byReports(watcher.reports(), epoch) : byStatus(await list(api, ZONE.plural, ns), epoch),
      );
      const done = governed.length - missing.length;
      const line = `epoch ${epoch}: ${done}/${governed.length} zones applied${
        missing.length > 0
          ? ` (waiting: ${missing
              .map((m) => m.zone)
              .slice(0, 5)
              .join(", ")}${missing.length > 5 ? ", ..." : ""})`
          : ""
      }`;
      if (line !== lastLine) io.err(line);
      lastLine = line;
      if (missing.length === 0) {
        io.out(`applied: every replica of ${governed.length} zones runs epoch ${epoch}`);
        return;
      }
      if (Date.now() > deadline) {
        throw new CliError(
          `timed out after ${timeoutS}s at epoch ${epoch}; missing:\n${missing.map((m) => `  ${m.zone}: ${m.detail}`).join("\n")}`,
        );
      }
      // Reports are in memory; the Zones' status is a request to the API server each time.
      await sleep(watcher ? 100 : 500);
    }
  } finally {
    await watcher?.close();
    etcd?.close();
  }
}

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

/** Fewer than the desired map-server replicas report `epoch` or later: which lag, how many are absent. */
export const byReports =
  (reports: readonly PodReport[], epoch: number): Shortfall =>
  (zone, want) => {
    const rs = reports.filter((r) => r.zone === zone && r.service === "map-server");
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
  (zones: readonly KObj[], epoch: number): Shortfall =>
  (zone, want) => {
    const s = zones.find((z) => z.metadata.name === zone)?.status;
    const applied = s?.replicas?.applied ?? 0;
    const lowest = s?.appliedEpoch;
    if (applied >= want && (want === 0 || (lowest ?? -1) >= epoch)) return undefined;
    return `status: ${applied} of ${want} replicas at the live epoch, lowest applied epoch ${lowest ?? "none"}`;
  };
