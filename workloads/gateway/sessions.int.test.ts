// A playing client's connection lasts only as long as its login session: a logout or a
// revocation closes it with "session_ended" within the check period, with real Redis sessions,
// real NATS and a stand-in map server.
import { randomBytes } from "node:crypto";
import type { NatsConnection } from "@nats-io/transport-node";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { closeCodeOf } from "../../platform/protocol/schema.ts";
import { connectNats, redisOptions } from "../../platform/stores/access.ts";
import { sessionBoundTokens } from "../../testkit/auth.ts";
import { startTestGateway, type TestGateway } from "../../testkit/gateway.ts";
import { StandInMapServer } from "../../testkit/map-server-standin.ts";
import { SessionStore } from "../auth/sessions.ts";
import { GameClient } from "../client/client.ts";
import { ensureEventStream } from "./events.ts";
import { staticDirectory } from "./gateway.ts";

const env = inject("localEnv");
const id = randomBytes(4).toString("hex");
const map = "prt_fild01";

describe("gateway and login sessions", () => {
  let redis: Redis;
  let sessions: SessionStore;
  let gw: TestGateway;
  let pod: NatsConnection;
  let field: StandInMapServer;
  let token: (characterId: string, sessionId: string) => Promise<string>;

  beforeAll(async () => {
    redis = new Redis(redisOptions(env.redis!));
    sessions = new SessionStore(redis, `gwsess${id}:`);
    const signer = await sessionBoundTokens(sessions, map);
    const { keyset, auth } = signer;
    token = signer.token;
    gw = await startTestGateway({
      natsUrl: env.natsUrl!,
      keyset,
      directory: staticDirectory({ z1: [map] }),
      options: {
        verify: (t) => auth.verify(t),
        sessionLive: (c) => auth.sessionLive(c),
        sessionCheckMs: 200,
      },
    });
    pod = await connectNats(env.nats!);
    await ensureEventStream(pod);
    field = new StandInMapServer({ nc: pod, region: gw.region, zone: "z1", maps: [map] });
    field.start();
  });

  afterAll(async () => {
    await gw?.stop();
    await field?.stop();
    await pod?.drain();
    redis?.disconnect();
  });

  it("closes a playing client whose session is revoked, with session_ended, and only that one", async () => {
    const now = Date.now();
    for (const [sid, acc] of [
      [`a-${id}`, "acc-1"],
      [`b-${id}`, "acc-2"],
    ])
      await sessions.create(sid!, { accountId: acc!, username: "u", createdAt: now, address: "" }, 60_000);
    const a = await GameClient.connect({ url: gw.url, token: await token("1", `a-${id}`) });
    const b = await GameClient.connect({ url: gw.url, token: await token("2", `b-${id}`) });
    // Several checks pass while the sessions live.
    await new Promise((r) => setTimeout(r, 800));
    expect(a.ws.open).toBe(true);

    await sessions.revoke(`a-${id}`);
    const closed = await a.closed;
    expect(closed).toEqual({ code: closeCodeOf("session_ended"), reason: "session_ended" });
    expect(b.ws.open).toBe(true);
    expect(await b.ping()).toBeGreaterThanOrEqual(0); // still served
    await b.close();
  });
});
