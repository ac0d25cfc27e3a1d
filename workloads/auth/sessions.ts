// Sessions in Redis (DragonflyDB's protocol), so any replica of any server can check or revoke
// them: `<prefix>sess:<sid>` is a hash with the account and expires with the session; the
// account's set of session ids lets a password change or a ban revoke them all at once.
// A signed token is honoured only while its session record exists.
import type { IncomingMessage } from "node:http";
import type { Redis } from "ioredis";
import { bearerToken, HttpError } from "../../platform/http.ts";
import type { KeySource } from "./keyset.ts";
import { type SessionClaims, TokenError, verifySessionToken } from "./tokens.ts";

export interface SessionRecord {
  accountId: string;
  username: string;
  createdAt: number;
  address: string;
}

export class SessionStore {
  private readonly redis: Redis;
  private readonly prefix: string;

  constructor(redis: Redis, prefix: string) {
    this.redis = redis;
    this.prefix = prefix;
  }

  private key(sid: string): string {
    return `${this.prefix}sess:${sid}`;
  }

  private accountKey(accountId: string): string {
    return `${this.prefix}acct-sess:${accountId}`;
  }

  async create(sid: string, rec: SessionRecord, ttlMs: number): Promise<void> {
    const acct = this.accountKey(rec.accountId);
    await this.redis
      .multi()
      .hset(this.key(sid), {
        acct: rec.accountId,
        name: rec.username,
        created: String(rec.createdAt),
        addr: rec.address,
      })
      .pexpire(this.key(sid), ttlMs)
      .sadd(acct, sid)
      // Every session has the same lifetime, so the newest one outlives the others.
      .pexpire(acct, ttlMs)
      .exec();
  }

  async get(sid: string): Promise<SessionRecord | undefined> {
    const h = await this.redis.hgetall(this.key(sid));
    if (!h.acct) return undefined;
    return {
      accountId: h.acct,
      username: h.name ?? "",
      createdAt: Number(h.created ?? 0),
      address: h.addr ?? "",
    };
  }

  /** Extends a live session; false when it is gone (revoked or expired). */
  async extend(sid: string, accountId: string, ttlMs: number): Promise<boolean> {
    const res = await this.redis
      .multi()
      .pexpire(this.key(sid), ttlMs)
      .pexpire(this.accountKey(accountId), ttlMs)
      .exec();
    return res?.[0]?.[1] === 1;
  }

  async revoke(sid: string): Promise<boolean> {
    const rec = await this.get(sid);
    const multi = this.redis.multi().del(this.key(sid));
    if (rec) multi.srem(this.accountKey(rec.accountId), sid);
    const res = await multi.exec();
    return res?.[0]?.[1] === 1;
  }

  async revokeAll(accountId: string): Promise<number> {
    const sids = await this.redis.smembers(this.accountKey(accountId));
    if (sids.length === 0) return 0;
    const n = await this.redis.del(...sids.map((s) => this.key(s)));
    await this.redis.del(this.accountKey(accountId));
    return n;
  }
}

/**
 * Authenticates a request by its Bearer session token: a valid signature from the keyset, not
 * expired, and a session record that still exists in Redis (so revocation takes effect on every
 * replica at once). Throws 401 otherwise.
 */
export async function authenticate(
  req: IncomingMessage,
  keys: KeySource,
  sessions: SessionStore,
): Promise<SessionClaims> {
  const token = bearerToken(req);
  let claims: SessionClaims;
  try {
    claims = await verifySessionToken(keys, token);
  } catch (err) {
    if (err instanceof TokenError) {
      throw new HttpError(401, err.code === "expired" ? "token_expired" : "invalid_token", err.message, {
        headers: { "www-authenticate": 'Bearer error="invalid_token"' },
      });
    }
    throw err;
  }
  const rec = await sessions.get(claims.sessionId);
  if (!rec || rec.accountId !== claims.accountId) {
    throw new HttpError(401, "session_revoked", "the session has ended or was revoked", {
      headers: { "www-authenticate": 'Bearer error="invalid_token"' },
    });
  }
  return claims;
}
