// `hybrid-workload map-server`: configuration from the environment, migrations, then own maps
// and simulate them until SIGTERM (which persists every character and hands the maps over).
import { readFile } from "node:fs/promises";
import { FlagClient } from "../../platform/flags/client.ts";
import { connectFlagStore } from "../../platform/flags/etcd.ts";
import { layout } from "../../platform/flags/layout.ts";
import { registerFlagMetrics } from "../../platform/flags/metrics.ts";
import { createLogger, type Logger } from "../../platform/log.ts";
import { connectNats, requireStoreAccess } from "../../platform/stores/access.ts";
import { migrate } from "../db/migrations.ts";
import { createPool } from "../db/pool.ts";
import { createRedis, pingRedis } from "../runtime/redis.ts";
import { configOrExit, runUntilSignalled } from "../runtime/shutdown.ts";
import { startOps } from "../runtime/workload.ts";
import { type MapServerConfig, mapServerConfigFromEnv } from "./config.ts";
import { flagModes } from "./modes.ts";
import { MapServer } from "./server.ts";
import { mapSource, parseMapCache } from "./sim/mapcache.ts";

export async function startMapServer(cfg: MapServerConfig, log: Logger): Promise<{ close(): Promise<void> }> {
  const pod = cfg.runtime.podName;
  // The ops server first: alive while the stores are waited for, not ready until the maps run.
  const { startup, registry, checks, ops, ready } = await startOps(cfg.runtime, log, {
    labels: { service: "map-server", zone: cfg.zone },
  });
  // Real cells from rAthena's map cache when the Region names one; generated maps otherwise.
  const cache = cfg.mapCacheFile ? parseMapCache(await readFile(cfg.mapCacheFile)) : undefined;
  if (cache)
    log.info("map cache loaded", {
      file: cfg.mapCacheFile,
      maps: cache.size,
      cached: cfg.maps.filter((m) => cache.has(m)),
    });
  const pool = createPool(requireStoreAccess("postgres", cfg.databaseUrl), {
    applicationName: "map-server",
    log,
    max: 4,
  });
  await startup.postgres(pool, cfg.databaseUrl);
  await migrate(pool, log);
  const redis = createRedis(requireStoreAccess("dragonfly", cfg.redisUrl), {
    log,
    name: `map-server-${pod}`,
  });
  await startup.redis(redis, cfg.redisUrl);
  const nc = await startup.waitFor("nats", cfg.natsUrl, () =>
    connectNats(requireStoreAccess("nats", cfg.natsUrl), {
      name: `map-server-${pod}`,
      maxReconnectAttempts: -1,
    }),
  );
  const etcd = connectFlagStore(requireStoreAccess("etcd", cfg.etcdEndpoints.join(",")));
  // Map ownership takes etcd leases: without etcd there is nothing to run.
  // A key its etcd role may read (flags/, not the bare prefix: a read there is refused).
  await startup.etcd(etcd, cfg.etcdEndpoints, layout(cfg.flagPrefix).pointer);
  const flags = new FlagClient({
    client: etcd,
    nats: nc, // the report channel
    prefix: cfg.flagPrefix,
    namespace: cfg.runtime.namespace,
    zone: cfg.zone,
    service: "map-server",
    pod,
    log,
  });
  await flags.start();
  registerFlagMetrics(registry, flags);
  const server = new MapServer({
    region: cfg.runtime.region,
    zone: cfg.zone,
    pod,
    maps: cfg.maps,
    threads: cfg.workerThreads,
    tickHz: cfg.tickHz,
    maxPlayers: cfg.maxPlayers,
    seed: cfg.seed,
    nc,
    etcd,
    redis,
    pg: pool,
    modes: flagModes(flags),
    log,
    registry,
    prefix: cfg.flagPrefix,
    redisPrefix: cfg.redisPrefix,
    persistMs: cfg.persistMs,
    ownershipTtlSeconds: cfg.ownershipTtlSeconds,
    mapDef: mapSource(cache),
    // Without its workers the pod is useless: exit, the lease runs out and the maps move on.
    onFatal: (err) => {
      log.error("simulation stopped, exiting", { err });
      process.exit(1);
    },
  });
  await server.start();
  Object.assign(checks, {
    nats: () => {
      if (nc.isClosed()) throw new Error("NATS connection closed");
    },
    redis: () => pingRedis(redis),
    postgres: async () => {
      await pool.query("SELECT 1");
    },
  });
  ready();
  log.info("map server started", {
    zone: cfg.zone,
    maps: cfg.maps,
    threads: cfg.workerThreads,
    tickHz: cfg.tickHz,
  });
  return {
    async close() {
      ops.setReady(false);
      await server.close();
      await flags.close();
      await nc.drain().catch(() => undefined);
      redis.disconnect();
      etcd.close();
      await pool.end();
      await ops.close();
    },
  };
}

export async function run(): Promise<void> {
  const cfg = configOrExit("map-server", () => mapServerConfigFromEnv());
  const log = createLogger("map-server", {
    level: cfg.runtime.logLevel,
    fields: { pod: cfg.runtime.podName, zone: cfg.zone },
  });
  await runUntilSignalled(log, cfg.runtime.shutdownTimeoutMs, () => startMapServer(cfg, log));
}
