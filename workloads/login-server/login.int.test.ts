// The login server against real PostgreSQL and Redis: sign-up, login, lockout and its expiry,
// session tokens that expire and can be revoked from any replica, and validation errors.
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { redisOptions } from "../../platform/stores/access.ts";
import {
  call,
  capturingLogger,
  freshDatabase,
  keysetFile,
  testLoginConfig,
  uniquePrefix,
} from "../../testkit/auth.ts";
import { freePort } from "../../testkit/processes.ts";
import type { RunningService } from "../auth/service.ts";
import { signSessionToken } from "../auth/tokens.ts";
import type { LoginConfig } from "./config.ts";
import { startLoginServer } from "./server.ts";

const env = inject("localEnv");

let cfg: LoginConfig;
let a: RunningService;
let b: RunningService;
const logA = capturingLogger("login-a");
let redis: Redis;

const secretPassword = "correct horse battery";

beforeAll(async () => {
  const databaseUrl = await freshDatabase(env.databaseUrl!, "login");
  const keys = await keysetFile();
  cfg = testLoginConfig({
    databaseUrl,
    redisUrl: env.redisUrl!,
    redisPrefix: uniquePrefix("login"),
    keysetFile: keys.path,
  });
  // Two replicas of the same service: state must live in PostgreSQL and Redis only.
  [a, b] = await Promise.all([
    startLoginServer(cfg, { log: logA.log }),
    startLoginServer(cfg, { log: capturingLogger("b").log }),
  ]);
  redis = new Redis(redisOptions(env.redis!));
});

afterAll(async () => {
  await Promise.all([a?.close(), b?.close()]);
  redis?.disconnect();
});

async function signUp(username: string, password = secretPassword) {
  return call(a.url, "POST", "/v1/accounts", { body: { username, password } });
}

function fromAddress(address: string): Record<string, string> {
  return { "x-forwarded-for": address };
}

