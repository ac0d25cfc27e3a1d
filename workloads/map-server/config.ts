// Map server settings from the environment (the contract in workloads/runtime/config.ts and
// operator/render/constants.ts), validated: every bad variable is reported at once.

import { DEFAULT_PREFIX } from "../../platform/flags/layout.ts";
import { ENV, type Env, EnvReader, type RuntimeConfig, readRuntimeConfig } from "../runtime/config.ts";

export interface MapServerConfig {
  runtime: RuntimeConfig;
  etcdEndpoints: string[];
  natsUrl: string;
  redisUrl: string;
  databaseUrl: string;
  zone: string;
  maps: string[];
  workerThreads: number;
  tickHz: number;
  maxPlayers: number;
  flagPrefix: string;
  redisPrefix: string;
  persistMs: number;
  ownershipTtlSeconds: number;
  seed: number;
  /** rAthena's map_cache.dat (the Region's mapCache): real cells for the maps it holds. */
  mapCacheFile: string | undefined;
}

const NAME = /^[A-Za-z0-9_-]{1,63}$/;

export function mapServerConfigFromEnv(env: Env = process.env): MapServerConfig {
  const r = new EnvReader(env);
  const runtime = readRuntimeConfig(r);
  const etcd = r.required(ENV.etcdEndpoints);
  const etcdEndpoints = etcd
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  for (const e of etcdEndpoints) {
    if (!/^https?:\/\/[^/\s]+$/.test(e))
      r.problem(ENV.etcdEndpoints, `must be a comma list of http(s)://host:port (got ${JSON.stringify(e)})`);
  }
  const zone = r.required("HYBRIDP2P_ZONE");
  if (zone && !NAME.test(zone))
    r.problem("HYBRIDP2P_ZONE", `must be a name of letters, digits, - and _ (got ${JSON.stringify(zone)})`);
  const maps = r
    .required("HYBRIDP2P_MAPS")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  for (const m of maps)
    if (!NAME.test(m)) r.problem("HYBRIDP2P_MAPS", `invalid map name ${JSON.stringify(m)}`);
  if (!NAME.test(runtime.region))
    r.problem(
      ENV.region,
      `must be a name of letters, digits, - and _ (got ${JSON.stringify(runtime.region)})`,
    );
  const cfg: MapServerConfig = {
    runtime,
    etcdEndpoints,
    natsUrl: r.url(ENV.natsUrl, ["nats", "tls"]),
    redisUrl: r.url(ENV.redisUrl, ["redis", "rediss"]),
    databaseUrl: r.url(ENV.databaseUrl, ["postgres", "postgresql"]),
    zone,
    maps,
    workerThreads: r.int("HYBRIDP2P_WORKER_THREADS", { default: 2, min: 0, max: 64 }),
    tickHz: r.int("HYBRIDP2P_TICK_RATE_HZ", { default: 20, min: 1, max: 100 }),
    maxPlayers: r.int("HYBRIDP2P_MAX_PLAYERS", { default: 1000, min: 1, max: 100_000 }),
    flagPrefix: r.str("HYBRIDP2P_FLAG_PREFIX", DEFAULT_PREFIX),
    redisPrefix: r.str("HYBRIDP2P_REDIS_PREFIX", "hp2p:"),
    persistMs: r.duration("HYBRIDP2P_PERSIST_INTERVAL", 30_000, { minMs: 1000 }),
    ownershipTtlSeconds: r.int("HYBRIDP2P_OWNERSHIP_TTL_SECONDS", { default: 3, min: 2, max: 60 }),
    seed: r.int("HYBRIDP2P_SEED", { default: 1, min: 0, max: 2 ** 31 }),
    mapCacheFile: r.str("HYBRIDP2P_MAP_CACHE"),
  };
  r.done();
  return cfg;
}
