// A workload's start, before it serves: its ops server already answers (liveness OK, so the
// kubelet does not kill a pod that only waits), /readyz answers "starting" and names the store it
// waits for, and every store is waited for with backoff (platform/wait.ts) instead of the start
// failing on the first refused connection, which was a crash loop when pods came up before
// their stores (two or three restarts per pod on a fresh Region).
//
//   const { startup, ready } = await startOps(runtime, log, { labels }); // workload.ts
//   const nc = await startup.waitFor("nats", url, () => connect({ servers: url }));
//   ready();
import type { Etcd3 } from "etcd3";
import type { Redis } from "ioredis";
import type pg from "pg";
import type { ReadinessCheck } from "../../platform/http.ts";
import { type Logger, redactString } from "../../platform/log.ts";
import { type Backoff, waitFor } from "../../platform/wait.ts";
import { pingRedis } from "./redis.ts";

export class Startup {
  private waiting: string | undefined;
  private finished = false;
  private readonly abort = new AbortController();
  private readonly log: Logger;
  private readonly backoff: Backoff | undefined;

  constructor(log: Logger, opts: { backoff?: Backoff } = {}) {
    this.log = log;
    this.backoff = opts.backoff;
  }

  /** The readiness check for the start: fails with "starting" (and what it waits for) until done(). */
  readonly check: ReadinessCheck = () => {
    if (this.finished) return;
    throw new Error(this.waiting ? `starting: ${this.waiting}` : "starting");
  };

  /** Retries `attempt` until `store` answers; readiness names it meanwhile. */
  async waitFor<T>(store: string, address: string, attempt: () => Promise<T>): Promise<T> {
    const what = `waiting for ${store} at ${redactString(address)}`;
    try {
      return await waitFor(store, address, attempt, {
        log: this.log,
        backoff: this.backoff,
        signal: this.abort.signal,
        onRetry: () => {
          this.waiting = what;
        },
      });
    } finally {
      this.waiting = undefined;
    }
  }

  /** Waits until PostgreSQL takes a query (the pool connects lazily). */
  postgres(pool: pg.Pool, url: string): Promise<void> {
    return this.waitFor("postgresql", url, async () => {
      await pool.query("SELECT 1");
    });
  }

  /** Waits until Redis (Dragonfly) answers PING (the client reconnects by itself meanwhile). */
  redis(redis: Redis, url: string): Promise<void> {
    return this.waitFor("redis", url, () => pingRedis(redis));
  }

  /** Waits until etcd answers a read of `key` (one the workload's etcd role may read: under
   * `<prefix>flags/`; a read of the bare prefix is refused once etcd's auth is on). */
  etcd(client: Etcd3, endpoints: string[], key: string): Promise<void> {
    return this.waitFor("etcd", endpoints.join(","), async () => {
      await client.get(key).exists();
    });
  }

  /** The workload serves: readiness is up to its own checks from now on. */
  done(): void {
    this.finished = true;
  }

  /** Stops every wait (shutdown during the start): they reject. */
  stop(): void {
    this.abort.abort(new Error("stopped while starting"));
  }
}
