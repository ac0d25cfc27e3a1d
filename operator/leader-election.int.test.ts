// Leader election between operator instances against a real apiserver: only the leader
// reconciles, a follower takes over when the leader stops, an unexpired lease of another
// holder is respected until it expires, and a restart mid-reconcile converges.
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import { type KubeClient, resources } from "../platform/kube/kube.ts";
import type { Manager } from "../platform/kube/manager.ts";
import type { KubeObject } from "../platform/kube/meta.ts";
import { createLogger, silentLogger } from "../platform/log.ts";
import { sleep } from "../platform/time.ts";
import { createNamespace, deleteNamespace, installCrds, testClient, waitFor } from "../testkit/kube.ts";
import { API_VERSION } from "./api/index.ts";
import { isSubset } from "./controllers/children.ts";
import type { RegionObject, ZoneObject } from "./controllers/context.ts";
import { LEASE_NAME, startOperator } from "./main.ts";
import { renderZone } from "./render/zone.ts";

const env = inject("localEnv");
const ns = "leader-int";
let client: KubeClient;
const running: Manager[] = [];

async function operator(identity: string, leaseOpts: Record<string, number> = {}): Promise<Manager> {
  const mgr = await startOperator({
    kubeconfig: env.kubeconfig!,
    namespace: ns,
    leaderElect: true,
    identity,
    metricsBindAddress: "0",
    healthProbeBindAddress: "0",
    log: process.env.DEBUG_LEADER ? createLogger("leader-test", { level: "debug" }) : silentLogger(),
    ...leaseOpts,
  });
  running.push(mgr);
  return mgr;
}

async function stop(mgr: Manager): Promise<void> {
  await mgr.stop();
  running.splice(running.indexOf(mgr), 1);
}

async function reconciles(mgr: Manager): Promise<number> {
  const m = await mgr.metrics.reconciles.get();
  return m.values.reduce((s, v) => s + v.value, 0);
}

const cr = (kind: string, name: string, spec: Record<string, unknown>): KubeObject => ({
  apiVersion: API_VERSION,
  kind,
  metadata: { name, namespace: ns },
  spec,
});

async function userApply(obj: KubeObject): Promise<void> {
  const plural = obj.kind === "Region" ? "regions" : "zones";
  await client.request("PATCH", `/apis/${API_VERSION}/namespaces/${ns}/${plural}/${obj.metadata.name}`, {
    query: { fieldManager: "test-user", force: true },
    body: obj,
    contentType: "application/apply-patch+yaml",
  });
}

const zone = (name: string) =>
  cr("Zone", name, { regionRef: { name: "r1" }, maps: [{ name: "pay_fild01", type: "Field" }] });

beforeAll(async () => {
  client = await testClient(env.kubeconfig!);
  await installCrds(client);
  await createNamespace(client, ns);
});

// Every test stops its instances, also when it fails, so none campaigns into the next test.
afterEach(async () => {
  for (const m of [...running]) await stop(m);
});

afterAll(async () => {
  if (client) await deleteNamespace(client, ns);
  client?.close();
});

describe("leader election", () => {
  it("lets only the leader reconcile, and hands over when the leader stops", async () => {
    const a = await operator("op-a");
    await waitFor(() => a.isLeader(), "op-a leads");
    const b = await operator("op-b");
    await userApply(cr("Region", "r1", {}));
    await userApply(zone("z1"));
    await waitFor(() => client.get(resources.statefulSet, ns, "z1-map-server"), "z1 children");
    expect(b.isLeader()).toBe(false);
    expect(await reconciles(b)).toBe(0);
    await waitFor(async () => (await reconciles(a)) > 0, "op-a reconciles");

    await stop(a); // graceful: releases the lease
    await waitFor(() => b.isLeader(), "op-b takes over");
    await userApply(zone("z2"));
    await waitFor(
      () => client.get(resources.statefulSet, ns, "z2-map-server"),
      "z2 children from the new leader",
    );
    await waitFor(async () => (await reconciles(b)) > 0, "op-b reconciles");
    const lease = await client.get<
      KubeObject & { spec: { holderIdentity?: string; leaseTransitions?: number } }
    >(resources.lease, ns, LEASE_NAME);
    expect(lease?.spec.holderIdentity).toBe("op-b");
    expect(lease?.spec.leaseTransitions).toBeGreaterThanOrEqual(1);
    await stop(b);
  });

  it("waits for another holder's lease to expire before taking over", async () => {
    // A holder that vanished without releasing (a crash): its lease runs out after 4 s.
    const current = await client.get<KubeObject>(resources.lease, ns, LEASE_NAME);
    await client.replace({
      ...current!,
      spec: {
        holderIdentity: "ghost",
        leaseDurationSeconds: 4,
        renewTime: new Date().toISOString().replace(/Z$/, "000Z"),
        acquireTime: new Date().toISOString().replace(/Z$/, "000Z"),
      },
    });
    const c = await operator("op-c", { leaseDurationMs: 4000, renewDeadlineMs: 3000, retryPeriodMs: 300 });
    await sleep(500);
    expect(c.isLeader()).toBe(false); // well inside the ghost's lease
    await waitFor(() => c.isLeader(), "op-c leads after the ghost's lease expired");
    await stop(c);
  });

  it("converges to the same state after a restart in the middle of reconciling", async () => {
    const d = await operator("op-d");
    await waitFor(() => d.isLeader(), "op-d leads");
    const names = Array.from({ length: 20 }, (_, i) => `burst-${i}`);
    await Promise.all(names.map((n) => userApply(zone(n))));
    await stop(d); // likely mid-way through the burst
    const e = await operator("op-e");
    await waitFor(() => e.isLeader(), "op-e leads");
    const region = await client.get<RegionObject>(
      { apiVersion: API_VERSION, kind: "Region", plural: "regions", namespaced: true },
      ns,
      "r1",
    );
    for (const n of names) {
      const z = await waitFor(
        () =>
          client.get<ZoneObject>(
            { apiVersion: API_VERSION, kind: "Zone", plural: "zones", namespaced: true },
            ns,
            n,
          ),
        n,
      );
      for (const want of renderZone(z, region!)) {
        const rt = {
          StatefulSet: resources.statefulSet,
          Service: resources.service,
          PodDisruptionBudget: resources.pdb,
          NetworkPolicy: resources.networkPolicy,
        }[want.kind]!;
        const live = await waitFor(
          () => client.get(rt, ns, want.metadata.name),
          `${want.kind} ${want.metadata.name}`,
        );
        expect(isSubset(want, live)).toBe(true);
      }
      await waitFor(
        async () =>
          (
            await client.get<ZoneObject>(
              { apiVersion: API_VERSION, kind: "Zone", plural: "zones", namespaced: true },
              ns,
              n,
            )
          )?.status?.observedGeneration === z.metadata.generation,
        `${n} status current`,
      );
    }
  });
});
