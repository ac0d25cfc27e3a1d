// The operator kill loop: two operator replicas (`hybrid-operator run --leader-elect`, separate
// processes) over one Region of CHAOS_ZONES zones (default 200) with a simulated map-server pod
// per zone (a real flag client on the real flag etcd and NATS), while a P2PPolicy is toggled
// CHAOS_TOGGLES times (default 20) and the leader, or both replicas, are SIGKILLed CHAOS_KILLS
// times (default 50) at random moments, each restarted at once as a Deployment would.
//
// Checked afterwards:
// - the flag store's whole history (watched from revision 1): the pointer's epochs only grow, and
//   every pointer and zone document was written under the fencing token current at that revision
//   (no two publishers ever wrote);
// - every zone's pod applied the last published epoch, and the Zones' status says so;
// - 0 orphaned children (every child the operator labels is one its owner renders now) and none
//   missing;
// and it prints the time from the last kill until all of that holds.
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { join } from "node:path";
import type { Etcd3 } from "etcd3";
import {
  type RegionObject,
  regionResource,
  type ZoneObject,
  zoneResource,
} from "../operator/controllers/context.ts";
import { CHILD_RESOURCES } from "../operator/controllers/operator.ts";
import { LEASE_NAME } from "../operator/main.ts";
import { MANAGED_SELECTOR } from "../operator/render/constants.ts";
import { renderZone } from "../operator/render/zone.ts";
import { FlagClient } from "../platform/flags/client.ts";
import { connectFlagStore } from "../platform/flags/etcd.ts";
import { layout, parsePointer } from "../platform/flags/layout.ts";
import { type KubeClient, resources } from "../platform/kube/kube.ts";
import type { KubeObject } from "../platform/kube/meta.ts";
import { connectNats } from "../platform/stores/access.ts";
import { sleep } from "../platform/time.ts";
import { createNamespace, installCrds, testClient } from "../testkit/kube.ts";
import { envVars, startLocalEnv } from "../testkit/local/services.ts";
import { freePort } from "../testkit/processes.ts";
import { HistoryCheck } from "./history.ts";
import type { Scenario } from "./scenario.ts";
import { createChaosPolicy, createChaosRegion, patchChaosPolicy } from "./world.ts";

const NS = "chaos-operator";
const PREFIX = "/chaos-operator/v1/";
const repoRoot = new URL("..", import.meta.url).pathname;
const quiet = { error: () => {}, warn: () => {}, info: () => {} };

interface Replica {
  name: string;
  child?: ChildProcess;
}

/** Starts (or restarts) one operator replica with short leader-election timings. */
async function start(r: Replica, kubeconfig: string, logDir: string): Promise<void> {
  const metrics = await freePort();
  // Appended across restarts: one log per replica, kept with the state directory.
  const out = openSync(join(logDir, `${r.name}.log`), "a");
  r.child = spawn(
    process.execPath,
    [
      join(repoRoot, "operator/main.ts"),
      "run",
      `--kubeconfig=${kubeconfig}`,
      `--namespace=${NS}`,
      "--leader-elect",
      "--leader-elect-lease-duration=3s",
      "--leader-elect-renew-deadline=2s",
      "--leader-elect-retry-period=500ms",
      "--health-probe-bind-address=0",
      `--metrics-bind-address=127.0.0.1:${metrics}`,
      `--flags-prefix=${PREFIX}`,
    ],
    { stdio: ["ignore", out, out], env: { ...process.env, POD_NAME: r.name } },
  );
  closeSync(out);
}

function kill(r: Replica): Promise<void> {
  const c = r.child;
  if (!c || c.exitCode !== null || c.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    c.once("exit", () => resolve());
    c.kill("SIGKILL");
  });
}

const childId = (o: KubeObject) => `${o.kind}/${o.metadata.name}`;

