// Failed-login limits kept in Redis, so every replica enforces them: per account name and per
// client address, `maxFailures` failures within `windowMs` lock that account (or address) for
// `lockoutMs` (the original design: 5 failures, 15 minutes). Counting and locking happen in one
// Lua script; both keys of a scope share a hash tag, so this also works on a Redis cluster.

import type { Redis } from "ioredis";

export interface LockoutPolicy {
  maxFailures: number;
  windowMs: number;
  lockoutMs: number;
}

export type Scope = "account" | "address";

const RECORD_FAILURE = `
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if n >= tonumber(ARGV[1]) then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
  redis.call('DEL', KEYS[1])
  return -1
end
return n
`;

/**
 * The unit an address is limited by: an IPv4 address as is, an IPv6 address by its /64 (one
 * subscriber usually holds a whole /64, so per-address limits would be trivial to dodge).
 */
export function addressUnit(address: string): string {
  if (!address.includes(":")) return address;
  const [head = "", tail] = address.toLowerCase().split("%")[0]!.split("::") as [string, string | undefined];
  const left = head ? head.split(":") : [];
  const right = tail ? tail.split(":") : [];
  const groups =
    tail === undefined
      ? left
      : [...left, ...Array(Math.max(0, 8 - left.length - right.length)).fill("0"), ...right];
  return `${groups
    .slice(0, 4)
    .map((g) => (g || "0").replace(/^0+(?=.)/, ""))
    .join(":")}::/64`;
}

export interface LockState {
  scope: Scope;
  retryAfterMs: number;
}

export class Lockout {
  private readonly redis: Redis;
  private readonly prefix: string;
  private readonly policies: Record<Scope, LockoutPolicy>;

  constructor(redis: Redis, prefix: string, policies: Record<Scope, LockoutPolicy>) {
    this.redis = redis;
    this.prefix = prefix;
    this.policies = policies;
  }

  private keys(scope: Scope, id: string): { fail: string; lock: string } {
    const tag = `${this.prefix}login:{${scope === "account" ? "a" : "ip"}:${id}}`;
    return { fail: `${tag}:fail`, lock: `${tag}:lock` };
  }

  /** The first lock in force among the given scopes, if any. */
  async check(ids: Record<Scope, string>): Promise<LockState | undefined> {
    const scopes: Scope[] = ["account", "address"];
    const ttls = await Promise.all(scopes.map((s) => this.redis.pttl(this.keys(s, ids[s]).lock)));
    let worst: LockState | undefined;
    ttls.forEach((ttl, i) => {
      if (ttl > 0 && (!worst || ttl > worst.retryAfterMs)) worst = { scope: scopes[i]!, retryAfterMs: ttl };
      else if (ttl === -1 && !worst)
        worst = { scope: scopes[i]!, retryAfterMs: this.policies[scopes[i]!].lockoutMs };
    });
    return worst;
  }

  /** Counts one failure in each scope; returns the scopes that this failure locked. */
  async recordFailure(ids: Record<Scope, string>): Promise<Scope[]> {
    const locked: Scope[] = [];
    for (const scope of ["account", "address"] as Scope[]) {
      const k = this.keys(scope, ids[scope]);
      const p = this.policies[scope];
      const n = (await this.redis.eval(
        RECORD_FAILURE,
        2,
        k.fail,
        k.lock,
        p.maxFailures,
        p.windowMs,
        p.lockoutMs,
      )) as number;
      if (n === -1) locked.push(scope);
    }
    return locked;
  }

  /** A successful login clears the account's failure count (not the address's). */
  async recordSuccess(ids: Record<Scope, string>): Promise<void> {
    await this.redis.del(this.keys("account", ids.account).fail);
  }
}

const HIT = `
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
if n > tonumber(ARGV[2]) then return redis.call('PTTL', KEYS[1]) end
return 0
`;

/** A fixed-window counter per key (sign-ups per address); `limit` 0 turns it off. */
export class WindowLimit {
  private readonly redis: Redis;
  private readonly prefix: string;
  private readonly limit: number;
  private readonly windowMs: number;

  constructor(redis: Redis, prefix: string, limit: number, windowMs: number) {
    this.redis = redis;
    this.prefix = prefix;
    this.limit = limit;
    this.windowMs = windowMs;
  }

  /** Counts one hit; returns 0 when allowed, else the milliseconds until the window resets. */
  async hit(id: string): Promise<number> {
    if (this.limit <= 0) return 0;
    const r = (await this.redis.eval(HIT, 1, `${this.prefix}${id}`, this.windowMs, this.limit)) as number;
    return r === 0 ? 0 : Math.max(r, 1);
  }
}
