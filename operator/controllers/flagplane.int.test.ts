// The operator with the flag plane wired in: the leader compiles Regions, Zones and
// P2PPolicies from the operator's caches and publishes them to etcd; a follower does not. Each
// Region's flags go to its own flag store, fenced and numbered per store, and a Region whose
// store is down is Degraded without holding the others up.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Etcd3 } from "etcd3";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { FlagClient } from "../../platform/flags/client.ts";
import { layout, parsePublishedZone } from "../../platform/flags/layout.ts";
import { FIELD_MANAGER, type KubeClient, resources } from "../../platform/kube/kube.ts";
import type { Manager } from "../../platform/kube/manager.ts";
import type { KubeObject } from "../../platform/kube/meta.ts";
import { silentLogger } from "../../platform/log.ts";
import { connectNats, etcdOptions } from "../../platform/stores/access.ts";
import { startTestEtcd } from "../../testkit/flags.ts";
import { createNamespace, deleteNamespace, installCrds, testClient, waitFor } from "../../testkit/kube.ts";
import { storePki } from "../../testkit/local/services.ts";
import { freePort } from "../../testkit/processes.ts";
import { API_VERSION, type ZoneStatus } from "../api/index.ts";
import { readPointer } from "../flags/publisher.ts";
import { startOperator } from "../main.ts";
import { policyResource, regionResource, zoneResource } from "./context.ts";

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
    flagsNatsUrl: env.natsUrl!,
    flagsPrefix: prefix,
    log: silentLogger(),
  });
  running.push(m);
  return m;
};

