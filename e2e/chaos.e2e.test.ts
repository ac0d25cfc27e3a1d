// Short chaos runs on the cluster (the long ones are `npm run chaos`, docs/chaos.md): the
// operator's pods killed while a P2PPolicy is toggled, and the Region's NATS pod deleted during
// play. One small Region (TLS, managed stores) serves both.
import { KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { CHILD_RESOURCES } from "../operator/controllers/operator.ts";
import { LEASE_NAME } from "../operator/main.ts";
import { MANAGED_SELECTOR } from "../operator/render/constants.ts";
import { renderZone } from "../operator/render/zone.ts";
import { KubeClient } from "../platform/kube/kube.ts";
import type { KubeObject } from "../platform/kube/meta.ts";
import { sleep } from "../platform/time.ts";
import type { KObject } from "../testkit/kstatus.ts";
import { type BotFleet, runBots } from "../workloads/client/bots.ts";
import { clusterTools, createKeysetSecret, installChart, regionTls, uninstallChart, waitFor } from "./kit.ts";
import { RegionStores } from "./stores.ts";

const kubeconfig = inject("kubeconfig");
const { helm, newKeyset } = clusterTools(kubeconfig);
const OPERATOR_NS = "hybrid-p2p-chaos";
const RELEASE = "hp-chaos";
const NS = "chaos-e2e";
const REGION = "chaos-e2e";
const ZONES = ["town", "field"];
const POLICY = "fields";
const G = "/apis/hybridp2p.io/v1alpha1";
const small = { requests: { cpu: "30m" } };
let client: KubeClient;
const stores = new RegionStores(kubeconfig, NS, REGION);

interface Pod {
  metadata: { name: string; uid: string; deletionTimestamp?: string; labels?: Record<string, string> };
  status?: { podIP?: string; conditions?: { type: string; status: string }[] };
}
type Obj = KObject & {
  metadata: KObject["metadata"] & { uid?: string; ownerReferences?: { uid: string; controller?: boolean }[] };
  status?: { appliedEpoch?: number; conditions?: { type: string; status: string }[] };
};
const get = <T = Obj>(path: string) => client.request<T>("GET", path);
const apply = (path: string, obj: unknown) =>
  client.request("PATCH", path, {
    query: { fieldManager: "e2e", force: true },
    body: obj,
    contentType: "application/apply-patch+yaml",
  });
const podReady = (p: Pod) =>
  !p.metadata.deletionTimestamp &&
  p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True");
const ready = (o: Obj) => o.status?.conditions?.find((c) => c.type === "Ready")?.status === "True";
const pods = async (ns: string, selector: string) =>
  (await get<{ items: Pod[] }>(`/api/v1/namespaces/${ns}/pods?labelSelector=${encodeURIComponent(selector)}`))
    .items;
const operatorPods = () => pods(OPERATOR_NS, "app.kubernetes.io/name=hybrid-operator");
const ip = async (component: string) =>
  waitFor(`a ready ${component} pod`, async () => {
    const ready = (await pods(NS, `app.kubernetes.io/component=${component}`)).filter(podReady);
    return ready[0]?.status?.podIP;
  });

/** Children the operator labels whose controlling owner is gone or no longer renders them. */
async function orphans(): Promise<string[]> {
  const region = await get<KObject & { spec: unknown }>(`${G}/namespaces/${NS}/regions/${REGION}`);
  const zones = (await get<{ items: Obj[] }>(`${G}/namespaces/${NS}/zones`)).items;
  const owners = new Set([region, ...zones].map((o) => (o as Obj).metadata.uid!));
  const zoneUids = new Set(zones.map((z) => z.metadata.uid!));
  const rendered = new Map<string, string>(); // Kind/name -> the owning Zone's uid
  for (const z of zones)
    for (const c of renderZone(
      { apiVersion: "hybridp2p.io/v1alpha1", kind: "Zone", ...z } as never,
      { apiVersion: "hybridp2p.io/v1alpha1", kind: "Region", ...region } as never,
    ))
      rendered.set(`${c.kind}/${c.metadata.name}`, z.metadata.uid!);
  const out: string[] = [];
  for (const rt of CHILD_RESOURCES) {
    const list = await client.list<KubeObject>(rt, NS, { labelSelector: MANAGED_SELECTOR });
    for (const o of list.items) {
      const id = `${rt.kind}/${o.metadata.name}`;
      const owner = o.metadata.ownerReferences?.find((r) => r.controller)?.uid ?? "";
      if (!owners.has(owner) || (zoneUids.has(owner) && rendered.get(id) !== owner)) out.push(id);
    }
  }
  return out;
}

beforeAll(async () => {
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  client = await new KubeClient(kc).init();
  // Two operator replicas with short leader-election timings (a killed leader is replaced
  // after the lease), no world-event orchestrator (not under test; the cores are few).
  await installChart(client, helm, RELEASE, OPERATOR_NS, [
    "--set",
    "replicas=2",
    "--set",
    "leaderElection.leaseDuration=4s",
    "--set",
    "leaderElection.renewDeadline=3s",
    "--set",
    "leaderElection.retryPeriod=1s",
    "--set",
    "orchestrator.enabled=false",
    "--wait",
    "--timeout",
    "300s",
  ]);
  await client.request("POST", "/api/v1/namespaces", { body: { metadata: { name: NS } } });
  await createKeysetSecret(client, NS, REGION, newKeyset());
  await apply(`${G}/namespaces/${NS}/regions/${REGION}`, {
    apiVersion: "hybridp2p.io/v1alpha1",
    kind: "Region",
    metadata: { name: REGION, namespace: NS },
    spec: {
      gateway: { replicas: 1, resources: small },
      coordinator: { replicas: 1, resources: small },
      loginServer: { replicas: 1, resources: small },
      charServer: { replicas: 1, resources: small },
      dataStores: Object.fromEntries(
        ["etcd", "nats", "postgres", "dragonfly"].map((s) => [
          s,
          { mode: "Managed", managed: { resources: small } },
        ]),
      ),
    },
  });
  for (const [z, type, map] of [
    ["town", "town", "prontera"],
    ["field", "field", "prt_fild08"],
  ] as const)
    await apply(`${G}/namespaces/${NS}/zones/${z}`, {
      apiVersion: "hybridp2p.io/v1alpha1",
      kind: "Zone",
      metadata: { name: z, namespace: NS, labels: { "hybridp2p.io/zone-type": type } },
      spec: {
        regionRef: { name: REGION },
        maps: [{ name: map, type: type === "town" ? "Town" : "Field" }],
        mapServer: { replicas: 1, resources: { requests: { cpu: "50m" } } },
      },
    });
  await apply(`${G}/namespaces/${NS}/p2ppolicies/${POLICY}`, {
    apiVersion: "hybridp2p.io/v1alpha1",
    kind: "P2PPolicy",
    metadata: { name: POLICY, namespace: NS },
    spec: {
      zoneSelector: { matchLabels: { "hybridp2p.io/zone-type": "field" } },
      services: ["map-server", "gateway", "coordinator"],
      enabled: true,
      transports: ["webrtc-datachannel"],
    },
  });
  for (const z of ZONES)
    await waitFor(`zone ${z} Ready`, async () =>
      ready(await get(`${G}/namespaces/${NS}/zones/${z}`)) ? true : undefined,
    );
  await waitFor("the Region Ready", async () =>
    ready(await get(`${G}/namespaces/${NS}/regions/${REGION}`)) ? true : undefined,
  );
}, 600_000);

afterAll(async () => {
  await stores.close();
  await client?.request("DELETE", `/api/v1/namespaces/${NS}`).catch(() => {});
  // The namespace goes while the operator still runs (it owns nothing outside it).
  await waitFor(
    "the namespace gone",
    async () =>
      (await client.request("GET", `/api/v1/namespaces/${NS}`).then(
        () => false,
        () => true,
      ))
        ? true
        : undefined,
    120_000,
  ).catch(() => {});
  await uninstallChart(client, helm, RELEASE, OPERATOR_NS);
  client?.close();
}, 300_000);

describe("chaos, short", () => {
  it("kills the operator's pods while the P2PPolicy is toggled: every zone ends on the last epoch, no orphaned children", async () => {
    const policy = `${G}/namespaces/${NS}/p2ppolicies/${POLICY}`;
    const leader = async () =>
      (
        await get<{ spec?: { holderIdentity?: string } }>(
          `/apis/coordination.k8s.io/v1/namespaces/${OPERATOR_NS}/leases/${LEASE_NAME}`,
        ).catch(() => undefined)
      )?.spec?.holderIdentity;
    let enabled = true;
    let beforeLast = 0;
    const kills = 4;
    for (let i = 0; i < kills; i++) {
      await waitFor("two ready operator pods", async () =>
        (await operatorPods()).filter(podReady).length === 2 ? true : undefined,
      );
      beforeLast = await stores.epoch();
      enabled = !enabled;
      await client.request("PATCH", policy, {
        body: { spec: { enabled } },
        contentType: "application/merge-patch+json",
      });
      // At a random moment of the publish: the leader alone, or (every other round) both pods.
      await sleep(Math.random() * 1500);
      const live = (await operatorPods()).filter((p) => !p.metadata.deletionTimestamp);
      const held = await leader();
      const victims = i % 2 === 1 ? live : live.filter((p) => held?.startsWith(p.metadata.name));
      for (const v of victims.length > 0 ? victims : live.slice(0, 1))
        await client.request("DELETE", `/api/v1/namespaces/${OPERATOR_NS}/pods/${v.metadata.name}`, {
          body: { apiVersion: "v1", kind: "DeleteOptions", gracePeriodSeconds: 0 },
        });
    }
    // The last toggle is published (a new epoch after the one before it), every zone's status
    // and pods on that epoch, and it stays the last.
    const last = await waitFor(
      "every zone on the last published epoch",
      async () => {
        const e = await stores.epoch();
        if (e <= beforeLast) return undefined;
        for (const z of ZONES) {
          const s = (await get(`${G}/namespaces/${NS}/zones/${z}`)).status;
          if (s?.appliedEpoch !== e) return undefined;
          const reports = await stores.reports(z);
          const zonePods = (await pods(NS, `hybridp2p.io/zone=${z}`)).filter(podReady);
          if (zonePods.length === 0) return undefined;
          for (const p of zonePods)
            if (!reports.some((r) => r.pod === p.metadata.name && r.epoch === e)) return undefined;
        }
        return e;
      },
      120_000,
    );
    expect(await stores.epoch()).toBe(last);
    expect(await orphans()).toEqual([]);
    await waitFor("two ready operator pods", async () =>
      (await operatorPods()).filter(podReady).length === 2 ? true : undefined,
    );
  });

  describe("the Region's NATS pod deleted during play", () => {
    let fleet: BotFleet | undefined;
    afterAll(async () => {
      await fleet?.stop();
    });

    it("loses no chat, and the bots keep playing", async () => {
      const count = 3;
      fleet = await runBots({
        count,
        gatewayUrl: `wss://${await ip("gateway")}:7000`,
        maps: ["prontera"],
        accounts: {
          loginUrl: `https://${await ip("login-server")}:6900`,
          charUrl: `https://${await ip("char-server")}:6121`,
        },
        tls: await regionTls(client, NS, REGION),
        decodeMode: "full",
        moveEveryMs: 0,
        idPrefix: `ce${Date.now().toString(36)}`,
        failFast: true,
      });
      expect(fleet.stats()).toMatchObject({ connected: count, failed: 0 });
      const bots = fleet.clients;
      // Every chat line each bot hears.
      const heard = bots.map(() => new Set<string>());
      bots.forEach((c, i) => {
        c.onMessage((m) => {
          if (m.type === "chatMsg") heard[i]!.add(m.text);
        });
      });
      const sent: { from: number; text: string }[] = [];
      let n = 0;
      let talking = true;
      const talk = (async () => {
        while (talking) {
          for (const [i, c] of bots.entries()) {
            const text = `e2e chat ${i} ${n}`;
            c.chat(text);
            sent.push({ from: i, text });
          }
          n++;
          await sleep(400);
        }
      })();
      // Everyone hears the others before the fault (a line said while a bot was still joining
      // may reach only some); losses count from here.
      const heardByOthers = (m: { from: number; text: string }) =>
        bots.every((_, i) => i === m.from || heard[i]!.has(m.text));
      await waitFor(
        "chat heard by every other bot",
        async () =>
          sent.length > count * 3 && sent.slice(-count * 3, -count).every(heardByOthers) ? true : undefined,
        60_000,
      );
      const base = sent.length;
      const nats = `${REGION}-nats-0`;
      const uid = (await get<Pod>(`/api/v1/namespaces/${NS}/pods/${nats}`)).metadata.uid;
      const down = sent.length;
      await client.request("DELETE", `/api/v1/namespaces/${NS}/pods/${nats}`);
      await waitFor(
        "the NATS pod back",
        async () => {
          const p = await get<Pod>(`/api/v1/namespaces/${NS}/pods/${nats}`).catch(() => undefined);
          return p && p.metadata.uid !== uid && podReady(p) ? true : undefined;
        },
        90_000,
      );
      // Play goes on once the bus is back: a whole round of lines, said after the pod returned,
      // heard by every other bot.
      const back = sent.length;
      const resumed = await waitFor(
        "chat heard again after the restart",
        async () => {
          for (let r = back; r + count <= sent.length - count; r += count)
            if (sent.slice(r, r + count).every(heardByOthers)) return r;
          return undefined;
        },
        90_000,
      );
      await sleep(3000);
      talking = false;
      await talk;
      // The last lines in flight: those said since play resumed, heard (what is not by then is lost).
      await waitFor(
        "the last lines heard",
        async () => (sent.slice(resumed).every(heardByOthers) ? true : undefined),
        30_000,
      ).catch(() => undefined);
      // Lost: a line said while the bus was up (before the delete, or once play resumed) that
      // some other bot never heard, or a line of the outage that reached some bots but not all
      // (it was on the bus). A line said while the gateway had no bus (its input travels on core
      // NATS) that nobody heard is counted, not lost: the player saw it go nowhere.
      const lost = [...sent.slice(base, down), ...sent.slice(resumed)].filter((m) => !heardByOthers(m));
      const outage = sent.slice(down, resumed);
      const partial = outage.filter(
        (m) => !heardByOthers(m) && bots.some((_, i) => i !== m.from && heard[i]!.has(m.text)),
      );
      const unheard = outage.filter((m) => bots.every((_, i) => i === m.from || !heard[i]!.has(m.text)));
      console.log(
        `chat: ${sent.length - base} lines, ${outage.length} said during the outage (${unheard.length} heard by nobody, ${partial.length} by some only), ${lost.length} lost outside it`,
      );
      expect(lost.map((m) => m.text).slice(0, 10)).toEqual([]);
      expect(partial.map((m) => m.text).slice(0, 10)).toEqual([]);
      expect(fleet.stats()).toMatchObject({ connected: count, failed: 0, seqErrors: 0 });
    });
  });
});
