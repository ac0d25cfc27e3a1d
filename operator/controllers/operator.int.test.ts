// The operator against a real kube-apiserver: children with owner references and labels,
// drift repair, missing references, status conditions, updates, quiet when converged.
// There is no kube-controller-manager here, so Deployments never get pods: the tests check
// what the operator writes, and play the workload controllers by writing child status.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { type KubeClient, resources } from "../../platform/kube/kube.ts";
import type { Manager } from "../../platform/kube/manager.ts";
import type { KubeObject } from "../../platform/kube/meta.ts";
import { silentLogger } from "../../platform/log.ts";
import { sleep } from "../../platform/time.ts";
import { createNamespace, deleteNamespace, installCrds, testClient, waitFor } from "../../testkit/kube.ts";
import { freePort, type Proc } from "../../testkit/processes.ts";
import { startRegionEtcd } from "../../testkit/region-stores.ts";
import { API_VERSION } from "../api/index.ts";
import { startOperator } from "../main.ts";
import { regionResource, zoneResource } from "./context.ts";

const env = inject("localEnv");
const ns = "op-int";
let client: KubeClient;
let mgr: Manager;
let etcdPort = 0;
let regionEtcd: Proc | undefined;
const stateDir = mkdtempSync(join(tmpdir(), "op-int-"));

interface Cond {
  type: string;
  status: string;
  reason: string;
  message: string;
}
interface Workload extends KubeObject {
  spec: {
    replicas?: number;
    serviceName?: string;
    template: {
      spec: {
        securityContext?: unknown;
        containers: Array<{
          image: string;
          securityContext?: unknown;
          env: Array<{ name: string; value?: string }>;
        }>;
      };
    };
  };
}
interface Svc extends KubeObject {
  spec: { clusterIP?: string };
}
interface Cr extends KubeObject {
  status?: { observedGeneration?: number; conditions?: Cond[]; [k: string]: unknown };
}

const cond = (o: Cr | undefined, type: string) => o?.status?.conditions?.find((c) => c.type === type);

function region(name: string, spec: Record<string, unknown> = {}): KubeObject {
  return { apiVersion: API_VERSION, kind: "Region", metadata: { name, namespace: ns }, spec };
}

function zone(name: string, regionName: string, extra: Record<string, unknown> = {}): KubeObject {
  return {
    apiVersion: API_VERSION,
    kind: "Zone",
    metadata: { name, namespace: ns },
    spec: { regionRef: { name: regionName }, maps: [{ name: "prt_fild08", type: "Field" }], ...extra },
  };
}

/** Applies as a user would (kubectl apply --server-side), not as the operator. */
function userApply(obj: KubeObject) {
  const rt = obj.kind === "Region" ? regionResource : obj.kind === "Zone" ? zoneResource : undefined;
  const plural = rt?.plural;
  return client.request<KubeObject>(
    "PATCH",
    `/apis/${API_VERSION}/namespaces/${ns}/${plural}/${obj.metadata.name}`,
    {
      query: { fieldManager: "test-user", force: true },
      body: obj,
      contentType: "application/apply-patch+yaml",
    },
  );
}

const getCr = (rt: typeof regionResource, name: string) => client.get<Cr>(rt, ns, name);

interface Ev extends KubeObject {
  reason: string;
  type: string;
  message: string;
  involvedObject: { kind: string; name: string };
}

/** Waits for an Event about `kind/name` with `reason`. */
function eventFor(kind: string, name: string, reason: string): Promise<Ev> {
  return waitFor(async () => {
    const list = await client.list<Ev>(resources.event, ns);
    return list.items.find(
      (e) => e.involvedObject.kind === kind && e.involvedObject.name === name && e.reason === reason,
    );
  }, `event ${reason} for ${kind}/${name}`);
}

/** Plays the Deployment/StatefulSet controllers: marks a workload fully available. */
async function markAvailable(rt: typeof resources.deployment, name: string): Promise<void> {
  const live = await client.get<KubeObject & { spec: { replicas?: number } }>(rt, ns, name);
  if (!live) throw new Error(`${name} missing`);
  const n = live.spec.replicas ?? 1;
  await client.patchStatus(rt, ns, name, {
    observedGeneration: live.metadata.generation,
    replicas: n,
    readyReplicas: n,
    availableReplicas: n,
    updatedReplicas: n,
  });
}

