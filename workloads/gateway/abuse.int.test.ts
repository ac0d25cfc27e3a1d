// Slow and malicious clients: each is closed with its reason code (or cut off when it cannot
// even read one), and the gateway goes on serving everyone else.
import type { NatsConnection } from "@nats-io/transport-node";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { WebSocket } from "ws";
import { encode, MAX_CLIENT_FRAME, PROTOCOL_VERSION } from "../../platform/protocol/messages.ts";
import { closeCodeOf, type ReasonCode } from "../../platform/protocol/schema.ts";
import { connectNats } from "../../platform/stores/access.ts";
import { startTestGateway, type TestGateway } from "../../testkit/gateway.ts";
import { StandInMapServer } from "../../testkit/map-server-standin.ts";
import { arbitraryMessage } from "../../testkit/protocol-arbitrary.ts";
import { Keyset, staticKeys } from "../auth/keyset.ts";
import { signCharacterToken } from "../auth/tokens.ts";
import { GameClient } from "../client/client.ts";
import { ensureEventStream } from "./events.ts";
import { staticDirectory } from "./gateway.ts";

const env = inject("localEnv");

async function until(what: string, cond: () => boolean, timeoutMs = 60_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

interface Raw {
  ws: WebSocket;
  closed: Promise<number>;
  send(data: Uint8Array | string): void;
}

function raw(url: string): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    const closed = new Promise<number>((r) => ws.on("close", (code) => r(code)));
    ws.on("error", () => {});
    ws.once("open", () => resolve({ ws, closed, send: (d) => ws.send(d) }));
    ws.once("unexpected-response", () => reject(new Error("refused")));
  });
}

