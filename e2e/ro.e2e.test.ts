import { join } from "node:path";
import { KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { KubeClient } from "../platform/kube/kube.ts";
import { computeStatus, type KObject } from "../testkit/kstatus.ts";
import { enc, RoTestPlayer } from "../testkit/ro/client.ts";
import { type BotFleet, runBots } from "../workloads/client/bots.ts";
import { nodeFetch } from "../workloads/client/https.ts";
import { clusterTools, createKeysetSecret, installChart, regionTls, repoRoot, waitFor } from "./kit.ts";

const kubeconfig = inject("kubeconfig");
const { helm, kubectl, newKeyset } = clusterTools(kubeconfig);
const OPERATOR_NS = "hybrid-p2p-system";
const RELEASE = "hp-ro";
const NS = "demo";
const REGION = "demo";
const G = "/apis/hybridp2p.io/v1alpha1";
let client: KubeClient;
let fleet: BotFleet | undefined;

const get = <T = KObject>(path: string) => client.request<T>("GET", path);

interface Pod {
  status?: { podIP?: string; conditions?: { type: string; status: string }[] };
}
const componentPod = async (component: string) =>
  waitFor(`a ready ${component} pod`, async () => {
    const pods = await get<{ items: Pod[] }>(
      `/api/v1/namespaces/${NS}/pods?labelSelector=${encodeURIComponent(`app.kubernetes.io/component=${component}`)}`,
    );
    return pods.items.find((p) =>
      p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True"),
    );
  });

/** A node's address: where NodePort Services answer on any cluster. */
async function nodeAddress(): Promise<string> {
  const nodes = await get<{ items: { status?: { addresses?: { type: string; address: string }[] } }[] }>(
    "/api/v1/nodes",
  );
  const a = nodes.items.flatMap((n) => n.status?.addresses ?? []).find((x) => x.type === "InternalIP");
  if (!a) throw new Error("no node with an InternalIP");
  return a.address;
}

beforeAll(async () => {
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  client = await new KubeClient(kc).init();
  // Another file of the suite may have just deleted these namespaces: wait until they are gone.
  for (const ns of [NS, OPERATOR_NS])
    await waitFor(`namespace ${ns} gone`, async () =>
      (await get(`/api/v1/namespaces/${ns}`).then(
        () => false,
        () => true,
      ))
        ? true
        : undefined,
    );
  // No flag-store override: the operator publishes to the Region's own etcd (https, its client
  // certificate), as a plain install does; a plain-http override is refused by the managed etcd.
  await installChart(client, helm, RELEASE, OPERATOR_NS, ["--wait", "--timeout", "300s"]);
  kubectl(["create", "namespace", NS]);
  const keyset = newKeyset();
  await createKeysetSecret(client, NS, REGION, keyset);
  kubectl(["apply", "-f", join(repoRoot, "examples/demo-region.yaml")]);
  await waitFor(
    "the Region Ready and Current",
    async () => {
      const obj = await get<KObject>(`${G}/namespaces/${NS}/regions/${REGION}`);
      const ready = (
        obj.status as { conditions?: { type: string; status: string }[] } | undefined
      )?.conditions?.find((c) => c.type === "Ready");
      return ready?.status === "True" && computeStatus(obj).status === "Current" ? obj : undefined;
    },
    900_000,
  );
}, 900_000);

afterAll(async () => {
  await fleet?.stop().catch(() => undefined);
  await client?.request("DELETE", `/api/v1/namespaces/${NS}`).catch(() => {});
  try {
    helm(["uninstall", RELEASE, "-n", OPERATOR_NS, "--wait", "--timeout", "120s"]);
  } catch {}
  await client?.request("DELETE", `/api/v1/namespaces/${OPERATOR_NS}`).catch(() => {});
  client?.close();
}, 300_000);

describe("RO clients on the cluster", () => {
  it("renders the RO Services with the example's node ports", async () => {
    for (const [e, nodePort] of [
      ["login", 30690],
      ["char", 30612],
      ["map", 30512],
    ] as const) {
      const svc = await get<{ spec: { type: string; ports: { nodePort?: number }[] } }>(
        `/api/v1/namespaces/${NS}/services/${REGION}-ro-${e}`,
      );
      expect(svc.spec.type).toBe("NodePort");
      expect(svc.spec.ports[0]!.nodePort).toBe(nodePort);
    }
  });

  it("plays an RO client beside SDK bots through the Services", async () => {
    const ip = async (component: string) => (await componentPod(component)).status!.podIP!;
    const loginUrl = `https://${await ip("login-server")}:6900`;
    const tls = await regionTls(client, NS, REGION);
    fleet = await runBots({
      count: 2,
      gatewayUrl: `wss://${await ip("gateway")}:7000`,
      maps: ["prt_fild08"],
      accounts: { loginUrl, charUrl: `https://${await ip("char-server")}:6121` },
      tls,
      decodeMode: "full",
      moveEveryMs: 500,
      chatEveryMs: 1000,
      idPrefix: `e2ero${Date.now().toString(36)}`,
      failFast: true,
    });
    const node = await nodeAddress();
    const user = `ro_e2e_${Date.now().toString(36)}`;
    const password = "ro-e2e-password";
    // The account over https (the Region's CA); the RO login itself is plain TCP, as RO has no TLS.
    const signUp = await nodeFetch(tls)(`${loginUrl}/v1/accounts`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ username: user, password }),
    });
    expect(signUp.status).toBe(201);
    const p = new RoTestPlayer(node);
    const ok = await p.login(30690, user, password);
    expect(ok).toMatchObject({ type: "loginOk" });
    expect(ok.items[0].port).toBe(30612);
    const { conn, echo, list } = await p.charEnter(ok.items[0].port);
    expect(echo).toBe(p.accountId);
    expect(list.type).toBe("charList");
    const name = `Ro${Date.now().toString(36)}`.slice(0, 20);
    conn.send(enc.charCreate(name, [5, 5, 5, 5, 5, 5], 0, 1, 2));
    const created = await conn.next("charCreated");
    conn.send(enc.charSelect(0));
    const addr = await conn.next("mapServer");
    // New characters start where the Region's startPoint says (prt_fild08), next to the bots.
    expect(addr).toMatchObject({ mapName: "prt_fild08.gat", port: 30512 });
    conn.close();
    expect((await p.enterMap(addr.port, created.charId)).type).toBe("mapAccept");
    const m = p.map!;
    // The SDK bots walk and talk in view of the start point: the RO client sees and hears them.
    await m.next("actorStand", (x) => x.objectType === 0, 60_000);
    await m.next("actorMove", () => true, 60_000);
    await m.next("chatFrom", (x) => /hi from e2ero/.test(x.text), 60_000);
    // And they hear it.
    const heard = fleet.clients.map((c) =>
      c.next("chatMsg", 60_000, (x) => x.text === "hello from an RO client"),
    );
    m.send(enc.chat(`${name} : hello from an RO client`));
    await Promise.all(heard);
    m.send(enc.walk(p.x + 3, p.y));
    await m.next("ownMove", () => true, 30_000);
    m.send(enc.quit());
    expect(await m.next("quitAck")).toMatchObject({ result: 0 });
  });
});