/**
 * Children the operator labels whose controlling owner is gone or no longer renders them
 * (orphans), and children a Zone renders that are absent. (A Region's own children depend on the
 * Secrets it generated; for those only the owner is checked.)
 */
async function childrenCheck(kube: KubeClient): Promise<{ orphaned: string[]; missing: string[] }> {
  const regions = (await kube.list<RegionObject>(regionResource, NS)).items;
  const zones = (await kube.list<ZoneObject>(zoneResource, NS)).items;
  const owners = new Set([...regions, ...zones].map((o) => o.metadata.uid!));
  const region = regions[0]!;
  const kinds = new Set(CHILD_RESOURCES.map((rt) => rt.kind));
  const zoneChildren = new Map<string, string>(); // child id -> owning Zone's uid
  for (const z of zones)
    for (const c of renderZone(z, region))
      if (kinds.has(c.kind)) zoneChildren.set(childId(c), z.metadata.uid!);
  const zoneUids = new Set(zones.map((z) => z.metadata.uid!));
  const live = new Map<string, KubeObject>();
  // List items carry no kind.
  for (const rt of CHILD_RESOURCES)
    for (const o of (await kube.list(rt, NS, { labelSelector: MANAGED_SELECTOR })).items)
      live.set(`${rt.kind}/${o.metadata.name}`, o);
  const orphaned: string[] = [];
  for (const [id, o] of live) {
    const owner = o.metadata.ownerReferences?.find((r) => r.controller)?.uid ?? "";
    if (!owners.has(owner) || (zoneUids.has(owner) && zoneChildren.get(id) !== owner)) orphaned.push(id);
  }
  const missing = [...zoneChildren.keys()].filter((id) => !live.has(id));
  return { orphaned, missing };
}

