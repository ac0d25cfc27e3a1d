// Integration-test helpers: in-process map servers with their own connections, characters in
// PostgreSQL, and a fake gateway on NATS that joins sessions, batches input and collects frames.
import { randomBytes } from "node:crypto";
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import type { Etcd3 } from "etcd3";
import type { Redis } from "ioredis";
import type pg from "pg";
import {
  type AoiFrame,
  type ClientInput,
  decode,
  encode,
  type InputBatch,
  type JoinReply,
  type JoinRequest,
  type LeaveReply,
  type MapAddress,
  subjects,
} from "../../platform/bus/contract.ts";
import { connectFlagStore } from "../../platform/flags/etcd.ts";
import { newRegistry } from "../../platform/http.ts";
import { silentLogger } from "../../platform/log.ts";
import { connectNats, requireStoreAccess, type StoreAccess } from "../../platform/stores/access.ts";
import { sleep } from "../../platform/time.ts";
import { migrate } from "../../workloads/db/migrations.ts";
import { createPool } from "../../workloads/db/pool.ts";
import { FixedModes, type ModeSource } from "../../workloads/map-server/modes.ts";
import { MapServer, type MapServerOptions } from "../../workloads/map-server/server.ts";
import { createRedis } from "../../workloads/runtime/redis.ts";

/** The local stores: addresses (workloads take these, with credentials from the environment as
 * pods do) and the test administrator's accesses (for clients a test makes itself). */
export interface Services {
  natsUrl: string;
  etcdEndpoints: string;
  redisUrl: string;
  databaseUrl: string;
  nats: StoreAccess;
  etcd: StoreAccess;
  redis: StoreAccess;
  postgres: StoreAccess;
}

export const unique = (label: string) => `${label}${randomBytes(4).toString("hex")}`;

export function servicesFrom(env: {
  nats?: StoreAccess;
  etcd?: StoreAccess;
  redis?: StoreAccess;
  postgres?: StoreAccess;
}): Services {
  const { nats, etcd, redis, postgres } = env;
  if (!nats || !etcd || !redis || !postgres) throw new Error("local services missing");
  return {
    nats,
    etcd,
    redis,
    postgres,
    natsUrl: nats.url,
    etcdEndpoints: etcd.url,
    redisUrl: redis.url,
    databaseUrl: postgres.url,
  };
}

export interface TestServer {
  server: MapServer;
  modes: ModeSource;
  nc: NatsConnection;
  etcd: Etcd3;
  redis: Redis;
  pg: pg.Pool;
  /**
   * Whether `map` is attached here and its subscriptions are on the NATS server: a map is listed
   * as soon as it subscribes, but a request sent before the server has the SUBs finds no
   * responders. The flush is a round trip after them, so they are registered when it returns.
   */
  owns(map: string): Promise<boolean>;
  close(): Promise<void>;
}

export async function startTestServer(
  svc: Services,
  opts: Pick<MapServerOptions, "region" | "zone" | "pod" | "maps"> & Partial<MapServerOptions>,
): Promise<TestServer> {
  // The services' credentials at the services' addresses (a test may move either).
  const nc = await connectNats({ ...svc.nats, url: svc.natsUrl });
  const etcd = connectFlagStore({ ...svc.etcd, url: svc.etcdEndpoints });
  const redis = createRedis(requireStoreAccess("dragonfly", svc.redisUrl));
  const pool = createPool(requireStoreAccess("postgres", svc.databaseUrl), { max: 3 });
  const modes = opts.modes ?? new FixedModes();
  const server = new MapServer({
    threads: 2,
    tickHz: 20,
    maxPlayers: 50,
    log: silentLogger(),
    registry: newRegistry(),
    ...opts,
    nc,
    etcd,
    redis,
    pg: pool,
    modes,
  });
  await server.start();
  return {
    server,
    modes,
    nc,
    etcd,
    redis,
    pg: pool,
    async owns(map) {
      if (!server.maps().includes(map)) return false;
      await nc.flush();
      return true;
    },
    async close() {
      await server.close();
      await nc.drain().catch(() => undefined);
      redis.disconnect();
      etcd.close();
      await pool.end();
    },
  };
}

export interface CharacterSpec {
  name: string;
  hp?: number;
  str?: number;
  map?: string;
  x?: number;
  y?: number;
}

