// Bots log in the way players do: sign-up and login at the login server, character creation
// and select at the char server, then the gateway with the character token it hands out.
import { afterAll, beforeAll, expect, inject, it } from "vitest";
import { connectNats } from "../../platform/stores/access.ts";
import {
  capturingLogger,
  freshDatabase,
  keysetFile,
  testCharConfig,
  testLoginConfig,
  uniquePrefix,
} from "../../testkit/auth.ts";
import { startTestGateway } from "../../testkit/gateway.ts";
import { StandInMapServer } from "../../testkit/map-server-standin.ts";
import type { KeysetDocument } from "../auth/keyset.ts";
import type { RunningService } from "../auth/service.ts";
import { startCharServer } from "../char-server/server.ts";
import { ensureEventStream } from "../gateway/events.ts";
import { staticDirectory } from "../gateway/gateway.ts";
import { startLoginServer } from "../login-server/server.ts";
import { runBots } from "./bots.ts";

const env = inject("localEnv");
let login: RunningService;
let char: RunningService;
let keyset: KeysetDocument;

beforeAll(async () => {
  const keys = await keysetFile("k1");
  const shared = {
    databaseUrl: await freshDatabase(env.databaseUrl!, "bots"),
    redisUrl: env.redisUrl!,
    redisPrefix: uniquePrefix("bots"),
    keysetFile: keys.path,
  };
  login = await startLoginServer(testLoginConfig(shared), { log: capturingLogger("login").log });
  char = await startCharServer(testCharConfig(shared), { log: capturingLogger("char").log });
  keyset = keys.doc;
});

afterAll(async () => {
  await Promise.all([login?.close(), char?.close()]);
});

it("signs bots up, creates and selects their characters, and plays them through the gateway", async () => {
  // More new bots from one address than its failed-login limit (20): signing up before logging
  // in keeps them from counting as failed logins, which would lock the address out.
  const count = 24;
  // The char server's start point in the test configuration is prontera.
  const gw = await startTestGateway({
    natsUrl: env.natsUrl!,
    keyset,
    directory: staticDirectory({ z: ["prontera"] }),
  });
  const nc = await connectNats(env.nats!);
  await ensureEventStream(nc);
  const town = new StandInMapServer({ nc, region: gw.region, zone: "z", maps: ["prontera"], mode: "server" });
  town.start();
  const accounts = { loginUrl: login.url, charUrl: char.url };
  try {
    for (const round of ["first: sign up and create", "second: log in and select"]) {
      const fleet = await runBots({
        count,
        gatewayUrl: gw.url,
        maps: [],
        accounts,
        idPrefix: `acct${process.pid % 1000}_`,
        failFast: true,
      });
      expect(fleet.stats(), round).toMatchObject({ connected: count, failed: 0 });
      expect(new Set(fleet.clients.map((c) => c.map))).toEqual(new Set(["prontera"]));
      await fleet.stop();
    }
  } finally {
    await town.stop();
    await gw.stop();
    await nc.drain();
  }
});

it("refuses to run with neither or both ways of getting tokens", async () => {
  await expect(runBots({ count: 1, gatewayUrl: "ws://127.0.0.1:1", maps: ["m"] })).rejects.toThrow(
    /exactly one of keyset/,
  );
});
