// The gateway's settings, from the environment.

import { DEFAULT_PREFIX } from "../../platform/flags/layout.ts";
import { DEFAULT_KEYSET_FILE } from "../auth/config.ts";
import { ENV, type Env, EnvReader, type RuntimeConfig, readRuntimeConfig } from "../runtime/config.ts";
import { type P2PClientSettings, p2pClientSettingsFromEnv } from "./clientconfig.ts";
import { DEFAULT_LIMITS, type Limits } from "./sessions.ts";

export const DEFAULT_GATEWAY_PORT = 7000;

export interface GatewayConfig {
  runtime: RuntimeConfig;
  natsUrl: string;
  /** Flag store: the map directory and the gateway's own P2P flags. Optional in development. */
  etcdEndpoints: string[];
  flagPrefix: string;
  /** Static map directory (development without etcd): `zone=map1,map2;zone2=map3`. */
  staticMaps: Record<string, string[]> | undefined;
  /** When set, a token is honoured only while its login session lives in Redis. */
  redisUrl: string | undefined;
  redisPrefix: string;
  /** How often each playing session's login session is checked again (with redisUrl). */
  sessionCheckMs: number;
  keysetFile: string;
  /** Gate P2P on the coordinator's liveness (with the flag plane). */
  watchCoordinator: boolean;
  port: number;
  host: string;
  limits: Limits;
  /** ICE servers and coordinators for the P2P client config; the browser client. */
  p2pClient: P2PClientSettings;
  /**
   * The RO map endpoint (ro.ts), off unless the Region turns it on (HYBRIDP2P_RO_MAP_PORT). It
   * takes the char server's map tickets from Redis, so it needs HYBRIDP2P_REDIS_URL.
   */
  ro?: { port: number; host: string; redisUrl: string };
}

function parseMaps(r: EnvReader, name: string): Record<string, string[]> | undefined {
  const raw = r.str(name);
  if (raw === undefined) return undefined;
  const out: Record<string, string[]> = {};
  for (const part of raw.split(";").filter((p) => p.trim() !== "")) {
    const [zone, maps] = part.split("=");
    if (!zone?.trim() || !maps?.trim()) {
      r.problem(name, `must look like zone=map1,map2;zone2=map3 (got ${JSON.stringify(part)})`);
      continue;
    }
    out[zone.trim()] = maps
      .split(",")
      .map((m) => m.trim())
      .filter(Boolean);
  }
  return out;
}

export function gatewayConfigFromEnv(env: Env = process.env): GatewayConfig {
  const r = new EnvReader(env);
  const etcd = r.str(ENV.etcdEndpoints);
  const staticMaps = parseMaps(r, "HYBRIDP2P_GATEWAY_MAPS");
  if (!etcd && !staticMaps) r.problem(ENV.etcdEndpoints, "is required unless HYBRIDP2P_GATEWAY_MAPS is set");
  const redisUrl = r.str(ENV.redisUrl) ? r.url(ENV.redisUrl, ["redis", "rediss"]) : undefined;
  const cfg: GatewayConfig = {
    runtime: readRuntimeConfig(r),
    natsUrl: r.url(ENV.natsUrl, ["nats", "tls"], { required: true }),
    etcdEndpoints: (etcd ?? "")
      .split(",")
      .map((s) => s.trim())
      .filter(Boolean),
    flagPrefix: r.str("HYBRIDP2P_FLAG_PREFIX", DEFAULT_PREFIX),
    staticMaps,
    redisUrl: r.bool("HYBRIDP2P_GATEWAY_CHECK_SESSIONS", true) ? redisUrl : undefined,
    redisPrefix: r.str("HYBRIDP2P_REDIS_PREFIX", "hp2p:"),
    sessionCheckMs: r.int("HYBRIDP2P_GATEWAY_SESSION_CHECK_MS", { default: 10_000, min: 100, max: 600_000 }),
    keysetFile: r.str("HYBRIDP2P_AUTH_KEYSET_FILE", DEFAULT_KEYSET_FILE),
    watchCoordinator: r.bool("HYBRIDP2P_GATEWAY_WATCH_COORDINATOR", true),
    port: r.port("HYBRIDP2P_GATEWAY_PORT", DEFAULT_GATEWAY_PORT),
    host: r.str("HYBRIDP2P_LISTEN_HOST", "0.0.0.0"),
    p2pClient: p2pClientSettingsFromEnv(r),
    limits: {
      ...DEFAULT_LIMITS,
      maxBufferedBytes: r.int("HYBRIDP2P_GATEWAY_MAX_BUFFERED_BYTES", {
        default: DEFAULT_LIMITS.maxBufferedBytes,
        min: 16 * 1024,
        max: 64 << 20,
      }),
      msgsPerSecond: r.int("HYBRIDP2P_GATEWAY_MSGS_PER_SECOND", {
        default: DEFAULT_LIMITS.msgsPerSecond,
        min: 1,
        max: 10_000,
      }),
      maxConnections: r.int("HYBRIDP2P_GATEWAY_MAX_CONNECTIONS", {
        default: DEFAULT_LIMITS.maxConnections,
        min: 1,
        max: 1_000_000,
      }),
    },
  };
  cfg.limits.msgsBurst = 2 * cfg.limits.msgsPerSecond;
  if (r.str("HYBRIDP2P_RO_MAP_PORT") !== undefined) {
    if (!redisUrl)
      r.problem(ENV.redisUrl, "is required with HYBRIDP2P_RO_MAP_PORT (the RO map tickets live in Redis)");
    cfg.ro = { port: r.port("HYBRIDP2P_RO_MAP_PORT", 5121), host: cfg.host, redisUrl: redisUrl ?? "" };
  }
  r.done();
  return cfg;
}
