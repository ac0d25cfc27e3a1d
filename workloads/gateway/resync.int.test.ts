// A bus outage loses AOI frames (deltas over core NATS): when NATS comes back, the gateway tells
// its clients to forget their views and the map server sends the whole views again, so nobody
// plays on with ghosts or missing neighbours. Real gateway, real map server, and a NATS server of
// the test's own that it stops and starts again on the same port.
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { startTestGateway, type TestGateway } from "../../testkit/gateway.ts";
import { startNats, storePki } from "../../testkit/local/services.ts";
import {
  createCharacters,
  type Services,
  servicesFrom,
  startTestServer,
  type TestServer,
  unique,
  until,
} from "../../testkit/map-server/harness.ts";
import type { Proc } from "../../testkit/processes.ts";
import { GameClient } from "../client/client.ts";
import { openMap } from "../map-server/sim/maps.ts";
import { staticDirectory } from "./gateway.ts";

const map = "rsfield";
const zone = unique("rz");

describe("views after a bus outage", () => {
  const dir = mkdtempSync(join(tmpdir(), "resync-test-"));
  // The suite's store PKI: in-process clients take its credentials from the environment.
  const pki = storePki(join(inject("localEnv").stateDir, "store-pki"));
  let nats: Proc;
  let svc: Services;
  let gw: TestGateway;
  let ms: TestServer;
  const clients: GameClient[] = [];

  beforeAll(async () => {
    mkdirSync(join(dir, "logs"));
    const started = await startNats(dir, undefined, pki);
    nats = started.proc;
    svc = { ...servicesFrom(inject("localEnv")), natsUrl: started.url, nats: started.access };
    gw = await startTestGateway({ natsUrl: svc.natsUrl, directory: staticDirectory({ [zone]: [map] }) });
    ms = await startTestServer(svc, {
      region: gw.region,
      zone,
      pod: "pod-r",
      maps: [map],
      prefix: `/${unique("rstest")}/v1/`,
      redisPrefix: `${unique("rstest")}:`,
      threads: 1,
      mapDef: () => openMap(map, 80, 80),
    });
    await until("map owned", () => ms.owns(map));
  });

  afterAll(async () => {
    for (const c of clients) await c.close().catch(() => undefined);
    await gw?.stop();
    await ms?.close();
    await nats?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("after NATS restarts, clients drop their views and get them whole again", async () => {
    const [alice, bob] = await createCharacters(svc.databaseUrl, [
      { name: unique("Ali"), map, x: 40, y: 40 },
      { name: unique("Bob"), map, x: 42, y: 41 },
    ]);
    const a = await GameClient.connect({ url: gw.url, token: await gw.token(alice!, map, "Alice") });
    const b = await GameClient.connect({ url: gw.url, token: await gw.token(bob!, map, "Bob") });
    clients.push(a, b);
    await until("each sees the other", () =>
      a.world.has(b.entity) && b.world.has(a.entity) ? true : undefined,
    );

    const port = Number(new URL(svc.natsUrl).port);
    await nats.stop();
    nats = (await startNats(dir, port, pki)).proc;

    await until("the gateway resynced", () => (gw.gateway.stats.resyncs > 0 ? true : undefined), 60_000);
    await until("both told to forget their views", () =>
      (a.counts.get("viewReset") ?? 0) > 0 && (b.counts.get("viewReset") ?? 0) > 0 ? true : undefined,
    );
    // Nobody moved: only a resent view can show them to each other again.
    await until("each sees the other again", () =>
      a.world.has(b.entity) && b.world.has(a.entity) ? true : undefined,
    );
    expect(a.seqErrors).toEqual([]);
    expect(b.seqErrors).toEqual([]);
    // And play goes on over the new connection.
    a.move(36, 40);
    await until("b sees a walk", () => (b.world.get(a.entity)?.x === 36.5 ? true : undefined));
  });
});
