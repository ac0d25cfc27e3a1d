import { KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { KubeClient } from "../platform/kube/kube.ts";
import { computeStatus, type KObject } from "../testkit/kstatus.ts";
import { clusterTools, createKeysetSecret, installChart, uninstallChart, waitFor } from "./kit.ts";
import { RegionStores } from "./stores.ts";

const kubeconfig = inject("kubeconfig");
const { helm, newKeyset } = clusterTools(kubeconfig);
const OPERATOR_NS = "hybrid-p2p-regions";
const RELEASE = "hp-regions";
const REGIONS = ["east", "west"] as const;
const ZONE = "fild";
const G = "/apis/hybridp2p.io/v1alpha1";
let client: KubeClient;
let installed = false;
const stores = new Map(REGIONS.map((r) => [r, new RegionStores(kubeconfig, r, r)]));
const small = { requests: { cpu: "40m", memory: "96Mi" } };

const get = <T = KObject>(path: string) => client.request<T>("GET", path);
const apply = (path: string, obj: unknown) =>
  client.request("PATCH", path, {
    query: { fieldManager: "e2e", force: true },
    body: obj,
    contentType: "application/apply-patch+yaml",
  });

interface Status {
  mode?: string;
  appliedEpoch?: number;
  replicas?: { desired?: number; applied?: number };
  conditions?: { type: string; status: string; reason?: string; message?: string }[];
}
const zone = (r: string) => get<KObject & { status?: Status }>(`${G}/namespaces/${r}/zones/${ZONE}`);
const setPolicy = (r: string, enabled: boolean) =>
  apply(`${G}/namespaces/${r}/p2ppolicies/fields`, {
    apiVersion: "hybridp2p.io/v1alpha1",
    kind: "P2PPolicy",
    metadata: { name: "fields", namespace: r },
    spec: { zoneSelector: { matchLabels: { tier: "field" } }, enabled },
  });

/** The Region's zone runs `mode` at its store's live epoch: status and every pod's ack. */
async function zoneIn(r: (typeof REGIONS)[number], mode: "P2P" | "Server"): Promise<number | undefined> {
  const s = stores.get(r)!;
  const epoch = await s.epoch();
  const z = (await zone(r)).status ?? {};
  if (epoch === 0 || z.mode !== mode || z.appliedEpoch !== epoch) return undefined;
  if (!z.replicas?.desired || z.replicas.applied !== z.replicas.desired) return undefined;
  const acks = await s.reports(ZONE);
  const want = mode === "P2P" ? "p2p" : "server";
  return acks.length === z.replicas.desired && acks.every((a) => a.epoch === epoch && a.mode === want)
    ? epoch
    : undefined;
}

beforeAll(async () => {
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  client = await new KubeClient(kc).init();
});

afterAll(async () => {
  for (const s of stores.values()) await s.close();
  for (const r of REGIONS) await client?.request("DELETE", `/api/v1/namespaces/${r}`).catch(() => {});
  if (installed) {
    await uninstallChart(client, helm, RELEASE, OPERATOR_NS);
  }
  client?.close();
}, 300_000);

describe("two Regions, each with its own flag store", () => {
  it("comes up from a plain helm install: no flag endpoint set", async () => {
    const operators = await get<{ items: unknown[] }>(
      `/apis/apps/v1/deployments?labelSelector=${encodeURIComponent("app.kubernetes.io/name=hybrid-operator")}`,
    );
    if (operators.items.length === 0) {
      await installChart(client, helm, RELEASE, OPERATOR_NS);
      installed = true;
      helm(["status", RELEASE, "-n", OPERATOR_NS]); // installed; the Deployment rolls out meanwhile
    }
    const keyset = newKeyset();
    for (const r of REGIONS) {
      await client.request("POST", "/api/v1/namespaces", { body: { metadata: { name: r } } });
      await createKeysetSecret(client, r, r, keyset);
      await apply(`${G}/namespaces/${r}/regions/${r}`, {
        apiVersion: "hybridp2p.io/v1alpha1",
        kind: "Region",
        metadata: { name: r, namespace: r },
        // Small requests: two whole Regions (and the operator, the orchestrator, CoreDNS) must
        // fit the local node's 2 CPUs by requests; the defaults ask for 1.05 CPU per Region.
        spec: {
          gateway: { replicas: 1, resources: small },
          coordinator: { replicas: 1, resources: small },
          loginServer: { replicas: 1, resources: small },
          charServer: { replicas: 1, resources: small },
          dataStores: {
            etcd: { mode: "Managed", managed: { resources: small } },
            nats: { mode: "Managed", managed: { resources: small } },
            postgres: { mode: "Managed", managed: { resources: small } },
            dragonfly: { mode: "Managed", managed: { resources: small } },
          },
        },
      });
      await apply(`${G}/namespaces/${r}/zones/${ZONE}`, {
        apiVersion: "hybridp2p.io/v1alpha1",
        kind: "Zone",
        metadata: { name: ZONE, namespace: r, labels: { tier: "field" } },
        spec: {
          regionRef: { name: r },
          maps: [{ name: "prt_fild08", type: "Field" }],
          mapServer: { replicas: 1, resources: { requests: { cpu: "100m", memory: "128Mi" } } },
        },
      });
      await setPolicy(r, false);
    }
    for (const r of REGIONS) {
      await waitFor(`${r}'s zone Ready`, async () => {
        const z = await zone(r);
        const ready = z.status?.conditions?.find((c) => c.type === "Ready")?.status === "True";
        return ready && computeStatus(z).status === "Current" ? z : undefined;
      });
      // Each Region's store has its own publish, and the zone's pod acks it.
      await waitFor(`${r}'s zone in server mode at its store's epoch`, () => zoneIn(r, "Server"));
    }
    for (const r of REGIONS) {
      await waitFor(`${r} not Degraded (its flag store takes publishes)`, async () => {
        const region = await get<KObject & { status?: Status }>(`${G}/namespaces/${r}/regions/${r}`);
        return region.status?.conditions?.find((c) => c.type === "Degraded")?.status === "False"
          ? true
          : undefined;
      });
    }
  });

  it("toggles one Region without touching the other, each store counting its own epochs", async () => {
    const [east, west] = [stores.get("east")!, stores.get("west")!];
    const west0 = await west.epoch();
    const east0 = await east.epoch();

    await setPolicy("east", true);
    const east1 = await waitFor("east in P2P, every pod acked", () => zoneIn("east", "P2P"));
    expect(east1).toBe(east0 + 1);
    expect(await west.epoch()).toBe(west0); // nothing published to west's store
    expect((await zone("west")).status?.mode).toBe("Server");
    expect((await west.reports(ZONE)).every((a) => a.mode === "server" && a.epoch === west0)).toBe(true);

    await setPolicy("west", true);
    const west1 = await waitFor("west in P2P, every pod acked", () => zoneIn("west", "P2P"));
    expect(west1).toBe(west0 + 1);
    expect(await east.epoch()).toBe(east1);

    // Both at once: each store moves by one, independently.
    await Promise.all([setPolicy("east", false), setPolicy("west", false)]);
    await waitFor("east back in server mode", () => zoneIn("east", "Server"));
    await waitFor("west back in server mode", () => zoneIn("west", "Server"));
    expect([await east.epoch(), await west.epoch()]).toEqual([east1 + 1, west1 + 1]);
  });
});
