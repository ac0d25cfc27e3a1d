// The operator with the flag plane wired in: the leader compiles Regions, Zones and
// P2PPolicies from the operator's caches and publishes them to etcd; a follower does not.
import { Etcd3 } from "etcd3";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { layout } from "../../platform/flags/layout.ts";
import { silentLogger } from "../../platform/log.ts";
import { createNamespace, deleteNamespace, installCrds, testClient, waitFor } from "../../testkit/kube.ts";
import { API_VERSION, type ZoneStatus } from "../api/index.ts";
import type { KubeObject } from "../api/meta.ts";
import { readPointer } from "../flags/publisher.ts";
import { startOperator } from "../main.ts";
import { FIELD_MANAGER, type KubeClient } from "../runtime/kube.ts";
import type { Manager } from "../runtime/manager.ts";
import { policyResource, zoneResource } from "./context.ts";

interface Cr extends KubeObject {
  metadata: KubeObject["metadata"] & { managedFields?: { manager: string; subresource?: string }[] };
}

const env = inject("localEnv");
const ns = "flagplane-int";
const prefix = `/hybridp2p-test-${Date.now()}/v1/`;
let client: KubeClient;
let etcd: Etcd3;
const running: Manager[] = [];

async function userApply(plural: string, obj: KubeObject): Promise<void> {
  await client.request("PATCH", `/apis/${API_VERSION}/namespaces/${ns}/${plural}/${obj.metadata.name}`, {
    query: { fieldManager: "test-user", force: true },
    body: obj,
    contentType: "application/apply-patch+yaml",
  });
}

const operator = async (identity: string) => {
  const m = await startOperator({
    kubeconfig: env.kubeconfig!,
    namespace: ns,
    leaderElect: true,
    identity,
    metricsBindAddress: "0",
    healthProbeBindAddress: "0",
    flagsEtcdEndpoints: env.etcdEndpoints!,
    flagsPrefix: prefix,
    log: silentLogger(),
  });
  running.push(m);
  return m;
};

beforeAll(async () => {
  client = await testClient(env.kubeconfig!);
  etcd = new Etcd3({ hosts: env.etcdEndpoints!.split(",") });
  await installCrds(client);
  await createNamespace(client, ns);
});

afterAll(async () => {
  for (const m of running) await m.stop();
  etcd?.close();
  if (client) await deleteNamespace(client, ns);
  client?.close();
});

describe("flag plane in the operator", () => {
  it("publishes flags from the leader and republishes when a policy changes", async () => {
    const a = await operator("flags-a");
    await waitFor(() => a.isLeader(), "flags-a leads");
    const b = await operator("flags-b");
    await userApply("regions", {
      apiVersion: API_VERSION,
      kind: "Region",
      metadata: { name: "r", namespace: ns },
      spec: {},
    });
    await userApply("zones", {
      apiVersion: API_VERSION,
      kind: "Zone",
      metadata: { name: "fields", namespace: ns, labels: { "hybridp2p.io/zone-type": "field" } },
      spec: { regionRef: { name: "r" }, maps: [{ name: "prt_fild08", type: "Field" }] },
    });
    const policy = (enabled: boolean): KubeObject => ({
      apiVersion: API_VERSION,
      kind: "P2PPolicy",
      metadata: { name: "fields-p2p", namespace: ns },
      spec: { zoneSelector: { matchLabels: { "hybridp2p.io/zone-type": "field" } }, enabled },
    });
    await userApply("p2ppolicies", policy(true));
    const first = await waitFor(
      async () => (await readPointer(etcd, layout(prefix))).pointer,
      "a published epoch",
    );
    expect(first.epoch).toBeGreaterThan(0);
    await userApply("p2ppolicies", policy(false));
    const second = await waitFor(async () => {
      const p = (await readPointer(etcd, layout(prefix))).pointer;
      return p && p.epoch > first.epoch ? p : undefined;
    }, "a newer epoch after the policy changed");
    expect(second.epoch).toBeGreaterThan(first.epoch);
    expect(b.isLeader()).toBe(false);
  });

  it("shares Zone status with the Zone reconciler, one writer per field, every write the operator's", async () => {
    // The objects and the leader of the test above: both writers have a say on this Zone.
    const zone = await waitFor(async () => {
      const z = await client.get<Cr & { status?: ZoneStatus }>(zoneResource, ns, "fields");
      const s = z?.status;
      return s?.mode !== undefined && s.replicas?.desired === 1 && s.replicas.applied === 0 && s.conditions
        ? z
        : undefined;
    }, "Zone status from the flag plane and the Zone reconciler");
    // The flag plane's fields and the reconciler's, neither removing the other's.
    expect(zone.status).toMatchObject({
      mode: "Server",
      replicas: { desired: 1, applied: 0 },
      selector: expect.any(String),
      observedGeneration: zone.metadata.generation,
    });
    const policy = await waitFor(() => client.get<Cr>(policyResource, ns, "fields-p2p"), "the policy");
    for (const o of [zone, policy]) {
      const statusManagers = o.metadata.managedFields
        ?.filter((f) => f.subresource === "status")
        .map((f) => f.manager);
      expect(new Set(statusManagers)).toEqual(new Set([FIELD_MANAGER]));
    }
  });
});
