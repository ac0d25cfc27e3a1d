// What the login server's routes and its RO endpoint share: one app per server (metrics,
// lockout, sign-up limits, the password hashing pool) and one login attempt, whatever the
// protocol.
import { Counter, Histogram } from "prom-client";
import { HttpError } from "../../platform/http.ts";
import type { Logger } from "../../platform/log.ts";
import type { ServiceDeps } from "../auth/service.ts";
import { newSessionId, signSessionToken } from "../auth/tokens.ts";
import type { LoginConfig } from "./config.ts";
import { addressUnit, Lockout, WindowLimit } from "./lockout.ts";
import { dummyVerify, HashLimiter, hashPassword, verifyPassword } from "./password.ts";

function loginMetrics(deps: ServiceDeps) {
  const m = {
    logins: new Counter({
      name: "hybridp2p_login_attempts_total",
      help: "Login attempts by result (ok, bad_credentials, locked, banned)",
      labelNames: ["result"],
      registers: [deps.registry],
    }),
    lockouts: new Counter({
      name: "hybridp2p_login_lockouts_total",
      help: "Lockouts started, by scope (account, address)",
      labelNames: ["scope"],
      registers: [deps.registry],
    }),
    signups: new Counter({
      name: "hybridp2p_login_signups_total",
      help: "Sign-ups by result",
      labelNames: ["result"],
      registers: [deps.registry],
    }),
    hashSeconds: new Histogram({
      name: "hybridp2p_login_password_hash_seconds",
      help: "Time to hash or verify one password, queueing included",
      buckets: [0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2],
      registers: [deps.registry],
    }),
    revocations: new Counter({
      name: "hybridp2p_login_sessions_revoked_total",
      help: "Sessions revoked by their owner",
      registers: [deps.registry],
    }),
  };
  // Known labels start at 0, so rates and the lockout alert see a series before the first event.
  for (const result of ["ok", "bad_credentials", "locked", "banned"]) m.logins.inc({ result }, 0);
  for (const scope of ["account", "address"]) m.lockouts.inc({ scope }, 0);
  return m;
}

/** What every login route shares: built once per server, then handed to each handler. */
export interface LoginApp {
  cfg: LoginConfig;
  deps: ServiceDeps;
  metrics: ReturnType<typeof loginMetrics>;
  lockout: Lockout;
  signups: WindowLimit;
  hashing: HashLimiter;
}

export function createLoginApp(cfg: LoginConfig, deps: ServiceDeps): LoginApp {
  return {
    cfg,
    deps,
    metrics: loginMetrics(deps),
    lockout: new Lockout(deps.redis, cfg.redisPrefix, cfg.lockout),
    signups: new WindowLimit(
      deps.redis,
      `${cfg.redisPrefix}signup:`,
      cfg.signupLimit.perAddress,
      cfg.signupLimit.windowMs,
    ),
    hashing: new HashLimiter(cfg.hashConcurrency, cfg.hashQueue),
  };
}

/** A 429 or 503 the client may retry after `secs` seconds. */
export function retryLater(status: number, code: string, message: string, secs: number): HttpError {
  return new HttpError(status, code, message, { headers: { "retry-after": String(secs) } });
}

/**
 * Runs a password hash or check in the bounded pool, timed: a full queue is a 503, so a login
 * storm costs latency up to a bound and then refusals, not memory.
 */
export async function hashed<T>(app: LoginApp, fn: () => Promise<T>): Promise<T> {
  const end = app.metrics.hashSeconds.startTimer();
  try {
    const r = await app.hashing.run(fn);
    if (!r) throw retryLater(503, "busy", "too many logins in progress; retry shortly", 1);
    return r.value;
  } finally {
    end();
  }
}

interface AccountRow {
  id: string;
  username: string;
  password_hash: string;
  state: string;
}

export type LoginOutcome =
  | {
      ok: true;
      session: { accountId: string; username: string; sessionId: string };
      signed: { token: string; expiresAt: number; kid: string };
    }
  | { ok: false; code: "locked"; scope: string; retryAfterMs: number }
  | { ok: false; code: "bad_credentials" | "disabled" };

/**
 * One login attempt, whatever the protocol (HTTP here, RO's 0x0064 in ro.ts): the lockout per
 * account and address, the bounded password hashing (a full queue throws the 503 HttpError),
 * the same work for unknown names, then the login session in Redis and its signed token.
 */
export async function attemptLogin(
  app: LoginApp,
  username: string,
  password: string,
  address: string,
  log: Logger,
): Promise<LoginOutcome> {
  const { cfg, deps, metrics } = app;
  const ids = { account: username.toLowerCase(), address: addressUnit(address) };
  const locked = await app.lockout.check(ids);
  if (locked) {
    metrics.logins.inc({ result: "locked" });
    return { ok: false, code: "locked", scope: locked.scope, retryAfterMs: locked.retryAfterMs };
  }
  const { rows } = await deps.pool.query<AccountRow>(
    "SELECT id, username, password_hash, state FROM accounts WHERE lower(username) = lower($1)",
    [username],
  );
  const account = rows[0];
  let ok = false;
  let needsRehash = false;
  if (account) {
    const v = await hashed(app, () => verifyPassword(password, account.password_hash, cfg.scrypt));
    ok = v.ok;
    needsRehash = v.needsRehash;
  } else {
    // Same work for an unknown name, so timing does not reveal which accounts exist.
    await hashed(app, () => dummyVerify(password, cfg.scrypt));
  }
  if (!ok || !account) {
    const newlyLocked = await app.lockout.recordFailure(ids);
    for (const scope of newlyLocked) {
      metrics.lockouts.inc({ scope });
      log.warn("login lockout", { scope, username: ids.account, address });
    }
    metrics.logins.inc({ result: "bad_credentials" });
    return { ok: false, code: "bad_credentials" };
  }
  if (account.state !== "active") {
    metrics.logins.inc({ result: "banned" });
    return { ok: false, code: "disabled" };
  }
  // The rest is independent: clear the failure count, store the session, sign its token
  // and record the login (with a stronger hash when the cost was raised), all at once.
  const session = { accountId: String(account.id), username: account.username, sessionId: newSessionId() };
  const [, , signed] = await Promise.all([
    app.lockout.recordSuccess(ids),
    deps.sessions.create(
      session.sessionId,
      { accountId: session.accountId, username: account.username, createdAt: Date.now(), address },
      cfg.sessionTtlMs,
    ),
    signSessionToken(deps.keys, session, cfg.sessionTtlMs),
    (async () => {
      const rehash = needsRehash ? await hashed(app, () => hashPassword(password, cfg.scrypt)) : undefined;
      await deps.pool.query(
        "UPDATE accounts SET last_login_at = now(), password_hash = coalesce($2, password_hash) WHERE id = $1",
        [account.id, rehash ?? null],
      );
    })(),
  ]);
  metrics.logins.inc({ result: "ok" });
  log.info("login", { accountId: session.accountId, sessionId: session.sessionId, address, kid: signed.kid });
  return { ok: true, session, signed };
}
