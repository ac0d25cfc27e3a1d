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
import { HttpError, type RequestContext, type Route, readBody, sendJson } from "../../platform/http.ts";
import { createLogger, type Logger } from "../../platform/log.ts";
import type { KeySource } from "../auth/keyset.ts";
import { clientAddress, type RunningService, startService } from "../auth/service.ts";
import { authenticate } from "../auth/sessions.ts";
import { signSessionToken } from "../auth/tokens.ts";
import { isUniqueViolation } from "../db/pool.ts";
import { attemptLogin, createLoginApp, hashed, type LoginApp, retryLater } from "./app.ts";
import type { LoginConfig } from "./config.ts";
import { addressUnit } from "./lockout.ts";
import { hashPassword } from "./password.ts";
import { startRoLogin } from "./ro.ts";

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

export function loginRoutes(app: LoginApp): Route[] {
  return [
    { method: "POST", path: "/v1/accounts", handler: (rc) => signUp(app, rc) },
    { method: "POST", path: "/v1/sessions", handler: (rc) => logIn(app, rc) },
    { method: "GET", path: "/v1/session", handler: (rc) => showSession(app, rc) },
    { method: "POST", path: "/v1/session/refresh", handler: (rc) => refreshSession(app, rc) },
    { method: "DELETE", path: "/v1/session", handler: (rc) => logOut(app, rc) },
    { method: "DELETE", path: "/v1/sessions", handler: (rc) => logOutEverywhere(app, rc) },
  ];
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

async function logIn(app: LoginApp, { req, res, log }: RequestContext): Promise<void> {
  const body = await readBody(req, LoginBody, app.cfg.maxBodyBytes);
  const address = clientAddress(req, app.cfg.trustedProxyHops);
  const out = await attemptLogin(app, body.username, body.password, address, log);
  if (!out.ok) {
    if (out.code === "locked") {
      const secs = Math.max(1, Math.ceil(out.retryAfterMs / 1000));
      throw retryLater(
        429,
        "locked_out",
        `too many failed logins for this ${out.scope}; retry in ${secs} s`,
        secs,
      );
    }
    if (out.code === "disabled") throw new HttpError(403, "account_disabled", "this account is disabled");
    throw new HttpError(401, "invalid_credentials", "wrong username or password");
  }
  sendJson(res, 200, tokenBody(out.signed, out.session));
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
  let app: LoginApp | undefined;
  const ro = cfg.ro;
  const svc = await startService(
    cfg,
    { log, keys: opts.keys, metricsPrefix: "hybridp2p_login", requirePrivateKey: true },
    (deps) => {
      app = createLoginApp(cfg, deps);
      return loginRoutes(app);
    },
    ro ? () => startRoLogin(app!, ro, log) : undefined,
  );
  return svc;
}
