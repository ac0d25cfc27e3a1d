// Redis (DragonflyDB's protocol) client for the workloads, with bounded retries so a request
// fails fast when the store is away instead of hanging, and errors logged without credentials.
import { Redis } from "ioredis";
import type { Logger } from "../../platform/log.ts";
import { redisOptions, type StoreAccess } from "../../platform/stores/access.ts";

/** A client with the access's password (or ACL user) and TLS. */
export function createRedis(access: StoreAccess, opts: { log?: Logger; name?: string } = {}): Redis {
  const redis = new Redis({
    ...redisOptions(access),
    connectionName: opts.name,
    maxRetriesPerRequest: 2,
    connectTimeout: 5000,
    retryStrategy: (times) => Math.min(times * 200, 2000),
    lazyConnect: false,
  });
  let lastLogged = 0;
  redis.on("error", (err) => {
    // ioredis emits on every reconnect attempt; log at most every 5 s.
    if (Date.now() - lastLogged > 5000) {
      lastLogged = Date.now();
      opts.log?.warn("redis connection error", { err });
    }
  });
  return redis;
}

export async function pingRedis(redis: Redis): Promise<void> {
  const res = await redis.ping();
  if (res !== "PONG") throw new Error(`redis answered ${res}`);
}
