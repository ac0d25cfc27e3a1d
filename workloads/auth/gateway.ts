// What the gateway uses to admit a client: the character token from the char server's select,
// verified against the keyset (any kid in it; a public-only copy is enough), bound to account,
// character and map, and, when a session store is given, only while the login session lives
// (so a logout or a revocation also closes the door to the gateway).
import type { Redis } from "ioredis";
import type { Logger } from "../../platform/log.ts";
import { FileKeySource, type KeySource } from "./keyset.ts";
import { SessionStore } from "./sessions.ts";
import { type CharacterClaims, TokenError, verifyCharacterToken } from "./tokens.ts";

export interface GatewayAuthOptions {
  keys: KeySource;
  /** Check that the login session still exists (recommended). */
  sessions?: SessionStore;
}

export class GatewayAuth {
  private readonly keys: KeySource;
  private readonly sessions: SessionStore | undefined;

  constructor(opts: GatewayAuthOptions) {
    this.keys = opts.keys;
    this.sessions = opts.sessions;
  }

  /** Reads the keyset file (the mounted Secret, private parts not needed) and watches it. */
  static async open(opts: {
    keysetFile: string;
    redis?: Redis;
    redisPrefix?: string;
    log?: Logger;
    pollMs?: number;
  }): Promise<GatewayAuth & { close(): void }> {
    const keys = await FileKeySource.open(opts.keysetFile, {
      requirePrivate: false,
      pollMs: opts.pollMs,
      log: opts.log,
    });
    const sessions = opts.redis ? new SessionStore(opts.redis, opts.redisPrefix ?? "hp2p:") : undefined;
    const auth = new GatewayAuth({ keys, sessions });
    return Object.assign(auth, { close: () => keys.close() });
  }

  /**
   * Verifies a character token; throws TokenError (code expired, invalid, unknown_key, mismatch,
   * or revoked) and never returns unverified claims.
   */
  async verify(
    token: string,
    expect?: { accountId?: string; characterId?: string; map?: string },
    now?: number,
  ): Promise<CharacterClaims> {
    const claims = await verifyCharacterToken(this.keys, token, { expect, now });
    if (!(await this.sessionLive(claims))) throw new TokenError("revoked", "the login session has ended");
    return claims;
  }

  /**
   * Whether the login session behind verified claims still lives (always, without a session
   * store). For connections that outlive their token's check: a logout or a revocation ends them.
   */
  async sessionLive(claims: Pick<CharacterClaims, "sessionId" | "accountId">): Promise<boolean> {
    if (!this.sessions) return true;
    const rec = await this.sessions.get(claims.sessionId);
    return rec !== undefined && rec.accountId === claims.accountId;
  }
}

/** Where a long-lived connection keeps its login-session checks (gateway and coordinator). */
export interface SessionCheck {
  /** When the last check started. */
  checkedAt: number;
  checking: boolean;
}

/**
 * Checks again that a connection's login session lives, once `everyMs` has passed since the last
 * check and none is running; calls `ended` when it is gone. A failing session store counts as
 * alive: that is not the player's fault, and the next check asks again.
 */
export function recheckSession(
  check: SessionCheck,
  now: number,
  everyMs: number,
  live: () => Promise<boolean>,
  ended: () => void,
  log: { warn(msg: string, fields?: Record<string, unknown>): void },
): void {
  if (check.checking || now - check.checkedAt < everyMs) return;
  check.checking = true;
  check.checkedAt = now;
  void live()
    .catch((err) => {
      log.warn("session check failed", { err: String(err) });
      return true;
    })
    .then((ok) => {
      check.checking = false;
      if (!ok) ended();
    });
}