beforeAll(async () => {
  etcdPort = await freePort();
  client = await testClient(env.kubeconfig!);
  await installCrds(client);
  await createNamespace(client, ns);
  mgr = await startOperator({
    kubeconfig: env.kubeconfig!,
    namespace: ns,
    leaderElect: false,
    metricsBindAddress: "127.0.0.1:0",
    healthProbeBindAddress: "127.0.0.1:0",
    log: silentLogger(),
    flagPlane: false, // these tests play the flag plane's part of Zone status
    // No pods here: the Region's etcd runs on this host (started in the Ready test).
    storeEndpoint: (_r, store) => (store === "etcd" ? `https://127.0.0.1:${etcdPort}` : "nats://127.0.0.1:1"),
  });
});

afterAll(async () => {
  await mgr?.stop();
  await regionEtcd?.stop();
  rmSync(stateDir, { recursive: true, force: true });
  if (client) await deleteNamespace(client, ns);
  client?.close();
});

describe("operator against a real apiserver", () => {
  it("serves /readyz and /metrics once its caches are synced", async () => {
    const ready = await fetch(`http://127.0.0.1:${mgr.healthPort}/readyz`);
    expect(ready.status).toBe(200);
    const metrics = await (await fetch(`http://127.0.0.1:${mgr.metricsPort}/metrics`)).text();
    expect(metrics).toContain("hybridp2p_reconcile_total");
    expect(metrics).toContain("hybridp2p_kube_api_request_duration_seconds");
  });

  it("creates a Region's children with owner references and the standard labels", async () => {
    await userApply(region("alpha"));
    const r = await waitFor(() => getCr(regionResource, "alpha"), "region");
    for (const c of ["gateway", "coordinator", "login-server", "char-server"]) {
      const name = `alpha-${c}`;
      for (const rt of [
        resources.deployment,
        resources.service,
        resources.serviceAccount,
        resources.configMap,
        resources.pdb,
        resources.networkPolicy,
      ]) {
        const child = await waitFor(() => client.get(rt, ns, name), `${rt.kind} ${name}`);
        expect(child.metadata.ownerReferences).toEqual([
          {
            apiVersion: API_VERSION,
            kind: "Region",
            name: "alpha",
            uid: r.metadata.uid,
            controller: true,
            blockOwnerDeletion: true,
          },
        ]);
        expect(child.metadata.labels).toMatchObject({
          "app.kubernetes.io/name": c,
          "app.kubernetes.io/instance": "alpha",
          "app.kubernetes.io/component": c,
          "app.kubernetes.io/part-of": "hybrid-p2p",
          "app.kubernetes.io/managed-by": "hybrid-operator",
        });
      }
    }
    for (const store of ["etcd", "nats", "postgres", "dragonfly"]) {
      await waitFor(() => client.get(resources.statefulSet, ns, `alpha-${store}`), `store ${store}`);
      await waitFor(() => client.get(resources.service, ns, `alpha-${store}`), `store service ${store}`);
    }
    const deploy = await client.get<Workload>(resources.deployment, ns, "alpha-gateway");
    const pod = deploy!.spec.template.spec;
    expect(pod.securityContext).toMatchObject({
      runAsNonRoot: true,
      seccompProfile: { type: "RuntimeDefault" },
    });
    expect(pod.containers[0]!.securityContext).toMatchObject({
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ["ALL"] },
    });
    // Every write to children went through the one field manager.
    const managers = new Set(
      (deploy!.metadata as { managedFields?: Array<{ manager: string }> }).managedFields?.map(
        (f) => f.manager,
      ),
    );
    expect(managers).toEqual(new Set(["hybrid-operator"]));
  });

  it("reports Reconciling until the workloads are available, then Ready with observedGeneration", async () => {
    const reconciling = await waitFor(async () => {
      const r = await getCr(regionResource, "alpha");
      return cond(r, "Reconciling")?.status === "True" ? r : undefined;
    }, "Reconciling=True");
    expect(reconciling.status?.observedGeneration).toBe(reconciling.metadata.generation);
    expect(cond(reconciling, "Ready")?.status).toBe("False");
    expect(cond(reconciling, "Stalled")?.status).toBe("False");
    for (const c of ["gateway", "coordinator", "login-server", "char-server"])
      await markAvailable(resources.deployment, `alpha-${c}`);
    for (const s of ["etcd", "nats", "postgres", "dragonfly"])
      await markAvailable(resources.statefulSet, `alpha-${s}`);
    // Ready needs the managed etcd's roles too: the operator applies them once etcd answers
    // (here an etcd on this host, started from the Secrets the operator generated).
    const waiting = await waitFor(async () => {
      const r = await getCr(regionResource, "alpha");
      return cond(r, "Reconciling")?.message.includes("etcd roles") ? r : undefined;
    }, "Reconciling on the etcd roles");
    expect(cond(waiting, "Ready")?.status).toBe("False");
    regionEtcd = await startRegionEtcd({
      client,
      namespace: ns,
      region: "alpha",
      port: etcdPort,
      peerPort: await freePort(),
      dir: stateDir,
    });
    const ready = await waitFor(async () => {
      const r = await getCr(regionResource, "alpha");
      return cond(r, "Ready")?.status === "True" ? r : undefined;
    }, "Ready=True");
    expect(cond(ready, "Reconciling")?.status).toBe("False");
    expect(ready.status?.gatewayEndpoint).toBe(`alpha-gateway.${ns}.svc:7000`);
  });

  it("renders a Zone into a map-server StatefulSet and headless Service with the zone's settings", async () => {
    await userApply(
      zone("fild", "alpha", {
        mapServer: { replicas: 2, workerThreads: 4, tickRateHz: 25, maxPlayers: 800 },
      }),
    );
    const sts = await waitFor(
      () => client.get<Workload>(resources.statefulSet, ns, "fild-map-server"),
      "sts",
    );
    expect(sts.spec.replicas).toBe(2);
    expect(sts.spec.serviceName).toBe("fild-map-server");
    const env = Object.fromEntries(sts.spec.template.spec.containers[0]!.env.map((e) => [e.name, e.value]));
    expect(env).toMatchObject({
      HYBRIDP2P_ZONE: "fild",
      HYBRIDP2P_REGION: "alpha",
      HYBRIDP2P_MAPS: "prt_fild08",
      HYBRIDP2P_WORKER_THREADS: "4",
      HYBRIDP2P_TICK_RATE_HZ: "25",
      HYBRIDP2P_MAX_PLAYERS: "800",
      HYBRIDP2P_REDIS_URL: `rediss://alpha-dragonfly.${ns}.svc:6379`,
    });
    const svc = await waitFor(() => client.get<Svc>(resources.service, ns, "fild-map-server"), "svc");
    expect(svc.spec.clusterIP).toBe("None");
    expect(sts.metadata.ownerReferences?.[0]).toMatchObject({ kind: "Zone", name: "fild", controller: true });
    await markAvailable(resources.statefulSet, "fild-map-server");
    const z = await waitFor(async () => {
      const z = await getCr(zoneResource, "fild");
      return cond(z, "Ready")?.status === "True" ? z : undefined;
    }, "zone Ready");
    expect(z.status?.observedGeneration).toBe(z.metadata.generation);
    expect(z.status?.replicas).toMatchObject({ desired: 2 });
  });

  it("says a Zone lost a map server (status and a Warning Event) and recovers when it is back", async () => {
    // What the StatefulSet controller reports after a pod is evicted or killed.
    const live = await client.get<KubeObject>(resources.statefulSet, ns, "fild-map-server");
    await client.patchStatus(resources.statefulSet, ns, "fild-map-server", {
      observedGeneration: live!.metadata.generation,
      replicas: 2,
      readyReplicas: 1,
      availableReplicas: 1,
      updatedReplicas: 2,
    });
    const lost = await waitFor(async () => {
      const z = await getCr(zoneResource, "fild");
      return cond(z, "Ready")?.status === "False" ? z : undefined;
    }, "zone not Ready");
    expect(cond(lost, "Ready")).toMatchObject({
      reason: "ReplicasUnavailable",
      message: "replicas lost, waiting for fild-map-server (1/2)",
    });
    expect(cond(lost, "Reconciling")?.status).toBe("True");
    const ev = await eventFor("Zone", "fild", "ReplicasUnavailable");
    expect(ev.message).toContain("fild-map-server (1/2)");
    await markAvailable(resources.statefulSet, "fild-map-server");
    await waitFor(async () => {
      const z = await getCr(zoneResource, "fild");
      return cond(z, "Ready")?.status === "True" ? z : undefined;
    }, "zone Ready again");
  });

  it("restores a deleted child", async () => {
    const before = await client.get(resources.service, ns, "alpha-coordinator");
    await client.delete(resources.service, ns, "alpha-coordinator");
    const after = await waitFor(async () => {
      const s = await client.get(resources.service, ns, "alpha-coordinator");
      return s && s.metadata.uid !== before!.metadata.uid ? s : undefined;
    }, "re-created service");
    expect(after.metadata.ownerReferences?.[0]?.name).toBe("alpha");
    const ev = await eventFor("Region", "alpha", "DriftCorrected");
    expect(ev.message).toContain("Service/alpha-coordinator (re-created)");
  });

  it("restores an edited child", async () => {
    // Another manager takes over replicas and the image (what `kubectl edit` would do).
    await client.request("PATCH", "/apis/apps/v1/namespaces/op-int/deployments/alpha-login-server", {
      query: { fieldManager: "someone-else" },
      body: {
        spec: {
          replicas: 5,
          template: { spec: { containers: [{ name: "login-server", image: "evil:latest" }] } },
        },
      },
      contentType: "application/strategic-merge-patch+json",
    });
    await waitFor(async () => {
      const d = await client.get<Workload>(resources.deployment, ns, "alpha-login-server");
      return d?.spec.replicas === 1 && d.spec.template.spec.containers[0]?.image !== "evil:latest";
    }, "deployment restored");
  });

  it("propagates spec updates (replicas, image) to children", async () => {
    await userApply(
      region("alpha", { gateway: { replicas: 3 }, images: { workload: "example.org/workload:2.0" } }),
    );
    await waitFor(async () => {
      const d = await client.get<Workload>(resources.deployment, ns, "alpha-gateway");
      return (
        d?.spec.replicas === 3 && d.spec.template.spec.containers[0]?.image === "example.org/workload:2.0"
      );
    }, "gateway updated");
    // The Region's image reaches its Zones' map servers too.
    await waitFor(async () => {
      const s = await client.get<Workload>(resources.statefulSet, ns, "fild-map-server");
      return s?.spec.template.spec.containers[0]?.image === "example.org/workload:2.0";
    }, "map server image updated");
    const r = await waitFor(async () => {
      const r = await getCr(regionResource, "alpha");
      return r?.status?.observedGeneration === r?.metadata.generation ? r : undefined;
    }, "observedGeneration caught up");
    expect(cond(r, "Reconciling")?.status).toBe("True"); // the new gateway replicas are not available yet
  });

  it("stalls a Zone whose Region is missing, naming it, and recovers when it appears", async () => {
    await userApply(zone("orphan", "beta"));
    const stalled = await waitFor(async () => {
      const z = await getCr(zoneResource, "orphan");
      return cond(z, "Stalled")?.status === "True" ? z : undefined;
    }, "zone Stalled");
    expect(cond(stalled, "Stalled")).toMatchObject({ reason: "RegionNotFound" });
    expect(cond(stalled, "Stalled")?.message).toContain('Region "beta"');
    expect(cond(stalled, "Ready")?.status).toBe("False");
    const ev = await eventFor("Zone", "orphan", "RegionNotFound");
    expect(ev.type).toBe("Warning");
    await userApply(region("beta"));
    await waitFor(
      () => client.get(resources.statefulSet, ns, "orphan-map-server"),
      "zone children after region appears",
    );
    await waitFor(
      async () => cond(await getCr(zoneResource, "orphan"), "Stalled")?.status === "False",
      "un-stalled",
    );
    await eventFor("Zone", "orphan", "Recovered");
  });

  it("stalls a Zone whose children the apiserver rejects, with the apiserver's reason", async () => {
    // Valid as a Zone (any resource name may be requested), refused in the StatefulSet's pod
    // template: an extended resource needs a limit. The schema cannot know every such rule.
    const name = "widgets";
    await userApply(
      zone(name, "alpha", { mapServer: { resources: { requests: { "example.com/widgets": "1" } } } }),
    );
    const stalled = await waitFor(async () => {
      const z = await getCr(zoneResource, name);
      return cond(z, "Stalled")?.status === "True" ? z : undefined;
    }, "zone Stalled on a rejected child");
    expect(cond(stalled, "Stalled")?.reason).toBe("ApplyRejected");
    expect(cond(stalled, "Stalled")?.message).toContain(`${name}-map-server`);
    await client.request("DELETE", `/apis/${API_VERSION}/namespaces/${ns}/zones/${name}`);
  });

  it("stalls a Zone again when its Region is deleted", async () => {
    await client.request("DELETE", `/apis/${API_VERSION}/namespaces/${ns}/regions/beta`);
    await waitFor(
      async () => cond(await getCr(zoneResource, "orphan"), "Stalled")?.reason === "RegionNotFound",
      "re-stalled",
    );
  });

  it("counts its Zones by mode and reports Degraded while some are in fallback", async () => {
    // The flag plane owns Zone mode; play it here.
    await client.patchStatus(zoneResource, ns, "fild", {
      mode: "Fallback",
      fallbackReason: "coordinator unreachable",
    });
    const degraded = await waitFor(async () => {
      const r = await getCr(regionResource, "alpha");
      return cond(r, "Degraded")?.status === "True" ? r : undefined;
    }, "region Degraded");
    expect(degraded.status?.zones).toMatchObject({ total: 1, fallback: 1 });
    expect(cond(degraded, "Degraded")?.reason).toBe("ZonesInFallback");
    await client.patchStatus(zoneResource, ns, "fild", { mode: "P2P", fallbackReason: null });
    await waitFor(
      async () => cond(await getCr(regionResource, "alpha"), "Degraded")?.status === "False",
      "not Degraded",
    );
    // The operator's own status fields survive the other writer's (merge patches of disjoint fields).
    expect((await getCr(zoneResource, "fild"))?.status?.replicas).toMatchObject({ desired: 2 });
  });

  it("stalls a Region whose external-store Secret is missing, naming it, and recovers when it appears", async () => {
    await userApply(
      region("gamma", {
        dataStores: {
          postgres: {
            mode: "External",
            external: { endpoints: ["db.example:5432"], secretRef: { name: "pg-creds" } },
          },
        },
      }),
    );
    const stalled = await waitFor(async () => {
      const r = await getCr(regionResource, "gamma");
      return cond(r, "Stalled")?.status === "True" ? r : undefined;
    }, "region Stalled");
    expect(cond(stalled, "Stalled")).toMatchObject({ reason: "SecretNotFound" });
    expect(cond(stalled, "Stalled")?.message).toContain('Secret "pg-creds"');
    await client.apply({
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: "pg-creds", namespace: ns },
      stringData: { username: "u", password: "p" },
    });
    await waitFor(
      async () => cond(await getCr(regionResource, "gamma"), "Stalled")?.status === "False",
      "un-stalled",
      30_000,
    );
    const d = await waitFor(
      () => client.get<Workload>(resources.deployment, ns, "gamma-char-server"),
      "children",
    );
    const envs = d.spec.template.spec.containers[0]!.env.map((e) => e.name);
    expect(envs).toContain("HYBRIDP2P_POSTGRES_PASSWORD");
    expect(await client.get(resources.statefulSet, ns, "gamma-postgres")).toBeUndefined();
  });

  it("sends no writes once converged, even on resync", async () => {
    // Converge: every workload available, every status current.
    for (const d of (await client.list(resources.deployment, ns)).items)
      await markAvailable(resources.deployment, d.metadata.name);
    for (const s of (await client.list(resources.statefulSet, ns)).items)
      await markAvailable(resources.statefulSet, s.metadata.name);
    const writes = async () => {
      const text = await (await fetch(`http://127.0.0.1:${mgr.metricsPort}/metrics`)).text();
      return text
        .split("\n")
        .filter((l) => l.startsWith("hybridp2p_kube_api_writes_total{"))
        .reduce((sum, l) => sum + Number(l.split(" ").pop()), 0);
    };
    // Settled: the write count stays put over two 1.5 s windows in a row (a busy machine's late
    // status write must not land in the resync's window below).
    let last = -1;
    let still = 0;
    await waitFor(
      async () => {
        const now = await writes();
        still = now === last ? still + 1 : 0;
        last = now;
        if (still < 2) await sleep(1500);
        return still >= 2;
      },
      "writes to settle",
      60_000,
    );
    const before = await writes();
    mgr.resync();
    await sleep(3000);
    expect(await writes()).toBe(before);
  });
});
