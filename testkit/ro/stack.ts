// A whole region in one process for RO tests and the RO benchmark: the login server, the char
// server and the gateway with their RO endpoints on, a map server on the real bus, and the
// stores of the local services (a fresh database per stack).
import { randomBytes } from "node:crypto";
import type { Redis } from "ioredis";
import { type Logger, silentLogger } from "../../platform/log.ts";
import type { RoEndpoint } from "../../platform/protocol/ro/endpoint.ts";
import { requireStoreAccess } from "../../platform/stores/access.ts";
import { RoTickets } from "../../workloads/auth/ro-tickets.ts";
import type { RunningService } from "../../workloads/auth/service.ts";
import { startCharServer } from "../../workloads/char-server/server.ts";
import { startRoMap } from "../../workloads/gateway/ro.ts";
import { staticDirectory } from "../../workloads/gateway/routing.ts";
import { startLoginServer } from "../../workloads/login-server/server.ts";
import { FixedModes } from "../../workloads/map-server/modes.ts";
import type { MapDef } from "../../workloads/map-server/sim/maps.ts";
import { createRedis } from "../../workloads/runtime/redis.ts";
import { call, freshDatabase, keysetFile, testCharConfig, testLoginConfig, uniquePrefix } from "../auth.ts";
import { startTestGateway, type TestGateway } from "../gateway.ts";
import { type Services, startTestServer, type TestServer } from "../map-server/harness.ts";

export interface RoStack {
  db: string;
  map: string;
  zone: string;
  login: RunningService & { ro?: RoEndpoint };
  char: RunningService & { ro?: RoEndpoint };
  gw: TestGateway;
  roMap: RoEndpoint;
  mapServer: TestServer;
  modes: FixedModes;
  ports: { login: number; char: number; map: number };
  /** Signs up an account over the login server's HTTP API. */
  signUp(username: string, password: string): Promise<void>;
  close(): Promise<void>;
}

export async function startRoStack(o: {
  svc: Services;
  map: string;
  start: { x: number; y: number };
  mapDef?: (name: string) => MapDef;
  mode?: "server" | "p2p";
  threads?: number;
  maxPlayers?: number;
  log?: Logger;
}): Promise<RoStack> {
  const log = o.log ?? silentLogger();
  const db = await freshDatabase(o.svc.databaseUrl, "ro");
  const keys = await keysetFile("k1");
  const redisPrefix = uniquePrefix("ro");
  const zone = `z${randomBytes(3).toString("hex")}`;
  const closers: Array<() => Promise<unknown>> = [];
  try {
    const shared = { databaseUrl: db, redisUrl: o.svc.redisUrl, redisPrefix, keysetFile: keys.path };
    const gw = await startTestGateway({
      natsUrl: o.svc.natsUrl,
      directory: staticDirectory({ [zone]: [o.map] }),
      keyset: keys.doc,
      options: { limits: { maxConnections: 50_000 } },
    });
    closers.push(() => gw.stop());
    const modes = new FixedModes(o.mode ?? "server");
    const mapServer = await startTestServer(
      { ...o.svc, databaseUrl: db },
      {
        region: gw.region,
        zone,
        pod: "ms-ro",
        maps: [o.map],
        modes,
        threads: o.threads ?? 1,
        maxPlayers: o.maxPlayers ?? 200,
        ...(o.mapDef ? { mapDef: o.mapDef } : {}),
      },
    );
    closers.push(() => mapServer.close());
    const redis: Redis = createRedis(requireStoreAccess("dragonfly", o.svc.redisUrl));
    closers.push(async () => redis.disconnect());
    const roMap = await startRoMap({
      port: 0,
      host: "127.0.0.1",
      log,
      tickets: new RoTickets(redis, redisPrefix),
      gatewayUrl: gw.url,
    });
    closers.push(() => roMap.close());
    const char = await startCharServer(
      {
        ...testCharConfig(shared),
        startPoint: { map: o.map, ...o.start },
        ro: { port: 0, host: "127.0.0.1", mapAddress: { host: "127.0.0.1", port: roMap.port } },
      },
      { log },
    );
    closers.push(() => char.close());
    const login = await startLoginServer(
      {
        ...testLoginConfig(shared),
        ro: {
          port: 0,
          host: "127.0.0.1",
          charAddress: { host: "127.0.0.1", port: char.ro!.port },
          serverName: "hybrid-test",
        },
      },
      { log },
    );
    closers.push(() => login.close());
    return {
      db,
      map: o.map,
      zone,
      login,
      char,
      gw,
      roMap,
      mapServer,
      modes,
      ports: { login: login.ro!.port, char: char.ro!.port, map: roMap.port },
      async signUp(username, password) {
        const r = await call(login.url, "POST", "/v1/accounts", { body: { username, password } });
        if (r.status !== 201) throw new Error(`sign-up failed: ${r.status} ${JSON.stringify(r.body)}`);
      },
      async close() {
        for (const c of closers.reverse()) await c().catch(() => undefined);
      },
    };
  } catch (err) {
    for (const c of closers.reverse()) await c().catch(() => undefined);
    throw err;
  }
}
