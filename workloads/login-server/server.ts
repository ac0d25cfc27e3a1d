// The login server: sign-up and login over HTTP (JSON) for clients and bots, issuing a
// short-lived signed session token backed by a session record in Redis.
//
//   POST   /v1/accounts          {username, password, email?}  → 201 {accountId, username}
//   POST   /v1/sessions          {username, password}          → 200 {token, tokenType, expiresAt, accountId, sessionId}
//   GET    /v1/session           Bearer                        → 200 {accountId, username, sessionId, expiresAt}
//   POST   /v1/session/refresh   Bearer                        → 200 a new token for the same session
//   DELETE /v1/session           Bearer                        → 204 (revoked on every replica)
//   DELETE /v1/sessions          Bearer                        → 204 every session of the account ("log out everywhere")
import { Type } from "@sinclair/typebox";
import { Counter, Histogram } from "prom-client";
import { HttpError, type RequestContext, type Route, readBody, sendJson } from "../../platform/http.ts";
import { createLogger, type Logger } from "../../platform/log.ts";
import type { KeySource } from "../auth/keyset.ts";
import { clientAddress, type RunningService, type ServiceDeps, startService } from "../auth/service.ts";
import { authenticate } from "../auth/sessions.ts";
import { newSessionId, signSessionToken } from "../auth/tokens.ts";
import { isUniqueViolation } from "../db/pool.ts";
import type { LoginConfig } from "./config.ts";
import { addressUnit, Lockout, WindowLimit } from "./lockout.ts";
import { dummyVerify, HashLimiter, hashPassword, verifyPassword } from "./password.ts";

export const USERNAME_PATTERN = "^[A-Za-z0-9_]{4,23}$";

const Username = Type.String({
  pattern: USERNAME_PATTERN,
  description: "must be 4 to 23 letters, digits or underscores",
});
const Password = Type.String({ minLength: 8, maxLength: 128, description: "must be 8 to 128 characters" });

const SignUpBody = Type.Object(
  {
    username: Username,
    password: Password,
    email: Type.Optional(
      Type.String({
        maxLength: 254,
        pattern: "^[^@\\s]+@[^@\\s]+$",
        description: "must be an e-mail address",
      }),
    ),
  },
  { additionalProperties: false },
);

const LoginBody = Type.Object(
  {
    username: Type.String({
      pattern: "^[A-Za-z0-9_]{1,23}$",
      description: "must be 1 to 23 letters, digits or underscores",
    }),
    password: Type.String({
      minLength: 1,
      maxLength: 128,
      description: "is required (at most 128 characters)",
    }),
  },
  { additionalProperties: false },
);

