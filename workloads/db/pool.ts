// PostgreSQL connection pool for the workloads. BIGINT ids come back as strings from pg; the
// workloads treat ids as strings end to end so nothing is lost above 2^53.
import pg from "pg";
import type { Logger } from "../../platform/log.ts";
import { pgOptions, type StoreAccess } from "../../platform/stores/access.ts";

export interface PoolOptions {
  max?: number;
  applicationName?: string;
  log?: Logger;
}

/** A pool with the access's password and TLS (sslmode, CA). */
export function createPool(access: StoreAccess, opts: PoolOptions = {}): pg.Pool {
  const pool = new pg.Pool({
    ...pgOptions(access),
    max: opts.max ?? 10,
    application_name: opts.applicationName ?? "hybridp2p",
    connectionTimeoutMillis: 5000,
    idleTimeoutMillis: 30_000,
    statement_timeout: 10_000,
  });
  // An idle client losing its connection must not crash the process.
  pool.on("error", (err) => opts.log?.warn("idle PostgreSQL client error", { err }));
  return pool;
}

/** True for PostgreSQL's unique_violation, optionally on one named constraint or index. */
export function isUniqueViolation(err: unknown, constraint?: string): boolean {
  const e = err as { code?: string; constraint?: string };
  return e?.code === "23505" && (constraint === undefined || e.constraint === constraint);
}