/** Creates an account with the given characters; returns their ids. */
export async function createCharacters(databaseUrl: string, specs: CharacterSpec[]): Promise<string[]> {
  const pool = createPool(requireStoreAccess("postgres", databaseUrl), { max: 1 });
  try {
    await migrate(pool);
    const acct = await pool.query<{ id: string }>(
      "INSERT INTO accounts (username, password_hash) VALUES ($1, 'x') RETURNING id",
      [unique("ms")],
    );
    const ids: string[] = [];
    for (const [slot, s] of specs.entries()) {
      const r = await pool.query<{ id: string }>(
        `INSERT INTO characters (account_id, slot, name, hp, max_hp, str, last_map, last_x, last_y)
         VALUES ($1, $2, $3, $4, $4, $5, $6, $7, $8) RETURNING id`,
        [
          acct.rows[0]!.id,
          slot,
          s.name,
          s.hp ?? 400,
          s.str ?? 3,
          s.map ?? "prontera",
          s.x ?? 156,
          s.y ?? 191,
        ],
      );
      ids.push(r.rows[0]!.id);
    }
    return ids;
  } finally {
    await pool.end();
  }
}

export async function readCharacter(databaseUrl: string, id: string) {
  const pool = createPool(requireStoreAccess("postgres", databaseUrl), { max: 1 });
  try {
    const r = await pool.query(
      "SELECT last_map, last_x, last_y, hp, base_exp, zeny, online FROM characters WHERE id = $1",
      [id],
    );
    return r.rows[0] as {
      last_map: string;
      last_x: number;
      last_y: number;
      hp: number;
      base_exp: string;
      zeny: string;
      online: boolean;
    };
  } finally {
    await pool.end();
  }
}

/** A stand-in gateway: joins sessions over NATS and records the AOI frames it is sent. */
export class FakeGateway {
  readonly id: string;
  readonly frames: AoiFrame[] = [];
  private readonly nc: NatsConnection;
  private readonly sub: Subscription;

  private constructor(nc: NatsConnection, region: string, id: string) {
    this.nc = nc;
    this.id = id;
    this.sub = nc.subscribe(subjects.aoiForGateway(region, id), {
      callback: (err, msg) => {
        if (!err) this.frames.push(decode<AoiFrame>(msg.data));
      },
    });
  }

  /** `access`: the credentials to connect with (default: the environment's, as a pod's). */
  static async open(natsUrl: string, region: string, id: string, access?: StoreAccess): Promise<FakeGateway> {
    const nc = await connectNats(access ? { ...access, url: natsUrl } : requireStoreAccess("nats", natsUrl));
    const gw = new FakeGateway(nc, region, id);
    await nc.flush();
    return gw;
  }

  /** Joins, retrying while the map has no owner yet (no responders) or is changing hands. */
  async join(addr: MapAddress, session: string, characterId: string, p2p = false, timeoutMs = 30_000) {
    const req: JoinRequest = { v: 1, session, characterId, gateway: this.id, p2p };
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        const m = await this.nc.request(subjects.join(addr), encode(req), { timeout: 5000 });
        const r = decode<JoinReply>(m.data);
        if (r.ok) return r;
        if (!/retry/.test(r.error) || Date.now() > deadline) throw new Error(`join refused: ${r.error}`);
      } catch (err) {
        if (Date.now() > deadline || /join refused/.test(String(err))) throw err;
      }
      await sleep(200);
    }
  }

  async leave(addr: MapAddress, session: string): Promise<LeaveReply> {
    const m = await this.nc.request(subjects.leave(addr), encode({ v: 1, session }), { timeout: 10_000 });
    return decode<LeaveReply>(m.data);
  }

  async send(addr: MapAddress, inputs: ClientInput[]): Promise<void> {
    if (inputs.length === 0) return;
    const batch: InputBatch = { v: 1, gateway: this.id, inputs };
    this.nc.publish(subjects.input(addr), encode(batch));
    await this.nc.flush();
  }

  async close(): Promise<void> {
    this.sub.unsubscribe();
    await this.nc.drain().catch(() => undefined);
  }
}

export async function until<T>(
  what: string,
  probe: () => T | undefined | Promise<T | undefined>,
  timeoutMs = 30_000,
) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v as T;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}
