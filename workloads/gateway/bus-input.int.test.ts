// Core NATS publishes through a bus outage (routing.ts), found by `npm run chaos -- bus`. The NATS
// client discards what was published while it reconnects, and a publish reaches nobody while the
// map server's subscriptions are not back on the restarted server. So:
// - chats typed during an outage never reached anyone: the gateway now holds a map's inputs from
//   the moment its connection drops until the owner is heard from again;
// - a resync request made while the gateway's control connection was still reconnecting was lost,
//   and when the map server had come back first (its own resend already done) the clients'
//   views stayed empty: the gateway now asks once its control connection is back.
// Each case staggers the reconnects with the connections' reconnect waits. Real gateway, real map
// server, a NATS server of the test's own.
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, inject, it } from "vitest";
import { connectFlagStore } from "../../platform/flags/etcd.ts";
import { newRegistry } from "../../platform/http.ts";
import { silentLogger } from "../../platform/log.ts";
import { connectNats } from "../../platform/stores/access.ts";
import { startTestGateway } from "../../testkit/gateway.ts";
import { startNats, storePki } from "../../testkit/local/services.ts";
import {
  createCharacters,
  type Services,
  servicesFrom,
  unique,
  until,
} from "../../testkit/map-server/harness.ts";
import type { Proc } from "../../testkit/processes.ts";
import { GameClient } from "../client/client.ts";
import { createPool } from "../db/pool.ts";
import { FixedModes } from "../map-server/modes.ts";
import { MapServer } from "../map-server/server.ts";
import { openMap } from "../map-server/sim/maps.ts";
import { createRedis } from "../runtime/redis.ts";
import { staticDirectory } from "./gateway.ts";

let n = 0;

/** A gateway and a map server on a NATS of the test's own, with their reconnect waits. */
async function stack(o: { mapServerWait: number; controlWait?: number }) {
  const map = `bifield${n++}`;
  const zone = unique("bz");
  const dir = mkdtempSync(join(tmpdir(), "bus-input-test-"));
  mkdirSync(join(dir, "logs"));
  const pki = storePki(join(inject("localEnv").stateDir, "store-pki"));
  const started = await startNats(dir, undefined, pki);
  let nats: Proc = started.proc;
  const svc: Services = { ...servicesFrom(inject("localEnv")), natsUrl: started.url, nats: started.access };
  const forever = { maxReconnectAttempts: -1 };
  const control = o.controlWait
    ? await connectNats(svc.nats, { reconnectTimeWait: o.controlWait, ...forever })
    : undefined;
  const gw = await startTestGateway({
    natsUrl: svc.natsUrl,
    directory: staticDirectory({ [zone]: [map] }),
    options: control ? { control } : {},
  });
  const msNc = await connectNats(svc.nats, { reconnectTimeWait: o.mapServerWait, ...forever });
  const etcd = connectFlagStore(svc.etcd);
  const redis = createRedis(svc.redis);
  const pool = createPool(svc.postgres, { max: 3 });
  const server = new MapServer({
    region: gw.region,
    zone,
    pod: "pod-bi",
    maps: [map],
    threads: 1,
    tickHz: 20,
    maxPlayers: 10,
    nc: msNc,
    etcd,
    redis,
    pg: pool,
    modes: new FixedModes(),
    log: silentLogger(),
    registry: newRegistry(),
    prefix: `/${unique("bitest")}/v1/`,
    redisPrefix: `${unique("bitest")}:`,
    mapDef: () => openMap(map, 64, 64),
  });
  await server.start();
  await until("map owned", () => (server.maps().includes(map) ? true : undefined));
  await msNc.flush(); // its subscriptions are on the NATS server before anyone joins (harness owns())
  const [alice, bob] = await createCharacters(svc.databaseUrl, [
    { name: unique("Bia"), map, x: 30, y: 30 },
    { name: unique("Bib"), map, x: 32, y: 31 },
  ]);
  const a = await GameClient.connect({ url: gw.url, token: await gw.token(alice!, map, "Alice") });
  const b = await GameClient.connect({ url: gw.url, token: await gw.token(bob!, map, "Bob") });
  await until("each sees the other", () =>
    a.world.has(b.entity) && b.world.has(a.entity) ? true : undefined,
  );
  const port = Number(new URL(svc.natsUrl).port);
  return {
    gw,
    a,
    b,
    msNc,
    /** Stops NATS, runs `meanwhile`, starts it again on the same port and directory. */
    async restart(meanwhile: () => void = () => {}) {
      await nats.stop();
      meanwhile();
      nats = (await startNats(dir, port, pki)).proc;
    },
    async close() {
      await a.close().catch(() => undefined);
      await b.close().catch(() => undefined);
      await gw.stop();
      await control?.drain().catch(() => undefined);
      await server.close();
      await msNc.drain().catch(() => undefined);
      redis.disconnect();
      etcd.close();
      await pool.end();
      await nats.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

describe("core NATS publishes through a bus outage", () => {
  const open: Array<() => Promise<void>> = [];
  afterAll(async () => {
    for (const c of open) await c().catch(() => undefined);
  });

  it("delivers chats said while the map server was not back on the bus yet", async () => {
    // The map server comes back well after the gateway (whose connections wait 2 s between attempts).
    const s = await stack({ mapServerWait: 6000 });
    open.push(s.close);
    const heard: string[] = [];
    s.b.onMessage((m) => {
      if (m.type === "chatMsg") heard.push(m.text);
    });
    s.a.chat("before");
    await until("bob hears the chat before the outage", () => (heard.includes("before") ? true : undefined));
    await s.restart(() => s.a.chat("during"));
    await until("the gateway is back", () => (s.gw.gateway.stats.resyncs > 0 ? true : undefined), 30_000);
    s.a.chat("after");
    await until(
      "bob hears both chats",
      () => (heard.includes("during") && heard.includes("after") ? true : undefined),
      30_000,
    );
    expect(heard).toEqual(["before", "during", "after"]);
    expect(s.a.seqErrors).toEqual([]);
    expect(s.b.seqErrors).toEqual([]);
  }, 90_000);

  it("resends the views when the gateway's control connection comes back last", async () => {
    // Map server first, then the gateway's data connection (2 s), its control connection last.
    const s = await stack({ mapServerWait: 300, controlWait: 7000 });
    open.push(s.close);
    await s.restart();
    await until(
      "both told to forget their views",
      () =>
        (s.a.counts.get("viewReset") ?? 0) > 0 && (s.b.counts.get("viewReset") ?? 0) > 0 ? true : undefined,
      30_000,
    );
    // Nobody moves: only a resent view shows them to each other again.
    await until(
      "each sees the other again",
      () => (s.a.world.has(s.b.entity) && s.b.world.has(s.a.entity) ? true : undefined),
      30_000,
    );
    expect(s.a.seqErrors).toEqual([]);
    expect(s.b.seqErrors).toEqual([]);
  }, 90_000);
});
