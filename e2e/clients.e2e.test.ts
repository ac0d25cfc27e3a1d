// The clients the original promises, against the demo Region (examples/demo-region.yaml) running
// as pods on the local cluster: an unmodified-protocol RO client beside SDK bots through the RO
// NodePort Services, and the browser client in Debian's chromium (headless, playwright-core)
// meshing with werift bots through the coordinator pod and surviving a P2PPolicy edit.
import { createHash, randomBytes, X509Certificate } from "node:crypto";
import { join } from "node:path";
import { KubeConfig } from "@kubernetes/client-node";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { KubeClient } from "../platform/kube/kube.ts";
import { launchChromium, signUpAndPlay, testResultsDir } from "../testkit/browser.ts";
import { computeStatus, type KObject } from "../testkit/kstatus.ts";
import { tcpOpen } from "../testkit/processes.ts";
import { enc, RoTestPlayer } from "../testkit/ro/client.ts";
import { AuthClient } from "../workloads/auth/client.ts";
import { type BotFleet, runBots } from "../workloads/client/bots.ts";
import { nodeFetch } from "../workloads/client/https.ts";
import { P2PClient } from "../workloads/client/p2p.ts";
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

const kubeconfig = inject("kubeconfig");
const { helm, kubectl, newKeyset } = clusterTools(kubeconfig);
const OPERATOR_NS = "hybrid-p2p-system";
const RELEASE = "hp-ro";
const NS = "demo";
const REGION = "demo";
const G = "/apis/hybridp2p.io/v1alpha1";
let client: KubeClient;
let fleet: BotFleet | undefined;
let browser: Browser | undefined;
let stun: LoopbackStun | undefined;
const p2pBots: P2PClient[] = [];

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
  await Promise.all(p2pBots.map((b) => b.close().catch(() => undefined)));
  await browser?.close().catch(() => undefined);
  await stun?.close();
  await client?.request("DELETE", `/api/v1/namespaces/${NS}`).catch(() => {});
  await uninstallChart(client, helm, RELEASE, OPERATOR_NS);
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
    // kube-proxy learns of a Service's endpoints a moment after its pods turn Ready; until then
    // the NodePort refuses connections.
    for (const port of [30690, 30612, 30512])
      await waitFor(`the RO NodePort ${port} open`, async () =>
        (await tcpOpen(port, node)) ? true : undefined,
      );
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

interface PageState {
  badge: string;
  mode: string;
  entity: number;
  me: { x: number; y: number };
  peers: string[];
  world: { id: number; x: number; y: number }[];
  seqErrors: string[];
  chat: string[];
  peerMoves: number;
}
const pageState = (page: Page) =>
  page.evaluate(() => (globalThis as unknown as { hybrid: { state(): PageState } }).hybrid.state());

/** Sets the demo's P2PPolicy on or off (a merge patch: the rest stays as the example has it). */
const setFieldsP2P = (enabled: boolean) =>
  client.request("PATCH", `${G}/namespaces/${NS}/p2ppolicies/fields-p2p`, {
    body: { spec: { enabled } },
    contentType: "application/merge-patch+json",
  });

