// The browser client against a Region running as pods: Debian's chromium (headless, through
// playwright-core) opens the page the gateway pod serves, signs up at the login server pod,
// creates a character (it starts on the field map: the Region's startPoint) and plays; werift
// bots on the host mesh with it through the coordinator pod and they see each other's moves both
// ways; a P2PPolicy edit moves the page to server mode and back with no chat line lost and no
// sequence break. The screenshot is kept in .cache/test-results/browser-cluster.png.
// Runs with HYBRIDP2P_E2E_BROWSER=1 (see below).
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { KubeConfig } from "@kubernetes/client-node";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { KubeClient } from "../platform/kube/kube.ts";
import { pollUntil } from "../platform/time.ts";
import { launchChromium, testResultsDir } from "../testkit/browser.ts";
import type { KObject } from "../testkit/kstatus.ts";
import { binDir } from "../testkit/local/services.ts";
import { AuthClient } from "../workloads/auth/client.ts";
import { P2PClient } from "../workloads/client/p2p.ts";
import { type LoopbackStun, startLoopbackStun } from "../workloads/coordinator/stun.ts";

const kubeconfig = inject("kubeconfig");
const repoRoot = new URL("..", import.meta.url).pathname;
const OPERATOR_NS = "hybrid-p2p-browser";
const RELEASE = "hp-browser";
const NS = "web";
const MAP = "prt_fild08";
const G = "/apis/hybridp2p.io/v1alpha1";
let client: KubeClient;
let installed = false;
let browser: Browser | undefined;
let stun: LoopbackStun | undefined;
const bots: P2PClient[] = [];

const run = (cmd: string, args: string[]) =>
  execFileSync(cmd, args, { encoding: "utf8", env: { ...process.env, KUBECONFIG: kubeconfig } });
const helm = (args: string[]) => run(join(binDir(), "helm"), [...args, "--kubeconfig", kubeconfig]);
const waitFor = <T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 300_000) =>
  pollUntil(what, probe, timeoutMs, 500);
const get = <T = KObject>(path: string) => client.request<T>("GET", path);
const apply = (path: string, obj: unknown) =>
  client.request("PATCH", path, {
    query: { fieldManager: "e2e", force: true },
    body: obj,
    contentType: "application/apply-patch+yaml",
  });
const setPolicy = (enabled: boolean) =>
  apply(`${G}/namespaces/${NS}/p2ppolicies/fields`, {
    apiVersion: "hybridp2p.io/v1alpha1",
    kind: "P2PPolicy",
    metadata: { name: "fields", namespace: NS },
    spec: { zoneSelector: { matchLabels: { tier: "field" } }, enabled },
  });