export const operatorKill: Scenario = async (log) => {
  // Read here, not at import: the e2e suite's short run sets them.
  const ZONES = Number(process.env.CHAOS_ZONES ?? 200);
  const TOGGLES = Number(process.env.CHAOS_TOGGLES ?? 20);
  const KILLS = Number(process.env.CHAOS_KILLS ?? 50);
  const CONVERGE_S = Number(process.env.CHAOS_CONVERGE_SECONDS ?? 180);
  const running = await startLocalEnv({ services: ["kube", "flags-etcd", "nats"], log });
  const env = running.env;
  const logDir = join(env.stateDir, "logs");
  log(`operator logs: ${logDir}/operator-{a,b}.log (HYBRIDP2P_KEEP_STATE=1 keeps them)`);
  // The operator processes reach the flag store and NATS with the local administrator's credentials.
  Object.assign(process.env, envVars(env));
  const replicas: Replica[] = [{ name: "operator-a" }, { name: "operator-b" }];
  const violations: string[] = [];
  let etcd: Etcd3 | undefined;
  const pods: FlagClient[] = [];
  try {
    const kube = await testClient(env.kubeconfig!);
    await installCrds(kube);
    await createNamespace(kube, NS);
    etcd = connectFlagStore(env.etcd!);
    const history = new HistoryCheck(PREFIX);
    const watcher = await etcd.watch().prefix(PREFIX).startRevision("1").create();
    watcher.on("put", (kv) => history.onPut(kv));

    const zoneNames = await createChaosRegion(kube, env, NS, ZONES);
    let enabled = false;
    await createChaosPolicy(kube, NS, { enabled });
    log(
      `${ZONES} zones and a policy created; starting ${replicas.length} operator replicas and ${ZONES} pods`,
    );
    for (const r of replicas) await start(r, env.kubeconfig!, logDir);

    // One simulated map-server pod per zone, on one etcd and one NATS connection.
    const nc = await connectNats(env.nats!, { name: "chaos-pods" });
    for (const zone of zoneNames) {
      const c = new FlagClient({
        client: etcd,
        nats: nc,
        prefix: PREFIX,
        namespace: NS,
        zone,
        service: "map-server",
        pod: `${zone}-0`,
        log: quiet,
      });
      pods.push(c);
    }
    await Promise.all(pods.map((c) => c.start()));

    const holder = async () =>
      (await kube.get<KubeObject & { spec?: { holderIdentity?: string } }>(resources.lease, NS, LEASE_NAME))
        ?.spec?.holderIdentity ?? "";
    const toggle = async () => {
      enabled = !enabled;
      await patchChaosPolicy(kube, NS, { enabled });
    };

    // ---- the loop ------------------------------------------------------------------------------
    // Toggles spread evenly over the kills, the last one just before the last kill, so the time to
    // converge measures a publish the kills interrupted, not one long done.
    const toggleAt = new Set(
      Array.from({ length: Math.min(TOGGLES, KILLS) }, (_, i) => Math.round(((i + 1) * KILLS) / TOGGLES) - 1),
    );
    let toggles = 0;
    for (let k = 0; k < KILLS; k++) {
      await sleep(300 + Math.random() * 1700);
      if (toggleAt.has(k)) {
        await toggle();
        toggles++;
      }
      const both = Math.random() < 0.25;
      const lead = await holder();
      const victims = both ? replicas : replicas.filter((r) => r.name === lead);
      await Promise.all(victims.map(kill));
      for (const r of victims) await start(r, env.kubeconfig!, logDir);
      if (k % 10 === 9) log(`${k + 1} kills, ${toggles} toggles; ${history.pointers} pointers written`);
    }
    const lastKill = Date.now();

    // ---- convergence ---------------------------------------------------------------------------
    const l = layout(PREFIX);
    let why = "";
    let converged = false;
    while (Date.now() - lastKill < CONVERGE_S * 1000) {
      await sleep(500);
      const raw = await etcd.get(l.pointer).string();
      const pointer = raw === null ? undefined : parsePointer(l.pointer, raw);
      if (!pointer) {
        why = "no pointer";
        continue;
      }
      const doc = await etcd.get(l.zoneKey(NS, zoneNames[0]!)).string();
      if (!doc?.includes(`"enabled":${enabled}`)) {
        why = `the published documents do not say enabled=${enabled} yet`;
        continue;
      }
      const behind = pods.filter((p) => p.current().epoch !== pointer.epoch);
      if (behind.length > 0) {
        why = `${behind.length} pods not on epoch ${pointer.epoch}`;
        continue;
      }
      const zones = (await kube.list<ZoneObject>(zoneResource, NS)).items;
      const stale = zones.filter((z) => z.status?.appliedEpoch !== pointer.epoch);
      if (stale.length > 0) {
        why = `${stale.length} Zones' status not at applied epoch ${pointer.epoch} (e.g. ${stale[0]!.metadata.name}: ${stale[0]!.status?.appliedEpoch})`;
        continue;
      }
      const { orphaned, missing } = await childrenCheck(kube);
      if (orphaned.length + missing.length > 0) {
        why = `orphaned: ${orphaned.slice(0, 5).join(", ")}; missing: ${missing.slice(0, 5).join(", ")}`;
        continue;
      }
      converged = true;
      break;
    }
    const convergeS = (Date.now() - lastKill) / 1000;
    if (!converged) violations.push(`not converged ${CONVERGE_S} s after the last kill: ${why}`);
    const { orphaned } = await childrenCheck(kube);
    await watcher.cancel();
    violations.push(...history.violations);
    await nc.close();
    kube.close();
    return {
      runs: KILLS,
      violations,
      figures: {
        zones: ZONES,
        toggles,
        pointers_written: history.pointers,
        orphaned_children: orphaned.length,
        converge_seconds: convergeS.toFixed(1),
      },
    };
  } finally {
    await Promise.all(replicas.map(kill));
    await Promise.all(pods.map((p) => p.close().catch(() => undefined)));
    etcd?.close();
    await running.stop();
  }
};
