// Settings both the login and the char server read, from the environment.
import { ENV, type EnvReader, type RuntimeConfig, readRuntimeConfig } from "../runtime/config.ts";

export const DEFAULT_KEYSET_FILE = "/etc/hybridp2p/auth/keyset.json";

/** Settings both the login and the char server read. */
export interface AuthServiceConfig {
  runtime: RuntimeConfig;
  databaseUrl: string;
  redisUrl: string;
  redisPrefix: string;
  keysetFile: string;
  keysetPollMs: number;
  /** API listen port. */
  port: number;
  host: string;
  /** How many proxies (gateway, ingress) append to X-Forwarded-For in front of this server. */
  trustedProxyHops: number;
  maxBodyBytes: number;
}

export function readAuthServiceConfig(r: EnvReader, defaultPort: number, portVar: string): AuthServiceConfig {
  return {
    runtime: readRuntimeConfig(r),
    databaseUrl: r.url(ENV.databaseUrl, ["postgres", "postgresql"]),
    redisUrl: r.url(ENV.redisUrl, ["redis", "rediss"]),
    redisPrefix: r.str("HYBRIDP2P_REDIS_PREFIX", "hp2p:"),
    keysetFile: r.str("HYBRIDP2P_AUTH_KEYSET_FILE", DEFAULT_KEYSET_FILE),
    keysetPollMs: r.duration("HYBRIDP2P_AUTH_KEYSET_POLL", 10_000, { minMs: 0 }),
    port: r.port(portVar, defaultPort),
    host: r.str("HYBRIDP2P_LISTEN_HOST", "0.0.0.0"),
    trustedProxyHops: r.int("HYBRIDP2P_TRUSTED_PROXY_HOPS", { default: 0, min: 0, max: 5 }),
    maxBodyBytes: r.int("HYBRIDP2P_MAX_BODY_BYTES", { default: 4096, min: 256, max: 1 << 20 }),
  };
}