interface Pod {
  status?: { podIP?: string; conditions?: { type: string; status: string }[] };
}
/** A ready pod's IP (the host is the node: pod IPs route). */
const podIP = (component: string) =>
  waitFor(`a ready ${component} pod`, async () => {
    const pods = await get<{ items: Pod[] }>(
      `/api/v1/namespaces/${NS}/pods?labelSelector=${encodeURIComponent(`app.kubernetes.io/component=${component}`)}`,
    );
    return pods.items.find((p) =>
      p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True"),
    )?.status?.podIP;
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
}
const state = (page: Page) =>
  page.evaluate(() => (globalThis as unknown as { hybrid: { state(): PageState } }).hybrid.state());

beforeAll(async () => {
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  client = await new KubeClient(kc).init();
});

afterAll(async () => {
  await Promise.all(bots.map((b) => b.close()));
  await browser?.close();
  await stun?.close();
  await client?.request("DELETE", `/api/v1/namespaces/${NS}`).catch(() => {});
  if (installed) {
    try {
      helm(["uninstall", RELEASE, "-n", OPERATOR_NS, "--wait", "--timeout", "120s"]);
    } catch {}
    await client?.request("DELETE", `/api/v1/namespaces/${OPERATOR_NS}`).catch(() => {});
  }
  client?.close();
}, 300_000);

// Opt-in (HYBRIDP2P_E2E_BROWSER=1) until it has passed on the local cluster: it was written while
// that cluster was busy with another suite, and the browser's integration test
// (workloads/web/browser.int.test.ts) covers the same play against the local services.
describe.skipIf(process.env.HYBRIDP2P_E2E_BROWSER !== "1")("the browser client on a cluster", () => {
  it("plays P2P with werift bots through the pods, and goes to server mode and back with nothing lost", async () => {
    const operators = await get<{ items: unknown[] }>(
      `/apis/apps/v1/deployments?labelSelector=${encodeURIComponent("app.kubernetes.io/name=hybrid-operator")}`,
    );
    if (operators.items.length === 0) {
      helm([
        "install",
        RELEASE,
        join(repoRoot, "charts/hybrid-p2p"),
        "-n",
        OPERATOR_NS,
        "--create-namespace",
      ]);
      installed = true;
    }
    const keyset = run(join(repoRoot, "node_modules/.bin/node"), [
      join(repoRoot, "workloads/main.ts"),
      "keyset",
      "new",
    ]);
    await client.request("POST", "/api/v1/namespaces", { body: { metadata: { name: NS } } });
    await client.request("POST", `/api/v1/namespaces/${NS}/secrets`, {
      body: { metadata: { name: `${NS}-auth-keyset` }, stringData: { "keyset.json": keyset } },
    });
    await apply(`${G}/namespaces/${NS}/regions/${NS}`, {
      apiVersion: "hybridp2p.io/v1alpha1",
      kind: "Region",
      metadata: { name: NS, namespace: NS },
      spec: {
        gateway: { replicas: 1 },
        coordinator: { replicas: 1 },
        loginServer: { replicas: 1 },
        charServer: { replicas: 1 },
        startPoint: { map: MAP, x: 170, y: 375 },
        dataStores: {
          etcd: { mode: "Managed" },
          nats: { mode: "Managed" },
          postgres: { mode: "Managed" },
          dragonfly: { mode: "Managed" },
        },
      },
    });
    await apply(`${G}/namespaces/${NS}/zones/field`, {
      apiVersion: "hybridp2p.io/v1alpha1",
      kind: "Zone",
      metadata: { name: "field", namespace: NS, labels: { tier: "field" } },
      spec: { regionRef: { name: NS }, maps: [{ name: MAP, type: "Field" }], mapServer: { replicas: 1 } },
    });
    await setPolicy(true);
    await waitFor("the field zone in P2P", async () => {
      const z = await get<KObject & { status?: { mode?: string } }>(`${G}/namespaces/${NS}/zones/field`);
      return z.status?.mode === "P2P" ? true : undefined;
    });

    const [gw, login, char, coord] = await Promise.all(
      ["gateway", "login-server", "char-server", "coordinator"].map((c) => podIP(c)),
    );
    const loginUrl = `http://${login}:6900`;
    const charUrl = `http://${char}:6121`;
    const coordinator = `ws://${coord}:7100`;
    browser = await launchChromium();
    const page = await browser.newPage({ viewport: { width: 760, height: 1000 } });
    await page.goto(
      `http://${gw}:7000/play/?login=${encodeURIComponent(loginUrl)}&char=${encodeURIComponent(charUrl)}&coordinator=${encodeURIComponent(coordinator)}`,
    );
    const user = `web${randomBytes(3).toString("hex")}`;
    await page.fill("#username", user);
    await page.fill("#password", "correct horse battery");
    await page.click("#signup");
    await page.waitForSelector("#chars:not([hidden])");
    await page.fill("#char-name", `Hero${randomBytes(2).toString("hex")}`);
    await page.click("#create");
    await page.click("#char-list .pick");
    const first = await waitFor("the browser plays P2P", async () => {
      const s = await state(page);
      return s.badge === "P2P" ? s : undefined;
    });

    // Two werift bots sign up the same way; they start on the same map.
    stun = await startLoopbackStun();
    for (const name of ["botone", "bottwo"]) {
      const auth = new AuthClient({ loginUrl, charUrl });
      const who = `${name}${randomBytes(2).toString("hex")}`;
      await auth.loginOrSignUp(who, `${who}-password`);
      const character = (await auth.enterAs(who)).token;
      bots.push(
        await P2PClient.connect({
          url: `ws://${gw}:7000`,
          token: character,
          coordinators: [coordinator],
          ice: stun.ice,
        }),
      );
    }
    await waitFor("browser and bots meshed", async () => {
      const s = await state(page);
      return s.peers.length === 2 && bots.every((b) => b.connectedPeers.length === 2) ? true : undefined;
    });
    const me = first.entity;
    bots[0]!.move(first.me.x + 3, first.me.y + 2);
    await waitFor("the browser sees the bot's move", async () =>
      (await state(page)).world.some((e) => e.id === bots[0]!.entity && e.x === first.me.x + 3)
        ? true
        : undefined,
    );
    await page.focus("#map");
    await page.keyboard.press("ArrowRight");
    const moved = await state(page);
    await waitFor("the bots hear the browser", async () =>
      bots.every((b) => b.world.get(me)?.x === moved.me.x) ? true : undefined,
    );

    const sent: string[] = [];
    let chatting = true;
    const chatter = (async () => {
      for (let i = 0; chatting; i++) {
        sent.push(`line ${i}`);
        bots[1]!.chat(`line ${i}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    })();
    await setPolicy(false);
    await waitFor("the browser in server mode", async () =>
      (await state(page)).badge === "Server" ? true : undefined,
    );
    await setPolicy(true);
    await waitFor("the browser back in P2P", async () => {
      const s = await state(page);
      return s.badge === "P2P" && s.peers.length === 2 ? true : undefined;
    });
    chatting = false;
    await chatter;
    const final = await waitFor("every chat line reached the browser", async () => {
      const s = await state(page);
      return sent.every((l) => s.chat.some((c) => c.endsWith(`: ${l}`))) ? s : undefined;
    });
    expect(final.seqErrors).toEqual([]);
    for (const b of bots) expect(b.seqErrors).toEqual([]);
    await page.screenshot({ path: join(testResultsDir(), "browser-cluster.png") });
  });
});
