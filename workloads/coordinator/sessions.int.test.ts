// Who the coordinator admits: a peer whose login session lives (dropped when it ends: logout or
// revocation), with real Redis sessions and real NATS; and only on the map a gateway says the
// session plays, under that character.
import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { WebSocket } from "ws";
import { redisOptions } from "../../platform/stores/access.ts";
import { sleep } from "../../platform/time.ts";
import { sessionBoundTokens } from "../../testkit/auth.ts";
import { startTestCoordinator, type TestCoordinator, type TestKeys } from "../../testkit/coordinator.ts";
import { eventually } from "../../testkit/flags.ts";
import { SessionStore } from "../auth/sessions.ts";
import { MeshClient } from "../client/mesh.ts";
import { NO_QUALITY } from "./mesh.ts";
import { decodeCoord, encodeCoord, type FromCoordinator } from "./messages.ts";

const env = inject("localEnv");
const id = randomBytes(4).toString("hex");
const map = "prt_fild08";

/** A raw signaling client that heartbeats and records what it is told. */
async function join(url: string, token: string, session = "s1") {
  const ws = new WebSocket(url);
  const got: FromCoordinator[] = [];
  let closed: { code: number; reason: string } | undefined;
  ws.on("message", (d) => got.push(decodeCoord(d as Buffer, "s2c")));
  ws.on("close", (code, reason) => {
    closed = { code, reason: reason.toString() };
  });
  await new Promise((r, j) => ws.once("open", r).once("error", j));
  ws.send(encodeCoord({ type: "join", token, session, entity: 1, x: 10, y: 10 }));
  const beat = setInterval(() => {
    if (ws.readyState === WebSocket.OPEN)
      ws.send(encodeCoord({ type: "heartbeat", t: Date.now(), x: 10, y: 10, q: NO_QUALITY }));
  }, 200);
  ws.on("close", () => clearInterval(beat));
  return {
    ws,
    got,
    closed: () => closed,
    refused: () =>
      got.find((m) => m.type === "refused") as (FromCoordinator & { type: "refused" }) | undefined,
  };
}

describe("who the coordinator admits", () => {
  let redis: Redis;
  let sessions: SessionStore;
  let coord: TestCoordinator;
  let token: (characterId: string, sessionId: string) => Promise<string>;
  let keys: TestKeys;

  beforeAll(async () => {
    redis = new Redis(redisOptions(env.redis!));
    sessions = new SessionStore(redis, `coordsess${id}:`);
    const signer = await sessionBoundTokens(sessions, map);
    const { keyset, auth } = signer;
    token = signer.token;
    keys = { keyset, auth, token: (c) => token(c, "unused") };
    coord = await startTestCoordinator({
      natsUrl: env.natsUrl!,
      region: `sr${id}`,
      replica: "coord-a",
      keys,
      zones: { z1: [map] },
      options: { sessionLive: (c) => auth.sessionLive(c), sessionCheckMs: 200 },
    });
  });

  afterAll(async () => {
    await coord?.stop();
    redis?.disconnect();
  });

  it("refuses a token whose login session has ended", async () => {
    const c = await join(coord.url, await token("1", `gone-${id}`));
    await eventually("refused", () => c.refused());
    expect(c.refused()).toMatchObject({ reason: "auth_failed", message: "the login session has ended" });
    await eventually("closed", () => c.closed());
    expect(coord.coordinator.stats.peers).toBe(0);

    // The SDK's mesh client gives up on such a refusal instead of retrying forever.
    const mesh = new MeshClient({
      urls: [coord.url],
      token: await token("1", `gone-${id}`),
      session: "s1",
      entity: 1,
      position: () => ({ x: 10, y: 10 }),
    });
    mesh.start();
    await eventually("the mesh client stopped", () => mesh.status === "idle");
    expect(mesh.reason).toMatch(/^refused: auth_failed/);
  });

  it("drops a joined peer when its session is revoked, and only that peer", async () => {
    const now = Date.now();
    // Account ids match the tokens': acc-<characterId>.
    await sessions.create(
      `live-${id}`,
      { accountId: "acc-2", username: "u", createdAt: now, address: "" },
      60_000,
    );
    await sessions.create(
      `other-${id}`,
      { accountId: "acc-3", username: "u", createdAt: now, address: "" },
      60_000,
    );
    const a = await join(coord.url, await token("2", `live-${id}`));
    const b = await join(coord.url, await token("3", `other-${id}`));
    await eventually(
      "both joined",
      () => a.got.some((m) => m.type === "joined") && b.got.some((m) => m.type === "joined"),
    );
    // Several session checks pass while the sessions live.
    await sleep(800);
    expect(a.closed()).toBeUndefined();

    await sessions.revoke(`live-${id}`);
    await eventually("the revoked peer is told and closed", () => a.refused() && a.closed());
    expect(a.refused()).toMatchObject({ reason: "session_ended" });
    expect(b.closed()).toBeUndefined();
    expect(coord.coordinator.stats.peers).toBe(1);
    b.ws.close();
  });

  it("meshes a peer on the map the gateway reports and refuses a session no gateway holds for it", async () => {
    const now = Date.now();
    await sessions.create(
      `loc-${id}`,
      { accountId: "acc-4", username: "u", createdAt: now, address: "" },
      60_000,
    );
    await sessions.create(
      `loc2-${id}`,
      { accountId: "acc-5", username: "u", createdAt: now, address: "" },
      60_000,
    );
    const where = new Map([["gw-session-4", { characterId: "4", map: "pay_fild01", entity: 44 }]]);
    const located = await startTestCoordinator({
      natsUrl: env.natsUrl!,
      region: `sl${id}`,
      replica: "coord-b",
      keys,
      zones: { z1: [map], z2: ["pay_fild01"] },
      options: { locate: async (session) => where.get(session) },
    });
    try {
      // The token names prt_fild08 (z1); the gateway says the session plays on pay_fild01 (z2).
      const a = await join(located.url, await token("4", `loc-${id}`), "gw-session-4");
      await eventually("joined", () => a.got.find((m) => m.type === "joined"));
      expect(a.got.find((m) => m.type === "joined")).toMatchObject({ zone: "z2" });
      // Someone else's gateway session, or one no gateway holds: refused.
      const b = await join(located.url, await token("5", `loc2-${id}`), "gw-session-4");
      await eventually("refused", () => b.refused());
      expect(b.refused()).toMatchObject({ reason: "session_unknown" });
      a.ws.close();
    } finally {
      await located.stop();
    }
  });
});
