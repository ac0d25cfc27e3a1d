import { join } from "node:path";
import { KubeConfig } from "@kubernetes/client-node";
import type { Etcd3 } from "etcd3";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { KubeClient } from "../platform/kube/kube.ts";
import { computeStatus, type KObject } from "../testkit/kstatus.ts";
import { type BotFleet, runBots } from "../workloads/client/bots.ts";
import type { P2PClient } from "../workloads/client/p2p.ts";
import { type LoopbackStun, startLoopbackStun } from "../workloads/coordinator/stun.ts";
import {
  clusterTools,
  createKeysetSecret,
  installChart,
  regionTls,
  repoRoot,
  uninstallChart,
  waitFor,
} from "./kit.ts";
import { probeFromPod } from "./probe-pod.ts";
import { RegionStores } from "./stores.ts";

const kubeconfig = inject("kubeconfig");
const { helm, kubectl, hybridctl, newKeyset } = clusterTools(kubeconfig);
const OPERATOR_NS = "hybrid-p2p-system";
const RELEASE = "hp";
const NS = "demo";
const REGION = "demo";
const ZONES = ["prontera", "prt-fild08"];
const FIELD = "prt-fild08";
const PREFIX = "/hybridp2p/v1/";
const G = "/apis/hybridp2p.io/v1alpha1";
let client: KubeClient;
const stores = new RegionStores(kubeconfig, NS, REGION);

interface ZoneStatus {
  mode?: string;
  fallbackReason?: string;
  p2pPeers?: { connected?: number; meshes?: number; relayed?: number };
  appliedEpoch?: number;
  replicas?: { desired?: number; applied?: number };
  conditions?: { type: string; status: string; reason?: string; message?: string }[];
}
const get = <T = KObject>(path: string) => client.request<T>("GET", path);
const zone = (name: string) => get<KObject & { status?: ZoneStatus }>(`${G}/namespaces/${NS}/zones/${name}`);
const mergePatch = (path: string, body: unknown) =>
  client.request("PATCH", path, { body, contentType: "application/merge-patch+json" });

interface Pod {
  metadata: { name: string; uid: string; labels?: Record<string, string> };
  status?: { podIP?: string; conditions?: { type: string; status: string }[] };
}
const podReady = (p: Pod) => p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True");
const mapServerPods = async (z: string) =>
  (
    await get<{ items: Pod[] }>(
      `/api/v1/namespaces/${NS}/pods?labelSelector=${encodeURIComponent(`hybridp2p.io/zone=${z}`)}`,
    )
  ).items;

/** The Region's etcd, through a port-forward (e2e/stores.ts). */
const flagStore = (): Promise<Etcd3> => stores.flagStore();
const currentEpoch = async () =>
  JSON.parse((await (await flagStore()).get(`${PREFIX}flags/current`).string()) ?? "{}").epoch as number;
/** The acks of a zone's pods, on the Region's NATS. */
const reports = (z: string) => stores.reports(z);
async function owners(z: string): Promise<Record<string, string>> {
  const all = await (await flagStore()).getAll().prefix(`${PREFIX}ownership/maps/${REGION}/${z}/`).strings();
  return Object.fromEntries(
    Object.entries(all)
      .map(([k, v]): [string, string] => [k.slice(`${PREFIX}ownership/maps/${REGION}/${z}/`.length), v])
      .filter(([k]) => !k.startsWith("_pods/")),
  );
}

/** Every zone's status has reached `epoch` with all its desired pods applying it. */
async function zonesAt(epoch: number): Promise<true | undefined> {
  for (const z of ZONES) {
    const s: ZoneStatus = (await zone(z)).status ?? {};
    if ((s.appliedEpoch ?? -1) < epoch) return undefined;
    if (!s.replicas?.desired || s.replicas.applied !== s.replicas.desired) return undefined;
    const pods = (await mapServerPods(z)).map((p) => p.metadata.name);
    const reported = await reports(z);
    for (const p of pods) if (!reported.some((r) => r.pod === p && r.epoch >= epoch)) return undefined;
  }
  return true;
}

/** Ready=True and Current per kstatus; a timeout names the last Ready condition seen. */
async function waitReady(path: string) {
  let seen = "";
  await waitFor(`${path} Ready and Current`, async () => {
    const obj = await get<KObject & { status?: ZoneStatus }>(path);
    const ready = obj.status?.conditions?.find((c) => c.type === "Ready");
    seen = JSON.stringify(ready ?? null);
    return ready?.status === "True" && computeStatus(obj).status === "Current" ? obj : undefined;
  }).catch((err: Error) => {
    throw new Error(`${err.message}; last Ready condition: ${seen}`);
  });
}