describe("the browser client on the cluster", () => {
  it("plays P2P with werift bots through the pods, and goes to server mode and back with nothing lost", async () => {
    const ip = async (component: string) => (await componentPod(component)).status!.podIP!;
    const [gw, login, char, coord] = await Promise.all(
      ["gateway", "login-server", "char-server", "coordinator"].map(ip),
    );
    const loginUrl = `https://${login}:6900`;
    const charUrl = `https://${char}:6121`;
    const coordinator = `wss://${coord}:7100`;
    const tls = await regionTls(client, NS, REGION);
    // Chromium accepts exactly the Region's serving key (the certificate names the Services, and
    // the page is opened at the pod's address), as the main job's printed command does.
    const secret = await get<{ data: Record<string, string> }>(
      `/api/v1/namespaces/${NS}/secrets/${REGION}-serving-tls`,
    );
    const cert = new X509Certificate(Buffer.from(secret.data["tls.crt"]!, "base64"));
    const spki = createHash("sha256")
      .update(cert.publicKey.export({ type: "spki", format: "der" }))
      .digest("base64");
    browser = await launchChromium({ trustSpki: [spki] });
    const page = await browser.newPage({ viewport: { width: 760, height: 1000 } });
    const logs: string[] = [];
    page.on("console", (m) => logs.push(m.text()));
    page.on("pageerror", (e) => logs.push(`pageerror: ${e.message}`));
    const failWithPage = async (err: unknown): Promise<never> => {
      throw new Error(
        `${(err as Error).message}\nbrowser: ${JSON.stringify(await pageState(page).catch(() => undefined))}\n${logs.join("\n")}`,
      );
    };
    await page.goto(
      `https://${gw}:7000/play/?login=${encodeURIComponent(loginUrl)}&char=${encodeURIComponent(charUrl)}&coordinator=${encodeURIComponent(coordinator)}`,
    );
    // Sign up, create a character (it starts on prt_fild08, the Region's startPoint), play it.
    await signUpAndPlay(page);
    const first = await waitFor("the browser plays P2P", async () => {
      const s = await pageState(page);
      return s.badge === "P2P" ? s : undefined;
    }).catch(failWithPage);

    // Two werift bots sign up the same way and start on the same map: one mesh of three.
    stun = await startLoopbackStun();
    for (const name of ["webbota", "webbotb"]) {
      const auth = new AuthClient({ loginUrl, charUrl, fetch: nodeFetch(tls) });
      const who = `${name}${randomBytes(2).toString("hex")}`;
      await auth.loginOrSignUp(who, `${who}-password`);
      const token = (await auth.enterAs(who)).token;
      p2pBots.push(
        await P2PClient.connect({
          url: `wss://${gw}:7000`,
          token,
          coordinators: [coordinator],
          ice: stun.ice,
          tls,
        }),
      );
    }
    const bots = p2pBots;
    const meshed = await waitFor("browser and bots meshed", async () => {
      const s = await pageState(page);
      return s.peers.length === 2 && bots.every((b) => b.connectedPeers.length === 2) ? s : undefined;
    }).catch(failWithPage);
    const me = meshed.entity;
    // The map server places players at cell centres; moves go from cell to cell.
    const at = { x: Math.floor(first.me.x), y: Math.floor(first.me.y) };
    // A bot moves: the browser hears it over its data channel.
    const heard = new Map<P2PClient, number>(bots.map((b) => [b, 0]));
    for (const b of bots)
      b.onPeerMessage = (_from, m) => {
        if (m.type === "peerMove" && m.entity === me) heard.set(b, (heard.get(b) ?? 0) + 1);
      };
    bots[0]!.move(at.x + 3, at.y + 2);
    await waitFor("the browser sees the bot's move over WebRTC", async () => {
      const s = await pageState(page);
      return s.peerMoves > 0 &&
        s.world.some((e) => e.id === bots[0]!.entity && e.x === at.x + 3 && e.y === at.y + 2)
        ? true
        : undefined;
    }).catch(failWithPage);
    // The browser walks with the keyboard: both bots hear it directly.
    await page.focus("#map");
    await page.keyboard.press("ArrowRight");
    const moved = await pageState(page);
    expect(moved.me).toEqual({ x: at.x + 1, y: at.y });
    await waitFor("both bots hear the browser over WebRTC", async () =>
      bots.every((b) => (heard.get(b) ?? 0) > 0 && b.world.get(me)?.x === moved.me.x) ? true : undefined,
    );

    // A bot chats all along while the policy turns P2P off and on again.
    const sent: string[] = [];
    let chatting = true;
    const chatter = (async () => {
      for (let i = 0; chatting; i++) {
        sent.push(`web line ${i}`);
        bots[1]!.chat(`web line ${i}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    })();
    // What bot 0 believes of the browser and of itself, as it changes (for a failure's message).
    const trace: string[] = [];
    let last = "";
    const tracer = setInterval(() => {
      const b = bots[0]!;
      const now = `browser ${JSON.stringify(b.world.get(me) && { x: b.world.get(me)!.x, y: b.world.get(me)!.y })} self ${JSON.stringify(b.position)} server ${b.serverMode}`;
      if (now === last) return;
      last = now;
      trace.push(`${new Date().toISOString().slice(17, 23)} ${now}`);
    }, 50);
    try {
      await setFieldsP2P(false);
      await waitFor("the browser in server mode", async () =>
        (await pageState(page)).badge === "Server" ? true : undefined,
      ).catch(failWithPage);
      // In server mode the browser walks through the map server; a bot sees it through the gateway
      // where the server has it (compared live: a field's mobs may kill and respawn the browser).
      await page.keyboard.press("ArrowLeft");
      await waitFor(
        "the map server walked the browser",
        async () => {
          const s = await pageState(page);
          if (Math.floor(s.me.x) !== moved.me.x || s.me.y !== moved.me.y) return s;
          throw new Error(`the page stands at ${JSON.stringify(s.me)}, mode ${s.mode}`);
        },
        60_000,
      ).catch(failWithPage);
      await waitFor(
        "a bot sees the browser where the server has it",
        async () => {
          const seen = bots[0]!.world.get(me);
          const { me: at } = await pageState(page);
          if (seen?.x === at.x && seen.y === at.y) return true;
          throw new Error(
            `the bot sees ${JSON.stringify(seen)}, the page ${JSON.stringify(at)}; bot 0 over time:\n${trace.join("\n")}`,
          );
        },
        60_000,
      );
    } finally {
      clearInterval(tracer);
      await setFieldsP2P(true);
    }
    await waitFor("the browser back in P2P, meshed again", async () => {
      const s = await pageState(page);
      return s.badge === "P2P" && s.peers.length === 2 ? true : undefined;
    }).catch(failWithPage);
    chatting = false;
    await chatter;
    const final = await waitFor("every chat line reached the browser", async () => {
      const s = await pageState(page);
      return sent.every((l) => s.chat.some((c) => c.endsWith(`: ${l}`))) ? s : undefined;
    }).catch(failWithPage);
    expect(final.seqErrors).toEqual([]);
    for (const b of bots) expect(b.seqErrors).toEqual([]);
    const shot = join(testResultsDir(), "browser-cluster.png");
    await page.screenshot({ path: shot });
    process.stdout.write(`screenshot: ${shot}\n`);
  });
});
