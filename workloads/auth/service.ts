// What the login and char servers share when they start: a PostgreSQL pool with the schema
// migrated, a Redis client, the keyset (from the mounted Secret), the JSON API server and the
// ops server (/healthz, /readyz, /metrics), torn down in reverse order. Replicas keep no state
// of their own: everything lives in PostgreSQL and Redis.
import type { IncomingMessage } from "node:http";
import type { Redis } from "ioredis";
import type pg from "pg";
import type { Registry } from "prom-client";
import {
  closeServer,
  createApiServer,
  type HttpMetrics,
  httpMetrics,
  listen,
  type OpsServer,
  type Route,
} from "../../platform/http.ts";
import type { Logger } from "../../platform/log.ts";
import type { RoEndpoint } from "../../platform/protocol/ro/endpoint.ts";
import { requireStoreAccess } from "../../platform/stores/access.ts";
import { sleep } from "../../platform/time.ts";
import { migrate } from "../db/migrations.ts";
import { createPool } from "../db/pool.ts";
import { createRedis, pingRedis } from "../runtime/redis.ts";
import { startOps } from "../runtime/workload.ts";
import type { AuthServiceConfig } from "./config.ts";
import { FileKeySource, type KeySource } from "./keyset.ts";
import { SessionStore } from "./sessions.ts";

export interface ServiceDeps {
  pool: pg.Pool;
  redis: Redis;
  keys: KeySource;
  sessions: SessionStore;
  registry: Registry;
  http: HttpMetrics;
  log: Logger;
}

export interface RunningService {
  url: string;
  port: number;
  ops: OpsServer;
  deps: ServiceDeps;
  /** The RO endpoint beside the API, when the server has one. */
  ro?: RoEndpoint;
  close(): Promise<void>;
}

export interface StartOptions {
  log: Logger;
  /** Use these keys instead of reading cfg.keysetFile (tests). */
  keys?: KeySource;
  /** The metric name prefix, e.g. hybridp2p_login. */
  metricsPrefix: string;
  requirePrivateKey: boolean;
}

/**
 * `startRo`: the RO endpoint beside the API, started after the API listens and before the pod is
 * ready, so a ready pod answers on every port its Services send to; on close it stops once
 * readiness is off and the drain delay has passed, before the API.
 */
export async function startService(
  cfg: AuthServiceConfig,
  opts: StartOptions,
  routes: (deps: ServiceDeps) => Route[],
  startRo?: (deps: ServiceDeps) => Promise<RoEndpoint>,
): Promise<RunningService> {
  const log = opts.log;
  const cleanup: Array<() => Promise<void> | void> = [];
  const closeAll = async () => {
    for (const fn of cleanup.reverse()) {
      try {
        await fn();
      } catch (err) {
        log.warn("close failed", { err });
      }
    }
    cleanup.length = 0;
  };
  try {
    // The ops server first: alive while PostgreSQL is waited for (it may start after this pod:
    // the schema is migrated before serving), not ready until the API listens. Redis needs no
    // wait: its client reconnects by itself and the readiness check says whether it answers.
    const { startup, registry, checks, ops, ready } = await startOps(cfg.runtime, log, {
      labels: { pod: cfg.runtime.podName, region: cfg.runtime.region },
      host: cfg.host,
    });
    cleanup.push(() => ops.close());
    cleanup.push(() => startup.stop());
    const pool = createPool(requireStoreAccess("postgres", cfg.databaseUrl), {
      log,
      applicationName: opts.metricsPrefix,
    });
    cleanup.push(() => pool.end());
    await startup.postgres(pool, cfg.databaseUrl);
    await migrate(pool, log);
    const redis = createRedis(requireStoreAccess("dragonfly", cfg.redisUrl), {
      log,
      name: opts.metricsPrefix,
    });
    cleanup.push(async () => {
      await redis.quit().catch(() => redis.disconnect());
    });
    let keys = opts.keys;
    if (!keys) {
      const file = await FileKeySource.open(cfg.keysetFile, {
        requirePrivate: opts.requirePrivateKey,
        pollMs: cfg.keysetPollMs,
        log,
      });
      cleanup.push(() => file.close());
      keys = file;
    }
    const deps: ServiceDeps = {
      pool,
      redis,
      keys,
      sessions: new SessionStore(redis, cfg.redisPrefix),
      registry,
      http: httpMetrics(registry, opts.metricsPrefix),
      log,
    };
    Object.assign(checks, {
      postgres: async () => {
        await pool.query("SELECT 1");
      },
      redis: () => pingRedis(redis),
      keyset: () => {
        const ks = keys.current();
        if (opts.requirePrivateKey) void ks.active;
      },
    });
    ops.setReady(false);
    const tls = cfg.runtime.servingTlsDir ? { dir: cfg.runtime.servingTlsDir, log } : undefined;
    const api = createApiServer({ routes: routes(deps), log, metrics: deps.http, tls });
    const port = await listen(api, cfg.port, cfg.host);
    cleanup.push(() => closeServer(api, cfg.runtime.shutdownTimeoutMs / 2));
    const ro = startRo ? await startRo(deps) : undefined;
    if (ro) cleanup.push(() => ro.close());
    // Close order on shutdown: readiness off first (the Service stops sending), then the RO
    // endpoint closes and the API drains, then the ops server and the clients go.
    cleanup.push(async () => {
      ops.setReady(false);
      await sleep(cfg.runtime.drainDelayMs);
    });
    ready();
    ops.setReady(true);
    const host = cfg.host === "0.0.0.0" || cfg.host === "::" ? "127.0.0.1" : cfg.host;
    log.info("listening", {
      port,
      tls: tls !== undefined,
      healthPort: ops.healthPort,
      metricsPort: ops.metricsPort,
    });
    return {
      url: `${tls ? "https" : "http"}://${host}:${port}`,
      port,
      ops,
      deps,
      ...(ro ? { ro } : {}),
      close: closeAll,
    };
  } catch (err) {
    await closeAll();
    throw err;
  }
}

/** The client's address: the socket's, or with proxies in front, the entry they appended. */
export function clientAddress(req: IncomingMessage, trustedProxyHops: number): string {
  const socket = req.socket.remoteAddress ?? "unknown";
  if (trustedProxyHops <= 0) return normalizeAddress(socket);
  const xff = String(req.headers["x-forwarded-for"] ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  const entry = xff[xff.length - trustedProxyHops];
  return normalizeAddress(entry ?? socket);
}

function normalizeAddress(a: string): string {
  return a.startsWith("::ffff:") ? a.slice(7) : a;
}
