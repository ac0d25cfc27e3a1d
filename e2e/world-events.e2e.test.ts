import { KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { KubeClient } from "../platform/kube/kube.ts";
import { sleep } from "../platform/time.ts";
import { computeStatus, type KObject } from "../testkit/kstatus.ts";
import { type BotFleet, runBots } from "../workloads/client/bots.ts";
import type { GameClient } from "../workloads/client/client.ts";
import { clusterTools, createKeysetSecret, installChart, regionTls, uninstallChart, waitFor } from "./kit.ts";

const kubeconfig = inject("kubeconfig");
const { helm, hybridctl, newKeyset } = clusterTools(kubeconfig);
const OPERATOR_NS = "hybrid-p2p-world";
const RELEASE = "hp-world";
const REGIONS = ["wev-east", "wev-west"] as const;
const TOWN = "prontera";
const LABEL = "hybridp2p.io/e2e-world";
const EVENTS_NS = "wev-ops";
const G = "/apis/hybridp2p.io/v1alpha1";
const small = { requests: { cpu: "40m" } };
let client: KubeClient;
let installed = false;
const fleets: BotFleet[] = [];

const get = <T = KObject>(path: string) => client.request<T>("GET", path);
const apply = (path: string, obj: unknown) =>
  client.request("PATCH", path, {
    query: { fieldManager: "e2e", force: true },
    body: obj,
    contentType: "application/apply-patch+yaml",
  });

interface Pod {
  metadata: { name: string; namespace: string; labels?: Record<string, string> };
  status?: { podIP?: string; conditions?: { type: string; status: string }[] };
}
const podReady = (p: Pod) => p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True");
const pods = async (ns: string | undefined, selector: string) =>
  (
    await get<{ items: Pod[] }>(
      `/api/v1/${ns ? `namespaces/${ns}/` : ""}pods?labelSelector=${encodeURIComponent(selector)}`,
    )
  ).items;
const ip = async (ns: string, component: string) =>
  waitFor(`a ready ${component} pod in ${ns}`, async () => {
    const ready = (await pods(ns, `app.kubernetes.io/component=${component}`)).filter(podReady);
    return ready[0]?.status?.podIP;
  });

interface EventStatus {
  phase?: string;
  regions?: Array<{ name: string; state: string; reason?: string; endTime?: string }>;
}
const event = async (name: string) =>
  (await get<KObject & { status?: EventStatus }>(`${G}/namespaces/${EVENTS_NS}/worldevents/${name}`))
    .status ?? {};

/** The pod that holds the orchestrator's Lease. */
async function leader(): Promise<string | undefined> {
  const leases = await get<{
    items: Array<{ metadata: { namespace: string }; spec?: { holderIdentity?: string } }>;
  }>("/apis/coordination.k8s.io/v1/leases?fieldSelector=metadata.name%3Dhybrid-orchestrator");
  return leases.items[0]?.spec?.holderIdentity?.replace(/-\d+$/, "");
}

async function bots(region: string, count: number, prefix: string): Promise<GameClient[]> {
  const fleet = await runBots({
    count,
    gatewayUrl: `wss://${await ip(region, "gateway")}:7000`,
    maps: [TOWN],
    accounts: {
      loginUrl: `https://${await ip(region, "login-server")}:6900`,
      charUrl: `https://${await ip(region, "char-server")}:6121`,
    },
    // Each Region (named as its namespace here) has its own CA.
    tls: await regionTls(client, region, region),
    decodeMode: "full",
    moveEveryMs: 0,
    idPrefix: prefix,
    failFast: true,
  });
  fleets.push(fleet);
  expect(fleet.stats()).toMatchObject({ connected: count, failed: 0 });
  return fleet.clients;
}

const sees = (c: GameClient, mob: string) => [...c.world.values()].some((e) => e.name === mob && e.alive);
const heard = (c: GameClient, text: string) => c.announcements.filter((a) => a.text === text).length;

beforeAll(async () => {
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  client = await new KubeClient(kc).init();
});

afterAll(async () => {
  for (const f of fleets) await f.stop().catch(() => undefined);
  for (const ns of [...REGIONS, EVENTS_NS])
    await client?.request("DELETE", `/api/v1/namespaces/${ns}`).catch(() => {});
  if (installed) {
    await uninstallChart(client, helm, RELEASE, OPERATOR_NS);
  }
  client?.close();
}, 300_000);

describe("world events across two Regions on the cluster", () => {
  const east: GameClient[] = [];
  const west: GameClient[] = [];

  // Everything below needs both Regions playing: set up before the tests, so a failure stops them.
  beforeAll(async () => {
    const orchestrators = await get<{ items: unknown[] }>(
      `/apis/apps/v1/deployments?labelSelector=${encodeURIComponent("app.kubernetes.io/name=hybrid-orchestrator")}`,
    );
    if (orchestrators.items.length === 0) {
      await installChart(client, helm, RELEASE, OPERATOR_NS);
      installed = true;
    }
    const keyset = newKeyset();
    await client.request("POST", "/api/v1/namespaces", { body: { metadata: { name: EVENTS_NS } } });
    for (const r of REGIONS) {
      await client.request("POST", "/api/v1/namespaces", { body: { metadata: { name: r } } });
      await createKeysetSecret(client, r, r, keyset);
      await apply(`${G}/namespaces/${r}/regions/${r}`, {
        apiVersion: "hybridp2p.io/v1alpha1",
        kind: "Region",
        metadata: { name: r, namespace: r, labels: { [LABEL]: "yes" } },
        // Small CPU requests: two whole Regions, the operator and the orchestrators share one
        // node of two cores here (the defaults ask for more than that).
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
      await apply(`${G}/namespaces/${r}/zones/town`, {
        apiVersion: "hybridp2p.io/v1alpha1",
        kind: "Zone",
        metadata: { name: "town", namespace: r, labels: { "hybridp2p.io/zone-type": "town" } },
        spec: {
          regionRef: { name: r },
          maps: [{ name: TOWN, type: "Town" }],
          mapServer: { replicas: 1, resources: { requests: { cpu: "100m" } } },
        },
      });
    }
    for (const r of REGIONS) {
      await waitFor(`${r}'s town Ready`, async () => {
        const z = await get<KObject & { status?: { conditions?: { type: string; status: string }[] } }>(
          `${G}/namespaces/${r}/zones/town`,
        );
        const ready = z.status?.conditions?.find((c) => c.type === "Ready")?.status === "True";
        return ready && computeStatus(z).status === "Current" ? z : undefined;
      });
    }
    await waitFor("two orchestrator pods ready, one leading", async () => {
      const ready = (await pods(undefined, "app.kubernetes.io/name=hybrid-orchestrator")).filter(podReady);
      return ready.length === 2 && (await leader()) ? true : undefined;
    });
    east.push(...(await bots("wev-east", 2, `we${Date.now().toString(36)}`)));
    west.push(...(await bots("wev-west", 2, `ww${Date.now().toString(36)}`)));
    // Both Regions' map servers have their players (not only Ready Zones).
    for (const c of [...east, ...west]) expect(c.map).toBe(TOWN);
  }, 900_000);

  it("brings a boss to both Regions once, through a killed orchestrator, and ends it on time", async () => {
    const all = [...east, ...west];
    expect([east.length, west.length]).toEqual([2, 2]);
    const seen = all.map((c) => {
      const ids = new Set<number>();
      c.onMessage((m) => {
        if (m.type === "aoi") for (const e of m.enter) if (e.name === "angeling") ids.add(e.id);
      });
      return ids;
    });
    const message = "Angeling descends on Prontera!";
    hybridctl([
      "events",
      "create",
      "angeling",
      "-n",
      EVENTS_NS,
      "--type",
      "Boss",
      "--mob",
      "angeling",
      // Next to where new characters start (the char server's start point, prontera 156,191).
      "--x",
      "156",
      "--y",
      "194",
      "--map",
      TOWN,
      "--message",
      message,
      "--region-selector",
      `${LABEL}=yes`,
      "--duration",
      "90s",
    ]);
    await waitFor("every bot hears it and sees the boss", async () =>
      all.every((c) => heard(c, message) === 1 && sees(c, "angeling")) ? true : undefined,
    );
    const active = await waitFor("both Regions Active", async () => {
      const s = await event("angeling");
      return s.regions?.length === 2 && s.regions.every((r) => r.state === "Active") ? s : undefined;
    });
    expect(hybridctl(["events", "list", "-n", EVENTS_NS])).toMatch(/angeling\s+Boss\s+Active\s+2\/2/);
    const endsAt = Date.parse(active.regions![0]!.endTime!);

    // Kill the leader: its pod goes at once; the standby takes the Lease.
    const first = (await leader())!;
    await client
      .request("DELETE", `/api/v1/namespaces/${OPERATOR_NS}/pods/${first}`, {
        query: { gracePeriodSeconds: 0 },
      })
      .catch(async () => {
        // Installed by another file's release: find the pod's namespace.
        const p = (await pods(undefined, "app.kubernetes.io/name=hybrid-orchestrator")).find(
          (x) => x.metadata.name === first,
        )!;
        await client.request("DELETE", `/api/v1/namespaces/${p.metadata.namespace}/pods/${first}`, {
          query: { gracePeriodSeconds: 0 },
        });
      });
    await waitFor("the standby leads", async () => {
      const l = await leader();
      return l && l !== first ? l : undefined;
    });
    await sleep(Math.max(0, endsAt - Date.now() - 3000));
    expect(all.every((c) => sees(c, "angeling"))).toBe(true);
    await waitFor("the boss gone everywhere", async () =>
      all.every((c) => !sees(c, "angeling")) ? true : undefined,
    );
    expect(Date.now() - endsAt).toBeLessThan(5000);
    for (const s of seen) expect(s.size).toBe(1);
    for (const c of all) expect(heard(c, message)).toBe(1);
    const done = await waitFor("status Ended", async () => {
      const s = await event("angeling");
      return s.phase === "Ended" ? s : undefined;
    });
    expect(done.regions!.map((r) => r.reason)).toEqual(["Completed", "Completed"]);
  });

  it("fires a population-triggered event in the Region that reaches the threshold", async () => {
    const message = "Prontera is crowded: double experience!";
    hybridctl([
      "events",
      "create",
      "crowd",
      "-n",
      EVENTS_NS,
      "--type",
      "Rates",
      "--exp",
      "2",
      "--map",
      TOWN,
      "--message",
      message,
      "--region-selector",
      `${LABEL}=yes`,
      "--min-players",
      "3",
      "--duration",
      "5m",
    ]);
    await waitFor("both Regions Waiting", async () => {
      const s = await event("crowd");
      return s.regions?.length === 2 && s.regions.every((r) => r.state === "Waiting") ? true : undefined;
    });
    east.push(...(await bots("wev-east", 1, `wx${Date.now().toString(36)}`)));
    await waitFor("every bot of the east hears it", async () =>
      east.every((c) => heard(c, message) === 1) ? true : undefined,
    );
    const s = await waitFor("east Active, west Waiting", async () => {
      const st = await event("crowd");
      const byName = new Map(st.regions?.map((r) => [r.name, r.state]));
      return byName.get("wev-east") === "Active" && byName.get("wev-west") === "Waiting" ? st : undefined;
    });
    expect(s.phase).toBe("Active");
    expect(west.every((c) => heard(c, message) === 0)).toBe(true);
    hybridctl(["events", "cancel", "crowd", "-n", EVENTS_NS]);
    await waitFor("cancelled", async () => ((await event("crowd")).phase === "Ended" ? true : undefined));
  });
});