function loginMetrics(deps: ServiceDeps) {
  return {
    logins: new Counter({
      name: "hybridp2p_login_attempts_total",
      help: "Login attempts by result (ok, bad_credentials, locked, banned, busy)",
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
}

/** What every login route shares: built once per server, then handed to each handler. */
interface LoginApp {
  cfg: LoginConfig;
  deps: ServiceDeps;
  metrics: ReturnType<typeof loginMetrics>;
  lockout: Lockout;
  signups: WindowLimit;
  hashing: HashLimiter;
}

export function loginRoutes(cfg: LoginConfig, deps: ServiceDeps): Route[] {
  const app: LoginApp = {
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
  return [
    { method: "POST", path: "/v1/accounts", handler: (rc) => signUp(app, rc) },
    { method: "POST", path: "/v1/sessions", handler: (rc) => logIn(app, rc) },
    { method: "GET", path: "/v1/session", handler: (rc) => showSession(app, rc) },
    { method: "POST", path: "/v1/session/refresh", handler: (rc) => refreshSession(app, rc) },
    { method: "DELETE", path: "/v1/session", handler: (rc) => logOut(app, rc) },
    { method: "DELETE", path: "/v1/sessions", handler: (rc) => logOutEverywhere(app, rc) },
  ];
}

/** A 429 or 503 the client may retry after `secs` seconds. */
function retryLater(status: number, code: string, message: string, secs: number): HttpError {
  return new HttpError(status, code, message, { headers: { "retry-after": String(secs) } });
}

/**
 * Runs a password hash or check in the bounded pool, timed: a full queue is a 503, so a login
 * storm costs latency up to a bound and then refusals, not memory.
 */
async function hashed<T>(app: LoginApp, fn: () => Promise<T>): Promise<T> {
  const end = app.metrics.hashSeconds.startTimer();
  try {
    const r = await app.hashing.run(fn);
    if (!r) throw retryLater(503, "busy", "too many logins in progress; retry shortly", 1);
    return r.value;
  } finally {
    end();
  }
}

async function signUp(app: LoginApp, { req, res, log }: RequestContext): Promise<void> {
  const { cfg, metrics } = app;
  const body = await readBody(req, SignUpBody, cfg.maxBodyBytes);
  const wait = await app.signups.hit(addressUnit(clientAddress(req, cfg.trustedProxyHops)));
  if (wait > 0) {
    metrics.signups.inc({ result: "rate_limited" });
    const secs = Math.ceil(wait / 1000);
    throw retryLater(
      429,
      "too_many_signups",
      `too many sign-ups from this address; retry in ${secs} s`,
      secs,
    );
  }
  const hash = await hashed(app, () => hashPassword(body.password, cfg.scrypt));
  try {
    const { rows } = await app.deps.pool.query<{ id: string }>(
      "INSERT INTO accounts (username, password_hash, email) VALUES ($1, $2, $3) RETURNING id",
      [body.username, hash, body.email ?? null],
    );
    metrics.signups.inc({ result: "ok" });
    log.info("account created", { accountId: rows[0]!.id, username: body.username });
    sendJson(res, 201, { accountId: rows[0]!.id, username: body.username });
  } catch (err) {
    if (isUniqueViolation(err, "accounts_username_lower_key")) {
      metrics.signups.inc({ result: "taken" });
      throw new HttpError(409, "username_taken", "that username is taken");
    }
    throw err;
  }
}

interface AccountRow {
  id: string;
  username: string;
  password_hash: string;
  state: string;
}

async function logIn(app: LoginApp, { req, res, log }: RequestContext): Promise<void> {
  const { cfg, deps, metrics } = app;
  const body = await readBody(req, LoginBody, cfg.maxBodyBytes);
  const address = clientAddress(req, cfg.trustedProxyHops);
  const ids = { account: body.username.toLowerCase(), address: addressUnit(address) };
  const locked = await app.lockout.check(ids);
  if (locked) {
    metrics.logins.inc({ result: "locked" });
    const secs = Math.max(1, Math.ceil(locked.retryAfterMs / 1000));
    throw retryLater(
      429,
      "locked_out",
      `too many failed logins for this ${locked.scope}; retry in ${secs} s`,
      secs,
    );
  }
  const { rows } = await deps.pool.query<AccountRow>(
    "SELECT id, username, password_hash, state FROM accounts WHERE lower(username) = lower($1)",
    [body.username],
  );
  const account = rows[0];
  let ok = false;
  let needsRehash = false;
  if (account) {
    const v = await hashed(app, () => verifyPassword(body.password, account.password_hash, cfg.scrypt));
    ok = v.ok;
    needsRehash = v.needsRehash;
  } else {
    // Same work for an unknown name, so timing does not reveal which accounts exist.
    await hashed(app, () => dummyVerify(body.password, cfg.scrypt));
  }
  if (!ok || !account) {
    const newlyLocked = await app.lockout.recordFailure(ids);
    for (const scope of newlyLocked) {
      metrics.lockouts.inc({ scope });
      log.warn("login lockout", { scope, username: ids.account, address });
    }
    metrics.logins.inc({ result: "bad_credentials" });
    throw new HttpError(401, "invalid_credentials", "wrong username or password");
  }
  if (account.state !== "active") {
    metrics.logins.inc({ result: "banned" });
    throw new HttpError(403, "account_disabled", "this account is disabled");
  }
  // The rest is independent: clear the failure count, store the session, sign its token
  // and record the login (with a stronger hash when the cost was raised), all at once.
  const session = { accountId: account.id, username: account.username, sessionId: newSessionId() };
  const [, , signed] = await Promise.all([
    app.lockout.recordSuccess(ids),
    deps.sessions.create(
      session.sessionId,
      { accountId: account.id, username: account.username, createdAt: Date.now(), address },
      cfg.sessionTtlMs,
    ),
    signSessionToken(deps.keys, session, cfg.sessionTtlMs),
    (async () => {
      const rehash = needsRehash
        ? await hashed(app, () => hashPassword(body.password, cfg.scrypt))
        : undefined;
      await deps.pool.query(
        "UPDATE accounts SET last_login_at = now(), password_hash = coalesce($2, password_hash) WHERE id = $1",
        [account.id, rehash ?? null],
      );
    })(),
  ]);
  metrics.logins.inc({ result: "ok" });
  log.info("login", { accountId: account.id, sessionId: session.sessionId, address, kid: signed.kid });
  sendJson(res, 200, tokenBody(signed, session));
}

/** The answer to a login or a refresh: the session's signed token and whose it is. */
function tokenBody(
  signed: { token: string; expiresAt: number },
  session: { accountId: string; username: string; sessionId: string },
) {
  return {
    token: signed.token,
    tokenType: "Bearer",
    expiresAt: new Date(signed.expiresAt).toISOString(),
    accountId: session.accountId,
    username: session.username,
    sessionId: session.sessionId,
  };
}

async function showSession({ deps }: LoginApp, { req, res }: RequestContext): Promise<void> {
  const claims = await authenticate(req, deps.keys, deps.sessions);
  sendJson(res, 200, {
    accountId: claims.accountId,
    username: claims.username,
    sessionId: claims.sessionId,
    expiresAt: new Date(claims.expiresAt).toISOString(),
  });
}

async function refreshSession({ cfg, deps }: LoginApp, { req, res }: RequestContext): Promise<void> {
  const claims = await authenticate(req, deps.keys, deps.sessions);
  if (!(await deps.sessions.extend(claims.sessionId, claims.accountId, cfg.sessionTtlMs))) {
    throw new HttpError(401, "session_revoked", "the session has ended or was revoked");
  }
  const signed = await signSessionToken(deps.keys, claims, cfg.sessionTtlMs);
  sendJson(res, 200, tokenBody(signed, claims));
}

async function logOut({ deps, metrics }: LoginApp, { req, res, log }: RequestContext): Promise<void> {
  const claims = await authenticate(req, deps.keys, deps.sessions);
  await deps.sessions.revoke(claims.sessionId);
  metrics.revocations.inc();
  log.info("session revoked", { accountId: claims.accountId, sessionId: claims.sessionId });
  res.writeHead(204).end();
}

async function logOutEverywhere(
  { deps, metrics }: LoginApp,
  { req, res, log }: RequestContext,
): Promise<void> {
  const claims = await authenticate(req, deps.keys, deps.sessions);
  const n = await deps.sessions.revokeAll(claims.accountId);
  metrics.revocations.inc(n);
  log.info("all sessions revoked", { accountId: claims.accountId, sessions: n });
  res.writeHead(204).end();
}

export async function startLoginServer(
  cfg: LoginConfig,
  opts: { log?: Logger; keys?: KeySource } = {},
): Promise<RunningService> {
  const log =
    opts.log ??
    createLogger("login-server", { level: cfg.runtime.logLevel, fields: { pod: cfg.runtime.podName } });
  return startService(
    cfg,
    { log, keys: opts.keys, metricsPrefix: "hybridp2p_login", requirePrivateKey: true },
    (deps) => loginRoutes(cfg, deps),
  );
}