beforeAll(async () => {
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  client = await new KubeClient(kc).init();
});

afterAll(async () => {
  await stores.close();
  await client?.request("DELETE", `/api/v1/namespaces/${NS}`).catch(() => {});
  await uninstallChart(client, helm, RELEASE, OPERATOR_NS);
  client?.close();
}, 300_000);

describe("the demo region on a cluster", () => {
  it("installs the chart and the example; both Zones become Ready", async () => {
    await installChart(client, helm, RELEASE, OPERATOR_NS, ["--wait", "--timeout", "300s"]);
    kubectl(["create", "namespace", NS]);
    const keyset = newKeyset();
    await createKeysetSecret(client, NS, REGION, keyset);
    kubectl(["apply", "-f", join(repoRoot, "examples/demo-region.yaml")]);
    for (const z of ZONES) await waitReady(`${G}/namespaces/${NS}/zones/${z}`);
  });

  it("brings the Region to Ready", async () => {
    await waitReady(`${G}/namespaces/${NS}/regions/${REGION}`);
  });
});

describe("map ownership", () => {
  it("moves a killed map server's maps to the other replica and brings the pod back", async () => {
    await mergePatch(`${G}/namespaces/${NS}/zones/${FIELD}`, { spec: { mapServer: { replicas: 2 } } });
    const before = await waitFor("two ready map servers sharing the field's four maps", async () => {
      const ready = (await mapServerPods(FIELD)).filter(podReady);
      const o = await owners(FIELD);
      return ready.length === 2 && Object.keys(o).length === 4 && new Set(Object.values(o)).size === 2
        ? o
        : undefined;
    });
    const victim = Object.values(before)[0]!;
    const victimMaps = Object.keys(before).filter((m) => before[m] === victim);
    const victimUid = (await get<Pod>(`/api/v1/namespaces/${NS}/pods/${victim}`)).metadata.uid;
    // A watch, not polls: the maps may move back once the pod returns.
    const dir = `${PREFIX}ownership/maps/${REGION}/${FIELD}/`;
    const moved = new Set<string>();
    const watcher = await (await flagStore()).watch().prefix(dir).create();
    watcher.on("put", (kv) => {
      const map = kv.key.toString().slice(dir.length);
      if (victimMaps.includes(map) && kv.value.toString() !== victim) moved.add(map);
    });
    await client.request("DELETE", `/api/v1/namespaces/${NS}/pods/${victim}`);
    await waitFor(`${victimMaps.join(", ")} to move off ${victim}`, async () =>
      victimMaps.every((m) => moved.has(m)) ? true : undefined,
    );
    await watcher.cancel();
    await waitFor(`${victim} to come back Ready`, async () => {
      const p = await get<Pod>(`/api/v1/namespaces/${NS}/pods/${victim}`);
      return p.metadata.uid !== victimUid && podReady(p) ? p : undefined;
    });
    await waitFor("every map owned by a live pod", async () => {
      const live = (await mapServerPods(FIELD)).filter(podReady).map((p) => p.metadata.name);
      const o = await owners(FIELD);
      return Object.keys(o).length === 4 && Object.values(o).every((p) => live.includes(p)) ? o : undefined;
    });
  });
});

describe("the flag plane", () => {
  const policy = `${G}/namespaces/${NS}/p2ppolicies/fields-p2p`;
  /** The field zone's pods all report `mode`, at `epoch` or later. */
  const fieldPodsIn = async (mode: string) => {
    const pods = (await mapServerPods(FIELD)).map((p) => p.metadata.name);
    const r = await reports(FIELD);
    return pods.length > 0 && pods.every((p) => r.some((x) => x.pod === p && x.mode === mode))
      ? true
      : undefined;
  };

  it("toggles P2P by editing the P2PPolicy: every zone and replica applies the new epoch", async () => {
    for (const enabled of [false, true]) {
      const before = await waitFor("a published epoch", currentEpoch);
      await mergePatch(policy, { spec: { enabled } });
      const epoch = await waitFor("a new epoch", async () => {
        const e = await currentEpoch();
        return e > before ? e : undefined;
      });
      await waitFor(`every zone and replica at epoch ${epoch}`, () => zonesAt(epoch));
      await waitFor(`the field's pods in ${enabled ? "p2p" : "server"} mode`, () =>
        fieldPodsIn(enabled ? "p2p" : "server"),
      );
    }
  });

  it("forces fallback on a zone and clears it", async () => {
    hybridctl(["fallback", "force", "--zone", FIELD, "-n", NS, "--reason", "e2e"]);
    await waitFor("the zone in Fallback", async () =>
      (await zone(FIELD)).status?.mode === "Fallback" ? true : undefined,
    );
    await waitFor("the field's pods in fallback", () => fieldPodsIn("fallback"));
    hybridctl(["fallback", "clear", "--zone", FIELD, "-n", NS]);
    await waitFor("the field's pods back in p2p", () => fieldPodsIn("p2p"));
    await waitFor("the zone out of Fallback", async () =>
      (await zone(FIELD)).status?.mode !== "Fallback" ? true : undefined,
    );
  });
});