describe("login server", () => {
  it("signs up an account once, whatever the case of the name", async () => {
    const r = await signUp("Alice_01");
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({ username: "Alice_01" });
    expect(r.body.accountId).toMatch(/^\d+$/);
    const again = await call(b.url, "POST", "/v1/accounts", {
      body: { username: "alice_01", password: secretPassword },
    });
    expect(again.status).toBe(409);
    expect(again.body.error.code).toBe("username_taken");
  });

  it("rejects bad bodies with clear 4xx errors", async () => {
    const short = await call(a.url, "POST", "/v1/accounts", {
      body: { username: "ab", password: secretPassword },
    });
    expect(short.status).toBe(400);
    expect(short.body.error.message).toMatch(/^username: must be 4 to 23/);
    const weak = await call(a.url, "POST", "/v1/accounts", {
      body: { username: "bobby", password: "short" },
    });
    expect(weak.status).toBe(400);
    expect(weak.body.error.message).toMatch(/^password:/);
    const extra = await call(a.url, "POST", "/v1/accounts", {
      body: { username: "bobby", password: secretPassword, admin: true },
    });
    expect(extra.status).toBe(400);
    const badJson = await call(a.url, "POST", "/v1/sessions", { raw: "{nope" });
    expect(badJson.status).toBe(400);
    expect(badJson.body.error.code).toBe("invalid_json");
    const big = await call(a.url, "POST", "/v1/sessions", {
      raw: JSON.stringify({ username: "x".repeat(10_000), password: "y" }),
    });
    expect(big.status).toBe(413);
    const notJson = await call(a.url, "POST", "/v1/sessions", {
      raw: "a=b",
      headers: { "content-type": "text/plain" },
    });
    expect(notJson.status).toBe(415);
    const wrongMethod = await call(a.url, "PUT", "/v1/sessions");
    expect(wrongMethod.status).toBe(405);
    const unknown = await call(a.url, "GET", "/v1/nothing");
    expect(unknown.status).toBe(404);
  });

  it("logs in on one replica and the session is checked and revoked on another", async () => {
    await signUp("carol_22");
    const login = await call(a.url, "POST", "/v1/sessions", {
      body: { username: "CAROL_22", password: secretPassword },
    });
    expect(login.status).toBe(200);
    expect(login.body).toMatchObject({ tokenType: "Bearer", username: "carol_22" });
    const token = login.body.token as string;
    const check = await call(b.url, "GET", "/v1/session", { token });
    expect(check.status).toBe(200);
    expect(check.body.accountId).toBe(login.body.accountId);

    const refreshed = await call(b.url, "POST", "/v1/session/refresh", { token });
    expect(refreshed.status).toBe(200);
    expect(refreshed.body.sessionId).toBe(login.body.sessionId);

    const revoke = await call(b.url, "DELETE", "/v1/session", { token });
    expect(revoke.status).toBe(204);
    for (const t of [token, refreshed.body.token as string]) {
      const after = await call(a.url, "GET", "/v1/session", { token: t });
      expect(after.status).toBe(401);
      expect(after.body.error.code).toBe("session_revoked");
    }
  });

  it("logs an account out everywhere", async () => {
    await signUp("multi_dev");
    const logins = await Promise.all(
      [a, b, a].map((s) =>
        call(s.url, "POST", "/v1/sessions", { body: { username: "multi_dev", password: secretPassword } }),
      ),
    );
    const tokens = logins.map((l) => l.body.token as string);
    expect(new Set(logins.map((l) => l.body.sessionId)).size).toBe(3);
    expect((await call(b.url, "DELETE", "/v1/sessions", { token: tokens[1] })).status).toBe(204);
    for (const token of tokens) expect((await call(a.url, "GET", "/v1/session", { token })).status).toBe(401);
    const again = await call(a.url, "POST", "/v1/sessions", {
      body: { username: "multi_dev", password: secretPassword },
    });
    expect((await call(b.url, "GET", "/v1/session", { token: again.body.token })).status).toBe(200);
  });

  it("rejects a wrong password and an unknown account alike", async () => {
    await signUp("dave_333");
    const wrong = await call(a.url, "POST", "/v1/sessions", {
      body: { username: "dave_333", password: "wrong password" },
    });
    const unknown = await call(a.url, "POST", "/v1/sessions", {
      body: { username: "nobody_here", password: "wrong password" },
    });
    expect(wrong.status).toBe(401);
    expect(unknown.status).toBe(401);
    expect(wrong.body).toEqual(unknown.body);
  });

  it("rejects an expired session token", async () => {
    await signUp("erin_4444");
    const login = await call(a.url, "POST", "/v1/sessions", {
      body: { username: "erin_4444", password: secretPassword },
    });
    const claims = {
      accountId: login.body.accountId,
      sessionId: login.body.sessionId,
      username: "erin_4444",
    };
    // Same session, signed as if an hour ago with a 15-minute lifetime.
    const old = await signSessionToken(a.deps.keys, claims, cfg.sessionTtlMs, Date.now() - 3_600_000);
    const r = await call(b.url, "GET", "/v1/session", { token: old.token });
    expect(r.status).toBe(401);
    expect(r.body.error.code).toBe("token_expired");
    // The current token of that session still works.
    expect((await call(b.url, "GET", "/v1/session", { token: login.body.token })).status).toBe(200);
  });

  it("ends the session when its Redis record expires", async () => {
    const short = { ...cfg, sessionTtlMs: 3000, runtime: { ...cfg.runtime } };
    const c = await startLoginServer(short, { log: capturingLogger("c").log });
    try {
      await signUp("frank_555");
      const login = await call(c.url, "POST", "/v1/sessions", {
        body: { username: "frank_555", password: secretPassword },
      });
      expect(login.status).toBe(200);
      const key = `${cfg.redisPrefix}sess:${login.body.sessionId}`;
      expect(await redis.pttl(key)).toBeGreaterThan(0);
      while ((await redis.exists(key)) === 1) await new Promise((r) => setTimeout(r, 100));
      const r = await call(a.url, "GET", "/v1/session", { token: login.body.token });
      expect(r.status).toBe(401);
      expect(["session_revoked", "token_expired"]).toContain(r.body.error.code);
    } finally {
      await c.close();
    }
  });

  it("locks an account after 5 failures, on every replica, and unlocks it when the lockout ends", async () => {
    const lockoutMs = 5000; // the two locked attempts below fit in it on a busy machine
    const policy = { maxFailures: 5, windowMs: 60_000, lockoutMs };
    const fast = { ...cfg, lockout: { account: policy, address: { ...policy, maxFailures: 1000 } } };
    const [x, y] = await Promise.all([
      startLoginServer(fast, { log: capturingLogger("x").log }),
      startLoginServer(fast, { log: capturingLogger("y").log }),
    ]);
    try {
      await signUp("grace_666");
      for (let i = 0; i < 5; i++) {
        // Alternate replicas and addresses: the count is per account, in Redis.
        const r = await call(i % 2 ? x.url : y.url, "POST", "/v1/sessions", {
          body: { username: "grace_666", password: `wrong-${i}-password` },
          headers: fromAddress(`10.0.0.${i}`),
        });
        expect(r.status).toBe(401);
      }
      const locked = await call(x.url, "POST", "/v1/sessions", {
        body: { username: "Grace_666", password: secretPassword },
        headers: fromAddress("10.0.1.1"),
      });
      expect(locked.status).toBe(429);
      expect(locked.body.error.code).toBe("locked_out");
      expect(Number(locked.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
      expect(
        (
          await call(y.url, "POST", "/v1/sessions", {
            body: { username: "grace_666", password: secretPassword },
          })
        ).status,
      ).toBe(429);
      // Wait for the lock key itself to expire (no timing assertion), then log in.
      const lockKey = `${cfg.redisPrefix}login:{a:grace_666}:lock`;
      while ((await redis.exists(lockKey)) === 1) await new Promise((r) => setTimeout(r, 100));
      const ok = await call(y.url, "POST", "/v1/sessions", {
        body: { username: "grace_666", password: secretPassword },
      });
      expect(ok.status).toBe(200);
      // A success clears the failure count: four more failures do not lock again.
      for (let i = 0; i < 4; i++) {
        await call(x.url, "POST", "/v1/sessions", {
          body: { username: "grace_666", password: "still wrong!" },
        });
      }
      expect(
        (
          await call(x.url, "POST", "/v1/sessions", {
            body: { username: "grace_666", password: secretPassword },
          })
        ).status,
      ).toBe(200);
    } finally {
      await Promise.all([x.close(), y.close()]);
    }
  });

  it("locks an address that fails across many accounts", async () => {
    const policy = { maxFailures: 1000, windowMs: 60_000, lockoutMs: 60_000 };
    const strict = { ...cfg, lockout: { account: policy, address: { ...policy, maxFailures: 3 } } };
    const x = await startLoginServer(strict, { log: capturingLogger("x").log });
    try {
      await signUp("henry_777");
      for (const name of ["nobody_1", "nobody_2", "nobody_3"]) {
        const r = await call(x.url, "POST", "/v1/sessions", {
          body: { username: name, password: "guessing-pw" },
          headers: fromAddress("192.0.2.7"),
        });
        expect(r.status).toBe(401);
      }
      const blocked = await call(x.url, "POST", "/v1/sessions", {
        body: { username: "henry_777", password: secretPassword },
        headers: fromAddress("192.0.2.7"),
      });
      expect(blocked.status).toBe(429);
      const elsewhere = await call(x.url, "POST", "/v1/sessions", {
        body: { username: "henry_777", password: secretPassword },
        headers: fromAddress("192.0.2.8"),
      });
      expect(elsewhere.status).toBe(200);
    } finally {
      await x.close();
    }
  });

  it("limits sign-ups per address", async () => {
    const x = await startLoginServer(
      { ...cfg, signupLimit: { perAddress: 2, windowMs: 60_000 } },
      { log: capturingLogger("x").log },
    );
    try {
      const signUpFrom = (username: string, address: string) =>
        call(x.url, "POST", "/v1/accounts", {
          body: { username, password: secretPassword },
          headers: fromAddress(address),
        });
      expect((await signUpFrom("spam_1", "198.51.100.1")).status).toBe(201);
      expect((await signUpFrom("spam_2", "198.51.100.1")).status).toBe(201);
      const third = await signUpFrom("spam_3", "198.51.100.1");
      expect(third.status).toBe(429);
      expect(third.body.error.code).toBe("too_many_signups");
      expect((await signUpFrom("spam_3", "198.51.100.2")).status).toBe(201);
    } finally {
      await x.close();
    }
  });

  it("re-hashes a password stored with an older cost on the next login", async () => {
    const old = { ...cfg, scrypt: { logN: 11, r: 8, p: 1 } };
    const x = await startLoginServer(old, { log: capturingLogger("x").log });
    try {
      expect(
        (
          await call(x.url, "POST", "/v1/accounts", {
            body: { username: "ivan_8888", password: secretPassword },
          })
        ).status,
      ).toBe(201);
    } finally {
      await x.close();
    }
    const q = () =>
      a.deps.pool.query<{ password_hash: string }>(
        "SELECT password_hash FROM accounts WHERE username = 'ivan_8888'",
      );
    expect((await q()).rows[0]!.password_hash).toMatch(/^\$scrypt\$ln=11,/);
    expect(
      (
        await call(a.url, "POST", "/v1/sessions", {
          body: { username: "ivan_8888", password: secretPassword },
        })
      ).status,
    ).toBe(200);
    expect((await q()).rows[0]!.password_hash).toMatch(/^\$scrypt\$ln=10,/);
  });

  it("answers 503 and reports not ready while Redis is unreachable", async () => {
    const dead = `redis://127.0.0.1:${await freePort()}`;
    const x = await startLoginServer({ ...cfg, redisUrl: dead }, { log: capturingLogger("x").log });
    try {
      const ready = await call(`http://127.0.0.1:${x.ops.healthPort}`, "GET", "/readyz");
      expect(ready.status).toBe(503);
      expect(ready.body.checks.postgres).toBe("ok");
      expect(ready.body.checks.redis).not.toBe("ok");
      const r = await call(x.url, "POST", "/v1/sessions", {
        body: { username: "carol_22", password: secretPassword },
      });
      expect(r.status).toBe(503);
      expect(r.body.error.code).toBe("unavailable");
    } finally {
      await x.close();
    }
  });

  it("serves health, readiness and metrics, and never logs a password or token", async () => {
    const health = await call(`http://127.0.0.1:${a.ops.healthPort}`, "GET", "/healthz");
    expect(health.status).toBe(200);
    const ready = await call(`http://127.0.0.1:${a.ops.healthPort}`, "GET", "/readyz");
    expect(ready.status).toBe(200);
    expect(ready.body.checks).toEqual({ postgres: "ok", redis: "ok", keyset: "ok" });
    const metrics = await call(`http://127.0.0.1:${a.ops.metricsPort}`, "GET", "/metrics");
    expect(metrics.status).toBe(200);
    expect(metrics.body).toMatch(/hybridp2p_login_attempts_total\{result="ok"/);
    expect(metrics.body).toMatch(/hybridp2p_login_http_requests_total/);
    const all = logA.lines.join("\n");
    expect(all).toContain('"msg":"login"');
    expect(all).not.toContain(secretPassword);
    expect(all).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}\./);
    expect(all).not.toContain("$scrypt$");
  });
});
