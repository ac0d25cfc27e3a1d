// End to end through the real API server, etcd and NATS: a P2PPolicy edit, compiled and
// published to the Region's own flag store (its External etcd), applied by every simulated
// map-server replica, acked on the Region's NATS, folded back into Zone and P2PPolicy status,
// with Events on fallback entry and exit.
import { randomUUID } from "node:crypto";
import {
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  PatchStrategy,
  setHeaderOptions,
} from "@kubernetes/client-node";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Etcd3 } from "etcd3";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { FlagClient } from "../../platform/flags/client.ts";
import { connectFlagStore } from "../../platform/flags/etcd.ts";
import { connectNats } from "../../platform/stores/access.ts";
import { eventually, startFlagPlane, type TestFlagPlane } from "../../testkit/flags.ts";
import { createNamespace, installCrds, testClient } from "../../testkit/kube.ts";
import { GROUP, VERSION } from "../api/constants.ts";
import type { Condition } from "../api/index.ts";

const env = inject("localEnv");
const quiet = { error: () => {}, warn: () => {}, info: () => {} };

interface Obj {
  metadata: { name: string; namespace?: string; generation?: number };
  spec?: Record<string, unknown>;
  status?: Record<string, unknown> & { conditions?: { type: string; status: string }[] };
}