describe("players", () => {
  // New characters start on the field (the demo Region's startPoint), which the example policy
  // (fields-p2p) puts in P2P.
  const TOWN = FIELD;
  // The field zone keeps its dungeon server-side: P2P shows as Mixed.
  const p2pOn = (mode?: string) => mode === "P2P" || mode === "Mixed";
  const componentPod = async (component: string) =>
    waitFor(`a ready ${component} pod`, async () => {
      const pods = (
        await get<{ items: Pod[] }>(
          `/api/v1/namespaces/${NS}/pods?labelSelector=${encodeURIComponent(`app.kubernetes.io/component=${component}`)}`,
        )
      ).items.filter(podReady);
      return pods[0];
    });
  let stun: LoopbackStun | undefined;
  let fleet: BotFleet | undefined;
  afterAll(async () => {
    await fleet?.stop();
    await stun?.close();
  });

  it("P2P players sign up, log in, play through the gateway and mesh through the coordinator; the Zone counts them, and falls back while the coordinator is gone", async () => {
    await waitFor("the town in P2P", async () => (p2pOn((await zone(TOWN)).status?.mode) ? true : undefined));

    const ip = async (component: string) => (await componentPod(component)).status!.podIP!;
    const coordinator = await componentPod("coordinator");
    stun = await startLoopbackStun();
    const count = 4;
    fleet = await runBots({
      count,
      gatewayUrl: `wss://${await ip("gateway")}:7000`,
      maps: [TOWN],
      accounts: {
        loginUrl: `https://${await ip("login-server")}:6900`,
        charUrl: `https://${await ip("char-server")}:6121`,
      },
      // Every player-facing hop over TLS, trusting the Region's CA as the main job's --ca-file does.
      tls: await regionTls(client, NS, REGION),
      p2pShare: 1,
      coordinators: [`wss://${coordinator.status!.podIP}:7100`],
      ice: stun.ice,
      decodeMode: "full",
      // They stay where new characters start, so they share one mesh area; they talk instead.
      moveEveryMs: 0,
      chatEveryMs: 300,
      idPrefix: `e2e${Date.now().toString(36)}`,
      failFast: true,
    });
    expect(fleet.stats()).toMatchObject({ connected: count, failed: 0 });
    const peers = fleet.clients as P2PClient[];
    await waitFor("every player meshed with the others", async () =>
      peers.every((p) => p.connectedPeers.length === count - 1) ? true : undefined,
    );
    const counted = await waitFor("the Zone counting its P2P players", async () => {
      const z = await zone(TOWN);
      return z.status?.p2pPeers?.connected === count ? z.status.p2pPeers : undefined;
    });
    expect(counted).toMatchObject({ connected: count, meshes: 1, relayed: 0 });

    // No coordinator left (scaled to zero: a deleted pod's replacement may start before it has
    // stopped, which is no outage): the gateway holds the town in fallback, players go on in
    // server mode, and the Zone says why; a coordinator back brings P2P back by itself (Auto).
    const region = `${G}/namespaces/${NS}/regions/${REGION}`;
    await mergePatch(region, { spec: { coordinator: { replicas: 0 } } });
    const held = await waitFor("the town in Fallback", async () => {
      const z = await zone(TOWN);
      return z.status?.mode === "Fallback" ? z : undefined;
    });
    expect(held.status!.fallbackReason).toMatch(/coordinator unreachable.*\(gateway: /);
    await waitFor("every player in server mode", async () =>
      peers.every((p) => p.mode === "fallback" && p.serverMode) ? true : undefined,
    );
    const before = fleet.stats().messages;
    await waitFor("play going on", async () => (fleet!.stats().messages > before + count ? true : undefined));
    await mergePatch(region, { spec: { coordinator: { replicas: 1 } } });
    await waitFor("the town back in P2P", async () =>
      p2pOn((await zone(TOWN)).status?.mode) ? true : undefined,
    );
    expect(peers.every((p) => p.seqErrors.length === 0)).toBe(true);
  });
});

// Where policies are enforced (kube-router on the local node, the CNI's enforcer on kind with one):
// a pod without the Region's labels reaches every player-facing port but no store, and a pod
// labelled as a map server reaches every store a map server uses. The second half shows the probe
// can succeed, so the first half's "blocked" is the policy's doing.
describe("network policies", () => {
  // Each Service's own first port: what players and components dial.
  const targets = (names: string[]) =>
    Promise.all(
      names.map(async (name) => {
        const svc = await get<{ spec: { ports: { port: number }[] } }>(
          `/api/v1/namespaces/${NS}/services/${REGION}-${name}`,
        );
        return { host: `${REGION}-${name}.${NS}.svc`, port: svc.spec.ports[0]!.port };
      }),
    );
  const stores = () => targets(["etcd", "nats", "postgres", "dragonfly"]);
  const players = () => targets(["gateway", "coordinator", "login-server", "char-server"]);
  const image = async () =>
    (
      await get<{ spec: { template: { spec: { containers: { image: string }[] } } } }>(
        `/apis/apps/v1/namespaces/${NS}/deployments/${REGION}-gateway`,
      )
    ).spec.template.spec.containers[0]!.image;
  const logs = (ns: string, pod: string) => {
    try {
      return kubectl(["logs", "-n", ns, pod]);
    } catch {
      return "";
    }
  };

  it("let a stranger pod reach the players' ports but no store", async () => {
    const [s, p] = [await stores(), await players()];
    const reach = await probeFromPod(
      client,
      { namespace: NS, name: "np-stranger", image: await image(), labels: {}, targets: [...s, ...p] },
      logs,
    );
    for (const t of s) expect(reach[`${t.host}:${t.port}`], t.host).toBe("blocked");
    for (const t of p) expect(reach[`${t.host}:${t.port}`], t.host).toBe("open");
  });

  it("let a pod with a map server's labels reach the stores a map server uses", async () => {
    const reach = await probeFromPod(
      client,
      {
        namespace: NS,
        name: "np-map-server",
        image: await image(),
        labels: {
          "app.kubernetes.io/part-of": "hybrid-p2p",
          "hybridp2p.io/region": REGION,
          "app.kubernetes.io/component": "map-server",
        },
        targets: await stores(),
      },
      logs,
    );
    for (const t of await stores()) expect(reach[`${t.host}:${t.port}`], t.host).toBe("open");
  });
});

describe("deleting the Region", () => {
  it("garbage-collects everything it owns", async () => {
    const region = await get<KObject & { metadata: { uid: string } }>(
      `${G}/namespaces/${NS}/regions/${REGION}`,
    );
    const kinds = [
      `/apis/apps/v1/namespaces/${NS}/deployments`,
      `/apis/apps/v1/namespaces/${NS}/statefulsets`,
      `/api/v1/namespaces/${NS}/services`,
      `/api/v1/namespaces/${NS}/configmaps`,
    ];
    const owned = async () => {
      const names: string[] = [];
      for (const k of kinds) {
        const list = await get<{
          items: { metadata: { name: string; ownerReferences?: { uid: string }[] } }[];
        }>(k);
        for (const o of list.items)
          if (o.metadata.ownerReferences?.some((r) => r.uid === region.metadata.uid))
            names.push(`${k}/${o.metadata.name}`);
      }
      return names;
    };
    expect((await owned()).length).toBeGreaterThan(0);
    await client.request("DELETE", `${G}/namespaces/${NS}/regions/${REGION}`);
    await waitFor("the Region gone", async () =>
      (await client.request(`GET`, `${G}/namespaces/${NS}/regions/${REGION}`).then(
        () => false,
        () => true,
      ))
        ? true
        : undefined,
    );
    await waitFor("its children gone", async () => ((await owned()).length === 0 ? true : undefined));
    await waitFor("its pods gone", async () => {
      const pods = await get<{ items: Pod[] }>(
        `/api/v1/namespaces/${NS}/pods?labelSelector=${encodeURIComponent(`hybridp2p.io/region=${REGION}`)}`,
      );
      return pods.items.filter((p) => !p.metadata.labels?.["hybridp2p.io/zone"]).length === 0
        ? true
        : undefined;
    });
  });
});