describe("slow and malicious clients", () => {
  let gw: TestGateway;
  let pod: NatsConnection;
  let field: StandInMapServer;
  let heavy: StandInMapServer;
  let good: GameClient;

  beforeAll(async () => {
    gw = await startTestGateway({
      natsUrl: env.natsUrl!,
      directory: staticDirectory({ z1: ["prt_fild01"], z2: ["gef_fild00"] }),
      options: { limits: { authTimeoutMs: 1500, maxBufferedBytes: 64 * 1024 } },
    });
    pod = await connectNats(env.nats!);
    await ensureEventStream(pod);
    field = new StandInMapServer({ nc: pod, region: gw.region, zone: "z1", maps: ["prt_fild01"] });
    // A crowded map: 3000 walking mobs make every client's update about 60 KB per tick.
    heavy = new StandInMapServer({
      nc: pod,
      region: gw.region,
      zone: "z2",
      maps: ["gef_fild00"],
      mobs: 3000,
      moving: 3000,
    });
    field.start();
    heavy.start();
    good = await GameClient.connect({ url: gw.url, token: await gw.token("1", "prt_fild01") });
  });

  afterAll(async () => {
    await good?.close();
    await gw?.stop();
    await field?.stop();
    await heavy?.stop();
    await pod?.drain();
  });

  async function authed(characterId: string, map = "prt_fild01"): Promise<Raw> {
    // Signed before connecting: the auth timer runs from the connection.
    const token = await gw.token(characterId, map);
    const r = await raw(gw.url);
    const welcomed = new Promise<void>((resolve) => r.ws.once("message", () => resolve()));
    r.send(encode({ type: "hello", token, kind: "legacy" }));
    await welcomed;
    return r;
  }

  async function expectClosed(r: Raw, reason: ReasonCode): Promise<void> {
    expect(await r.closed).toBe(closeCodeOf(reason));
  }

  it("closes bad frames with their reason codes", async () => {
    const cases: [Uint8Array | string, ReasonCode][] = [
      [Uint8Array.of(PROTOCOL_VERSION, 3, 1), "bad_frame"], // truncated move
      ["hello?", "bad_frame"], // text frame
      [Uint8Array.of(99, 3, 0, 0, 0, 0, 1, 0, 1, 0), "unsupported_version"],
      [Uint8Array.of(PROTOCOL_VERSION, 250), "unknown_type"],
      [encode({ type: "pong", t: 1, serverTime: 2 }), "unexpected_type"], // a server message
      [encode({ type: "hello", token: "again", kind: "legacy" }), "unexpected_type"], // second hello
    ];
    let id = 100;
    await Promise.all(
      cases.map(async ([frame, reason]) => {
        const r = await authed(String(id++));
        r.send(frame);
        await expectClosed(r, reason);
      }),
    );
    // Oversized frames never get buffered: ws refuses them with 1009 (message too big).
    const big = await authed(String(id++));
    big.send(new Uint8Array(MAX_CLIENT_FRAME + 1));
    expect(await big.closed).toBe(1009);
    expect(await good.ping()).toBeGreaterThanOrEqual(0);
  });

  it("refuses unauthenticated, tampered, expired and silent clients", async () => {
    const early = await raw(gw.url);
    early.send(encode({ type: "move", n: 1, x: 1, y: 1 }));
    await expectClosed(early, "not_authenticated");

    const token = await gw.token("200", "prt_fild01");
    const [h, p, s] = token.split(".") as [string, string, string];
    const payload = JSON.parse(Buffer.from(p, "base64url").toString());
    const forged = `${h}.${Buffer.from(JSON.stringify({ ...payload, chr: "1" })).toString("base64url")}.${s}`;
    const tampered = await raw(gw.url);
    tampered.send(encode({ type: "hello", token: forged, kind: "legacy" }));
    await expectClosed(tampered, "auth_failed");

    const keys = staticKeys(await Keyset.parse(JSON.stringify(gw.keyset)));
    const old = await signCharacterToken(
      keys,
      { accountId: "a", characterId: "201", characterName: "old", map: "prt_fild01", sessionId: "s" },
      60_000,
      Date.now() - 3_600_000,
    );
    const expired = await raw(gw.url);
    expired.send(encode({ type: "hello", token: old.token, kind: "legacy" }));
    await expectClosed(expired, "auth_failed");

    const silent = await raw(gw.url);
    await expectClosed(silent, "auth_timeout");
    expect(good.seqErrors).toEqual([]);
  });

  it("closes a flooding client and the older connection of a character", async () => {
    const flood = await authed("300");
    for (let i = 0; i < 500; i++) flood.send(encode({ type: "move", n: i, x: 1, y: 1 }));
    await expectClosed(flood, "rate_limited");

    const first = await authed("301");
    const second = await authed("301");
    await expectClosed(first, "duplicate_session");
    expect(second.ws.readyState).toBe(WebSocket.OPEN);
    second.ws.close();
  });

  it("survives a crowd of fuzzing clients", async () => {
    const frames = fc.sample(arbitraryMessage(), { numRuns: 400, seed: 7 }).map((m, i) => {
      const f = encode(m);
      // Half of them with a byte flipped.
      if (f.length > 2 && i % 2 === 0) f[2 + ((i * 7) % (f.length - 2))]! ^= 0xff;
      return f;
    });
    const crowd = await Promise.all(Array.from({ length: 40 }, (_, i) => authed(String(400 + i))));
    crowd.forEach((r, i) => {
      for (let k = 0; k < 10; k++) r.send(frames[(i * 10 + k) % frames.length]!);
    });
    // Every fuzzing client either still plays (its frames were valid inputs) or was closed
    // with a protocol reason; the good client is unaffected.
    const codes = await Promise.all(
      crowd.map((r) =>
        // Open after 8 s (a busy machine may take seconds to get through 400 frames): still playing.
        Promise.race([r.closed, new Promise<number>((res) => setTimeout(() => res(0), 8000))]),
      ),
    );
    for (const c of codes) expect([0, 1009, ...[0, 1, 2, 3, 7, 8, 10].map((i) => 4000 + i)]).toContain(c);
    expect(codes.filter((c) => c >= 4000).length).toBeGreaterThan(10);
    for (const r of crowd) r.ws.terminate();
    expect(await good.ping()).toBeGreaterThanOrEqual(0);
    expect(good.seqErrors).toEqual([]);
  });

  it("drops a client that stops reading; memory stays bounded", async () => {
    const watcher = await GameClient.connect({
      url: gw.url,
      token: await gw.token("500", "gef_fild00"),
      decodeMode: "light",
    });
    const before = gw.gateway.stats.droppedSlow;
    const slow = await authed("501", "gef_fild00");
    // Stop reading: the kernel buffers fill, then the gateway's buffered amount passes its cap.
    slow.ws.pause();
    await until("the slow client is dropped", () => gw.gateway.stats.droppedSlow > before);
    expect(gw.gateway.stats.droppedSlow).toBe(before + 1);
    slow.ws.resume();
    await slow.closed;
    // The client that reads keeps getting every update in order.
    const seen = watcher.counts.get("aoi") ?? 0;
    await until("the reading client still gets updates", () => (watcher.counts.get("aoi") ?? 0) > seen + 5);
    expect(watcher.seqErrors).toEqual([]);
    await watcher.close();
  });
});