describe("flag plane end to end", () => {
  const ns = `flags-${randomUUID().slice(0, 8)}`;
  const prefix = `/test-${randomUUID()}/`;
  let kc: KubeConfig;
  let api: CustomObjectsApi;
  let core: CoreV1Api;
  let etcd: Etcd3;
  let nc: NatsConnection;
  let plane: TestFlagPlane;
  const pods: FlagClient[] = [];

  const get = (plural: string, name: string) =>
    api.getNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: ns,
      plural,
      name,
    }) as Promise<Obj>;
  const create = (plural: string, body: Record<string, unknown>) =>
    api.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural, body });
  const patchSpec = (plural: string, name: string, spec: Record<string, unknown>) =>
    api.patchNamespacedCustomObject(
      { group: GROUP, version: VERSION, namespace: ns, plural, name, body: { spec } },
      setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
    );
  const zone = (name: string, type: string, replicas: number) => ({
    apiVersion: `${GROUP}/${VERSION}`,
    kind: "Zone",
    metadata: { name, namespace: ns, labels: { "hybridp2p.io/zone-type": type.toLowerCase() } },
    spec: {
      regionRef: { name: "r1" },
      maps: [{ name: name.replace(/-/g, "_").slice(0, 11), type }],
      mapServer: { replicas },
    },
  });

  beforeAll(async () => {
    const client = await testClient(env.kubeconfig!);
    await installCrds(client);
    await createNamespace(client, ns);
    kc = new KubeConfig();
    kc.loadFromFile(env.kubeconfig!);
    api = kc.makeApiClient(CustomObjectsApi);
    core = kc.makeApiClient(CoreV1Api);
    etcd = connectFlagStore(env.etcd!);
    nc = await connectNats(env.nats!);
    await create("regions", {
      apiVersion: `${GROUP}/${VERSION}`,
      kind: "Region",
      metadata: { name: "r1", namespace: ns },
      // The Region's own stores, reachable from the test: the flag plane publishes there.
      spec: {
        dataStores: {
          etcd: { mode: "External", external: { endpoints: env.etcdEndpoints!.split(",") } },
          nats: { mode: "External", external: { endpoints: [env.natsUrl!] } },
        },
      },
    });
    await create("zones", zone("fild-a", "Field", 2));
    await create("zones", zone("fild-b", "Field", 1));
    await create("zones", zone("town", "Town", 1));
    await create("p2ppolicies", {
      apiVersion: `${GROUP}/${VERSION}`,
      kind: "P2PPolicy",
      metadata: { name: "fields", namespace: ns },
      spec: { zoneSelector: { matchLabels: { "hybridp2p.io/zone-type": "field" } }, enabled: false },
    });
    plane = await startFlagPlane({
      kubeconfig: env.kubeconfig!,
      identity: "op-test",
      prefix,
      namespace: ns,
    });
    // Simulated map-server replicas: as many as each zone wants.
    for (const [z, n] of [
      ["fild-a", 2],
      ["fild-b", 1],
      ["town", 1],
    ] as const) {
      for (let i = 0; i < n; i++) {
        const c = new FlagClient({
          client: etcd,
          nats: nc,
          prefix,
          namespace: ns,
          zone: z,
          service: "map-server",
          pod: `${z}-${i}`,
          log: quiet,
        });
        await c.start();
        pods.push(c);
      }
    }
  });

  afterAll(async () => {
    for (const p of pods) await p.close();
    await plane?.stop();
    etcd?.close();
    await nc?.close();
  });

  it("turns P2P on by a policy edit: every replica applies the new epoch and Zone and P2PPolicy status say so", async () => {
    await eventually("the first epoch published", () => (plane.lastPublish()?.epoch ?? 0) > 0);
    const e0 = plane.lastPublish()!.epoch;
    await eventually("zone status in Server mode", async () => {
      const z = await get("zones", "fild-a");
      return z.status?.mode === "Server" && z.status.appliedEpoch === e0;
    });

    const t0 = Date.now();
    await patchSpec("p2ppolicies", "fields", { enabled: true });
    const e1 = await eventually("a new epoch", () => {
      const e = plane.lastPublish()?.epoch ?? 0;
      return e > e0 ? e : undefined;
    });
    await eventually("every replica at the new epoch", () => pods.every((p) => p.current().epoch >= e1));
    const toReplicas = Date.now() - t0;
    const fieldPods = pods.filter((p) => p.zoneFlags()?.zone !== "town");
    expect(fieldPods.every((p) => p.current().mode === "p2p")).toBe(true);
    expect(pods.find((p) => p.zoneFlags()?.zone === "town")!.current().mode).toBe("server");

    const a = await eventually("fild-a status P2P at the new epoch", async () => {
      const z = await get("zones", "fild-a");
      return z.status?.mode === "P2P" && z.status.appliedEpoch === e1 ? z : undefined;
    });
    const toStatus = Date.now() - t0;
    expect(a.status).toMatchObject({ policy: "fields", replicas: { applied: 2 } });
    await eventually("town stays Server, at the new epoch", async () => {
      const town = await get("zones", "town");
      return town.status?.mode === "Server" && town.status.appliedEpoch === e1;
    });
    const pol = await eventually("policy status applied", async () => {
      const p = await get("p2ppolicies", "fields");
      return p.status?.appliedZones === 2 && p.status.epoch === e1 ? p : undefined;
    });
    expect(pol.status).toMatchObject({ matchedZones: 2, observedGeneration: pol.metadata.generation });
    expect(pol.status!.conditions!.find((c) => c.type === "Ready")!.status).toBe("True");
    console.log(`policy edit -> every replica reported: ${toReplicas} ms; -> Zone status: ${toStatus} ms`);
  });

  it("forces fallback and clears it, with an Event on entry and exit", async () => {
    await patchSpec("p2ppolicies", "fields", { forceFallback: true });
    const z = await eventually("fild-a in Fallback", async () => {
      const o = await get("zones", "fild-a");
      return o.status?.mode === "Fallback" ? o : undefined;
    });
    expect(z.status!.fallbackReason).toMatch(/forced by policy fields/);
    expect(z.status!.fallbackSince).toBeDefined();
    expect(
      pods.filter((p) => p.zoneFlags()?.zone === "fild-a").every((p) => p.current().mode === "fallback"),
    ).toBe(true);

    await patchSpec("p2ppolicies", "fields", { forceFallback: false });
    const back = await eventually("fild-a back to P2P", async () => {
      const o = await get("zones", "fild-a");
      return o.status?.mode === "P2P" ? o : undefined;
    });
    expect(back.status!.fallbackReason).toBeUndefined();
    const events = await eventually("both Events", async () => {
      const list = await core.listNamespacedEvent({ namespace: ns });
      const reasons = list.items.filter((e) => e.involvedObject.name === "fild-a").map((e) => e.reason);
      return reasons.includes("FallbackEntered") && reasons.includes("FallbackExited")
        ? list.items
        : undefined;
    });
    const entered = events.find((e) => e.reason === "FallbackEntered" && e.involvedObject.name === "fild-a")!;
    expect(entered.type).toBe("Warning");
    expect(entered.involvedObject.kind).toBe("Zone");
    // The same as metrics: the entry counted once with its cause, the zone's mode back to P2P, and
    // the acks of the publishes timed.
    const text = await plane.metrics();
    expect(text).toMatch(
      new RegExp(
        `hybridp2p_zone_fallback_entries_total\\{namespace="${ns}",region="[^"]+",zone="fild-a",cause="forced"\\} 1\n`,
      ),
    );
    expect(text).toMatch(
      new RegExp(`hybridp2p_zone_mode\\{namespace="${ns}",region="[^"]+",zone="fild-a",mode="P2P"\\} 1\n`),
    );
    expect(Number(/hybridp2p_flags_publish_to_ack_seconds_count (\d+)/.exec(text)?.[1])).toBeGreaterThan(0);
  });

  it("folds region-wide pods' zone holds and the coordinator's peer counts into Zone status", async () => {
    const regionPod = async (service: string, pod: string) => {
      const c = new FlagClient({ client: etcd, nats: nc, prefix, namespace: ns, service, pod, log: quiet });
      await c.start();
      return c;
    };
    const gw = await regionPod("gateway", "gw-0");
    const coord = await regionPod("coordinator", "coord-0");
    await eventually("fields in P2P for the gateway", () => gw.zoneMode("fild-a").mode === "p2p");

    gw.triggerZones(["fild-a"], "coordinator", "coordinator unreachable: no replica heard for 600 ms");
    coord.reportZones(new Map([["fild-b", { peers: { connected: 5, meshes: 1, relayed: 2 } }]]));
    const a = await eventually("fild-a in Fallback by the gateway's hold", async () => {
      const o = await get("zones", "fild-a");
      return o.status?.mode === "Fallback" ? o : undefined;
    });
    expect(a.status!.fallbackReason).toBe(
      "coordinator unreachable: no replica heard for 600 ms (gateway: gw-0)",
    );
    const b = await eventually("fild-b peers in status", async () => {
      const o = await get("zones", "fild-b");
      return (o.status?.p2pPeers as { connected?: number } | undefined)?.connected === 5 ? o : undefined;
    });
    expect(b.status).toMatchObject({ mode: "P2P", p2pPeers: { connected: 5, meshes: 1, relayed: 2 } });
    expect((await get("zones", "town")).status?.mode).toBe("Server");

    // The pods go away: their reports (and so the hold and the counts) go with them.
    await gw.close();
    await coord.close();
    await eventually("fild-a back to P2P", async () => (await get("zones", "fild-a")).status?.mode === "P2P");
    await eventually(
      "fild-b peers gone",
      async () => (await get("zones", "fild-b")).status?.p2pPeers === undefined,
    );
  });

  it("reports overlapping policies as conflicts on both, the higher priority governing", async () => {
    await create("p2ppolicies", {
      apiVersion: `${GROUP}/${VERSION}`,
      kind: "P2PPolicy",
      metadata: { name: "everything", namespace: ns },
      spec: { zoneSelector: {}, enabled: false, priority: 10 },
    });
    const p = await eventually("conflicts on the lower-priority policy", async () => {
      const o = await get("p2ppolicies", "fields");
      return (o.status?.conflicts as unknown[] | undefined)?.length === 2 ? o : undefined;
    });
    expect((p.status!.conflicts as { winner: string }[]).every((c) => c.winner === "everything")).toBe(true);
    await eventually("fild-a now governed by everything and off", async () => {
      const o = await get("zones", "fild-a");
      return o.status?.policy === "everything" && o.status.mode === "Server";
    });
  });

  it("surfaces the overlap as a Conflicted condition on each policy, cleared when it ends", async () => {
    const conflicted = async (name: string) =>
      ((await get("p2ppolicies", name)).status?.conditions as Condition[] | undefined)?.find(
        (c) => c.type === "Conflicted",
      );
    // Left by the test above: "everything" (priority 10) overlaps "fields" on both field zones.
    const lost = await eventually("Conflicted True on fields", async () => {
      const c = await conflicted("fields");
      return c?.status === "True" ? c : undefined;
    });
    expect(lost).toMatchObject({
      reason: "Overridden",
      message:
        "overlaps other policies: zones fild-a, fild-b governed by everything instead (higher priority, then name)",
    });
    expect(await conflicted("everything")).toMatchObject({
      status: "True",
      reason: "Overlapping",
      message:
        "overlaps other policies: zones fild-a, fild-b also selected by fields, governed by this policy",
    });
    await api.deleteNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: ns,
      plural: "p2ppolicies",
      name: "everything",
    });
    const cleared = await eventually("Conflicted False on fields", async () => {
      const c = await conflicted("fields");
      return c?.status === "False" ? c : undefined;
    });
    expect(cleared).toMatchObject({ reason: "NoConflict", message: "" });
    expect(Date.parse(cleared.lastTransitionTime)).toBeGreaterThanOrEqual(
      Date.parse(lost.lastTransitionTime),
    );
    expect((await get("p2ppolicies", "fields")).status?.conflicts).toEqual([]);
  });
});
