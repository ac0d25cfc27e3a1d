// The browser client in a real browser (Debian's chromium, headless, through playwright-core):
// a person signs up, creates a character and plays it on the canvas; it meshes with werift bots
// through the coordinator (the browser's own RTCPeerConnection on one side, werift on the
// other), they see each other's moves both ways, and a P2PPolicy edit moves it to server mode
// and back with no server-authoritative message lost (sequence numbers, every chat line).
//
// Everything but the browser runs in this process on the local services: the operator's flag
// plane on the kube-apiserver, a gateway on the flags, a coordinator, a stand-in map server, the
// login and char servers on PostgreSQL and Redis.
import { join } from "node:path";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { P2PClientConfig } from "../../platform/protocol/p2pconfig.ts";
import { launchChromium, signUpAndPlay, testResultsDir } from "../../testkit/browser.ts";
import { eventually } from "../../testkit/flags.ts";
import { type P2PRegion, startP2PRegion } from "../../testkit/p2p-region.ts";
import { P2PClient } from "../client/p2p.ts";
import { startLoopbackStun } from "../coordinator/stun.ts";

const env = inject("localEnv");

interface PageState {
  screen: string;
  badge: string;
  mode: string;
  entity: number;
  me: { x: number; y: number };
  peers: string[];
  world: { id: number; kind: string; x: number; y: number; name: string }[];
  lastSeq: number;
  seqErrors: string[];
  config?: P2PClientConfig;
  chat: string[];
  peerMoves: number;
  configVersions: string[];
}

let region: P2PRegion;
let browser: Browser;
const stops: (() => Promise<unknown>)[] = [];

const state = (page: Page) =>
  page.evaluate(() => (globalThis as unknown as { hybrid: { state(): PageState } }).hybrid.state());

beforeAll(async () => {
  region = await startP2PRegion(env, "web");
  browser = await launchChromium();
});

afterAll(async () => {
  await browser?.close();
  for (const s of stops.reverse()) await s().catch(() => undefined);
  await region?.stop();
});

