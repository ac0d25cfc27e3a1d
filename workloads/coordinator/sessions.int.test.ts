// The coordinator admits a peer only while its login session lives, and drops it when the
// session ends (logout or revocation), with real Redis sessions and real NATS.
import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { WebSocket } from "ws";
import { GatewayAuth } from "../auth/gateway.ts";
import { Keyset, newKeysetDocument, staticKeys } from "../auth/keyset.ts";
import { SessionStore } from "../auth/sessions.ts";
import { signCharacterToken } from "../auth/tokens.ts";
import { eventually } from "../runtime/flags/testing.ts";
import { NO_QUALITY } from "./mesh.ts";
import { decodeCoord, encodeCoord, type FromCoordinator } from "./messages.ts";
import { startTestCoordinator, type TestCoordinator } from "./testing.ts";

const env = inject("localEnv");
const id = randomBytes(4).toString("hex");
const map = "prt_fild08";

/** A raw signaling client that heartbeats and records what it is told. */
async function join(url: string, token: string) {
  const ws = new WebSocket(url);
  const got: FromCoordinator[] = [];
  let closed: { code: number; reason: string } | undefined;
  ws.on("message", (d) => got.push(decodeCoord(d as Buffer, "s2c")));
  ws.on("close", (code, reason) => {
    closed = { code, reason: reason.toString() };
  });
  await new Promise((r, j) => ws.once("open", r).once("error", j));
  ws.send(encodeCoord({ type: "join", token, session: "s1", entity: 1, x: 10, y: 10 }));
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

describe("coordinator and login sessions", () => {
  let redis: Redis;
  let sessions: SessionStore;
  let coord: TestCoordinator;
  let token: (characterId: string, sessionId: string) => Promise<string>;

  beforeAll(async () => {
    redis = new Redis(env.redisUrl!);
    sessions = new SessionStore(redis, `coordsess${id}:`);
    const keyset = await newKeysetDocument("k1");
    const keys = staticKeys(await Keyset.parse(JSON.stringify(keyset)));
    const auth = new GatewayAuth({ keys, sessions });
    token = async (characterId, sessionId) =>
      (
        await signCharacterToken(
          keys,
          { accountId: `acc-${characterId}`, characterId, characterName: `n${characterId}`, map, sessionId },
          60_000,
        )
      ).token;
    coord = await startTestCoordinator({
      natsUrl: env.natsUrl!,
      region: `sr${id}`,
      replica: "coord-a",
      keys: { keyset, auth, token: (c) => token(c, "unused") },
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
    await new Promise((r) => setTimeout(r, 800));
    expect(a.closed()).toBeUndefined();

    await sessions.revoke(`live-${id}`);
    await eventually("the revoked peer is told and closed", () => a.refused() && a.closed());
    expect(a.refused()).toMatchObject({ reason: "session_ended" });
    expect(b.closed()).toBeUndefined();
    expect(coord.coordinator.stats.peers).toBe(1);
    b.ws.close();
  });
});