beforeAll(async () => {
  client = await testClient(env.kubeconfig!);
  etcd = new Etcd3(etcdOptions(env.etcd!));
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
      // Server: the policy's last state (a status from the first publish may still stand a while).
      return s?.mode === "Server" && s.replicas?.desired === 1 && s.replicas.applied === 0 && s.conditions
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

  it("makes a map server's rejected flag document a Warning Event on its Zone", async () => {
    // The objects and the leader of the first test; a map-server pod of Zone "fields".
    const nc = await connectNats(env.nats!);
    const pod = new FlagClient({
      client: etcd,
      nats: nc,
      prefix,
      namespace: ns,
      zone: "fields",
      service: "map-server",
      pod: "fields-0",
      log: { error: () => {}, warn: () => {}, info: () => {} },
    });
    try {
      await pod.start();
      const kept = pod.current().epoch;
      expect(kept).toBeGreaterThan(0);
      // Written by hand, straight into the store.
      await etcd.put(layout(prefix).zoneKey(ns, "fields")).value(`{"epoch":${kept + 1}, not json`);
      const ev = await waitFor(async () => {
        const list = await client.list<KubeObject & { reason: string; message: string; type: string }>(
          resources.event,
          ns,
        );
        return list.items.find((e) => e.reason === "FlagDocumentRejected");
      }, "a FlagDocumentRejected Event");
      expect(ev.type).toBe("Warning");
      expect(ev.message).toContain(`pod fields-0 could not read the flag documents of epoch ${kept + 1}`);
      expect(ev.message).toContain(`keeps epoch ${kept}`);
    } finally {
      await pod.close();
      await nc.close();
    }
  });

  it("publishes each Region's zones to the Region's own store, fenced and numbered per store; a Region whose store is down is Degraded, the others go on", async () => {
    const ns2 = "flagplane-stores";
    const prefix2 = `/hybridp2p-stores-${Date.now()}/v1/`;
    const dir = mkdtempSync(join(tmpdir(), "flagplane-stores-"));
    const west = await startTestEtcd(dir, "west-etcd", storePki(join(env.stateDir, "store-pki")));
    const westEtcd = new Etcd3(etcdOptions(west.access));
    try {
      await createNamespace(client, ns2);
      const m = await startOperator({
        kubeconfig: env.kubeconfig!,
        namespace: ns2,
        leaderElect: false,
        identity: "stores",
        metricsBindAddress: "0",
        healthProbeBindAddress: "0",
        flagsPrefix: prefix2,
        log: silentLogger(),
      });
      running.push(m);
      const apply = (plural: string, obj: KubeObject) =>
        client.request("PATCH", `/apis/${API_VERSION}/namespaces/${ns2}/${plural}/${obj.metadata.name}`, {
          query: { fieldManager: "test-user", force: true },
          body: obj,
          contentType: "application/apply-patch+yaml",
        });
      const region = (name: string, etcdEndpoint: string): KubeObject => ({
        apiVersion: API_VERSION,
        kind: "Region",
        metadata: { name, namespace: ns2 },
        spec: {
          dataStores: {
            etcd: { mode: "External", external: { endpoints: [etcdEndpoint] } },
            nats: { mode: "External", external: { endpoints: [env.natsUrl!] } },
          },
        },
      });
      const zone = (name: string, r: string): KubeObject => ({
        apiVersion: API_VERSION,
        kind: "Zone",
        metadata: { name, namespace: ns2, labels: { tier: "field" } },
        spec: { regionRef: { name: r }, maps: [{ name: name.replace(/-/g, "_"), type: "Field" }] },
      });
      await apply("regions", region("east", env.etcdEndpoints!));
      await apply("regions", region("west", west.endpoint));
      await apply("regions", region("gone", `https://127.0.0.1:${await freePort()}`)); // nothing listens
      for (const [z, r] of [
        ["east-a", "east"],
        ["east-b", "east"],
        ["west-a", "west"],
        ["gone-a", "gone"],
      ] as const)
        await apply("zones", zone(z, r));
      const policy = (enabled: boolean): KubeObject => ({
        apiVersion: API_VERSION,
        kind: "P2PPolicy",
        metadata: { name: "fields", namespace: ns2 },
        spec: { zoneSelector: { matchLabels: { tier: "field" } }, enabled },
      });
      await apply("p2ppolicies", policy(true));
      const l = layout(prefix2);
      const zonesIn = async (e: Etcd3) =>
        (await e.getAll().prefix(l.zonesPrefix(ns2)).keys()).map((k) => k.split("/").at(-1));
      // The live publish of a store once its zone `z` says P2P is `enabled`.
      const live = (e: Etcd3, z: string, enabled: boolean) =>
        waitFor(
          async () => {
            const p = (await readPointer(e, l)).pointer;
            const raw = await e.get(l.zoneKey(ns2, z)).string();
            const doc = raw === null ? undefined : parsePublishedZone(z, raw);
            return p && doc?.enabled === enabled && doc.publish === p.publish ? p : undefined;
          },
          `${z} published with P2P ${enabled ? "on" : "off"}`,
        );
      const eastP = await live(etcd, "east-a", true);
      const westP = await live(westEtcd, "west-a", true);
      expect(await zonesIn(etcd)).toEqual(["east-a", "east-b"]); // only its own Region's zones
      expect(await zonesIn(westEtcd)).toEqual(["west-a"]);
      const degraded = await waitFor(async () => {
        const r = await client.get<
          Cr & {
            status?: { conditions?: { type: string; status: string; reason: string; message: string }[] };
          }
        >(regionResource, ns2, "gone");
        return r?.status?.conditions?.find((c) => c.type === "Degraded" && c.status === "True");
      }, "the Region whose store is down is Degraded");
      expect(degraded.reason).toBe("FlagStoreUnavailable");
      expect(degraded.message).toMatch(/flag store .*127\.0\.0\.1.* unavailable/);
      for (const name of ["east", "west"]) {
        const r = await client.get<Cr & { status?: { conditions?: { type: string; status: string }[] } }>(
          regionResource,
          ns2,
          name,
        );
        expect(r?.status?.conditions?.find((c) => c.type === "Degraded")?.status).not.toBe("True");
      }

      // A toggle reaches both live stores, each counting its own epochs.
      await apply("p2ppolicies", policy(false));
      const eastNext = await live(etcd, "east-a", false);
      const westNext = await live(westEtcd, "west-a", false);
      expect([eastNext.epoch, westNext.epoch]).toEqual([eastP.epoch + 1, westP.epoch + 1]);
      // A change in one Region publishes only to its store.
      await apply("zones", {
        ...zone("west-a", "west"),
        metadata: {
          ...zone("west-a", "west").metadata,
          annotations: { "hybridp2p.io/force-fallback": "test" },
        },
      });
      await waitFor(
        async () => ((await readPointer(westEtcd, l)).pointer?.epoch ?? 0) > westNext.epoch,
        "west's third epoch",
      );
      expect((await readPointer(etcd, l)).pointer?.epoch).toBe(eastNext.epoch);
      // The policy names the epoch per Region.
      const p = await waitFor(async () => {
        const o = await client.get<Cr & { status?: { epochs?: { region: string; epoch: number }[] } }>(
          policyResource,
          ns2,
          "fields",
        );
        const east = o?.status?.epochs?.find((e) => e.region === "east")?.epoch;
        return o?.status?.epochs?.length === 3 && east === eastNext.epoch ? o : undefined;
      }, "policy epochs per Region");
      expect(p.status!.epochs!.find((e) => e.region === "gone")?.epoch).toBe(0); // never published there
    } finally {
      westEtcd.close();
      await west.stop();
      rmSync(dir, { recursive: true, force: true });
      await deleteNamespace(client, ns2);
    }
  });
});