describe("the browser client in chromium", () => {
  it("signs up, plays P2P with werift bots both ways, and goes to server mode and back with nothing lost", async () => {
    const stun = await startLoopbackStun();
    stops.push(() => stun.close());
    const page = await browser.newPage({ viewport: { width: 760, height: 1000 } });
    const logs: string[] = [];
    page.on("console", (m) => logs.push(m.text()));
    page.on("pageerror", (e) => logs.push(`pageerror: ${e.message}`));
    const { gw, map: MAP } = region;
    const origin = gw.url.replace(/^ws/, "http");
    await page.goto(`${origin}/`);

    // Sign up, create a character, pick it: the page's own forms.
    await signUpAndPlay(page);
    const first = await eventually("the browser plays P2P", async () => {
      const s = await state(page);
      return s.badge === "P2P" && s.config?.mode === "p2p" ? s : undefined;
    });
    expect(first.config).toMatchObject({
      zone: "fields",
      map: MAP,
      enabled: true,
      rollout: { included: true },
    });

    // Two werift bots on the same map: one mesh of three.
    const bots: P2PClient[] = [];
    for (const id of ["8001", "8002"]) {
      const bot = await P2PClient.connect({
        url: gw.url,
        token: await gw.token(id, MAP, `Bot${id}`),
        ice: stun.ice,
      });
      stops.push(() => bot.close());
      bots.push(bot);
    }
    const meshed = await eventually(
      "browser and bots meshed",
      async () => {
        const s = await state(page);
        return s.peers.length === 2 && bots.every((b) => b.connectedPeers.length === 2) ? s : undefined;
      },
      60_000,
    ).catch(async (err) => {
      throw new Error(
        `${(err as Error).message}\nbrowser: ${JSON.stringify(await state(page))}\n${logs.join("\n")}`,
      );
    });
    const me = meshed.entity;

    // A bot moves: the browser hears it over its data channel.
    const heard = new Map<P2PClient, number>(bots.map((b) => [b, 0]));
    for (const b of bots)
      b.onPeerMessage = (_from, m) => {
        if (m.type === "peerMove" && m.entity === me) heard.set(b, (heard.get(b) ?? 0) + 1);
      };
    bots[0]!.move(first.me.x + 4, first.me.y + 2);
    await eventually("the browser sees the bot's move", async () => {
      const s = await state(page);
      return (
        s.peerMoves > 0 &&
        s.world.some((e) => e.id === bots[0]!.entity && e.x === first.me.x + 4 && e.y === first.me.y + 2)
      );
    });
    // The browser moves with the keyboard: both bots hear it directly.
    await page.focus("#map");
    await page.keyboard.press("ArrowRight");
    await page.keyboard.press("ArrowDown");
    const moved = await state(page);
    expect(moved.me).toEqual({ x: first.me.x + 1, y: first.me.y + 1 });
    await eventually("both bots hear the browser's moves over WebRTC", () =>
      bots.every(
        (b) =>
          (heard.get(b) ?? 0) >= 2 && b.world.get(me)?.x === moved.me.x && b.world.get(me)?.y === moved.me.y,
      ),
    );

    // The page reports its P2P moves to the gateway too: the map server has them (its view of the
    // browser comes back in the page's own AOI) before the policy turns P2P off. Otherwise the
    // page, once in server mode, could take the server's older position and walk from there.
    await eventually("the map server has the browser's P2P moves", async () => {
      const self = (await state(page)).world.find((e) => e.id === me);
      return self?.x === moved.me.x && self.y === moved.me.y;
    });

    // A bot chats all along while the policy turns P2P off and on again.
    const sent: string[] = [];
    let chatting = true;
    const chatter = (async () => {
      for (let i = 0; chatting; i++) {
        const line = `line ${i}`;
        sent.push(line);
        bots[1]!.chat(line);
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    await region.setPolicy({ enabled: false });
    await eventually("the browser in server mode", async () => {
      const s = await state(page);
      return s.badge === "Server" && s.mode === "server" && s.config?.enabled === false;
    });
    // In server mode the browser walks through the server; the bots see it through the gateway.
    await page.keyboard.press("ArrowLeft");
    const walked = await eventually("the server walked the browser", async () => {
      const s = await state(page);
      return s.me.x === moved.me.x - 1 && s.me.y === moved.me.y ? s : undefined;
    });
    await eventually("a bot sees the server-side walk", () => {
      const seen = bots[0]!.world.get(me);
      return seen?.x === walked.me.x && seen.y === walked.me.y;
    });

    await region.setPolicy({ enabled: true });
    await eventually(
      "the browser back in P2P, meshed again",
      async () => {
        const s = await state(page);
        return s.badge === "P2P" && s.peers.length === 2;
      },
      60_000,
    );
    chatting = false;
    await chatter;
    const final = await eventually("every chat line reached the browser", async () => {
      const s = await state(page);
      return sent.every((l) => s.chat.some((c) => c.endsWith(`: ${l}`))) ? s : undefined;
    });
    expect(final.seqErrors).toEqual([]);
    expect(final.configVersions.length).toBeGreaterThanOrEqual(3);
    for (const b of bots) expect(b.seqErrors).toEqual([]);

    // A bot moves once more, over the new mesh, and the page shows it.
    bots[1]!.move(first.me.x - 5, first.me.y - 3);
    await eventually("the browser sees the bot over the new mesh", async () =>
      (await state(page)).world.some(
        (e) => e.id === bots[1]!.entity && e.x === first.me.x - 5 && e.y === first.me.y - 3,
      ),
    );
    const shot = join(testResultsDir(), "browser-p2p.png");
    await page.screenshot({ path: shot });
    process.stdout.write(`screenshot: ${shot}\n`);
  }, 180_000);
});
