// Following a P2PPolicy edit until every replica of every zone it governs runs the epoch that
// carries it, from the pods' reports in the flag store.
import type { CustomObjectsApi } from "@kubernetes/client-node";
import { P2P_POLICY } from "../operator/api/constants.ts";
import { ReportWatcher } from "../operator/flags/reports.ts";
import { layout, type PodReport } from "../platform/flags/layout.ts";
import { sleep } from "../platform/time.ts";
import { CliError, compileNamespace, etcdOf, type Globals, getObj, type Io } from "./common.ts";

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
  const etcd = etcdOf(g);
  const watcher = new ReportWatcher(etcd, layout(g.prefix), { namespace: ns });
  try {
    await watcher.start();
    let lastLine = "";
    for (;;) {
      const missing = progress(governed, desired, watcher.reports(), epoch);
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
      await sleep(100);
    }
  } finally {
    await watcher.close();
    etcd.close();
  }
}

/** The zones where fewer than the desired map-server replicas report `epoch` or later, and why. */
export function progress(
  zones: readonly string[],
  desired: ReadonlyMap<string, number>,
  reports: readonly PodReport[],
  epoch: number,
): Missing[] {
  const missing: Missing[] = [];
  for (const zone of zones) {
    const want = desired.get(zone) ?? 1;
    const rs = reports.filter((r) => r.zone === zone && r.service === "map-server");
    const ok = rs.filter((r) => r.epoch >= epoch);
    if (ok.length >= want) continue;
    const lagging = rs
      .filter((r) => r.epoch < epoch)
      .map((r) => `${r.pod} at epoch ${r.epoch}${r.rejectedEpoch ? ` (rejected ${r.rejectedEpoch})` : ""}`);
    const absent = want - rs.length;
    missing.push({
      zone,
      detail: `${ok.length} of ${want} replicas at epoch ${epoch}${lagging.length ? `; lagging: ${lagging.join(", ")}` : ""}${absent > 0 ? `; ${absent} replicas not reporting` : ""}`,
    });
  }
  return missing;
}
