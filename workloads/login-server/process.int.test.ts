// The workloads as processes, the way a pod runs them: `node workloads/main.ts <name>` with the
// environment contract, ready on /readyz, serving, and exiting cleanly on SIGTERM.
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { afterAll, describe, expect, inject, it } from "vitest";
import { call, freshDatabase, keysetFile, uniquePrefix } from "../../testkit/auth.ts";
import { storeCredentialEnv } from "../../testkit/local/services.ts";
import { freePort } from "../../testkit/processes.ts";
import { testServingTls } from "../../testkit/tls.ts";

const env = inject("localEnv");
const main = new URL("../main.ts", import.meta.url).pathname;
const children: ChildProcess[] = [];

afterAll(() => {
  for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
});

async function startWorkload(name: string, vars: Record<string, string>) {
  const [api, health, metrics] = [await freePort(), await freePort(), await freePort()];
  const portVar = name === "login-server" ? "HYBRIDP2P_LOGIN_PORT" : "HYBRIDP2P_CHAR_PORT";
  const child = spawn(process.execPath, [main, name], {
    env: {
      PATH: process.env.PATH,
      ...vars,
      [portVar]: String(api),
      HYBRIDP2P_HEALTH_PORT: String(health),
      HYBRIDP2P_METRICS_PORT: String(metrics),
      HYBRIDP2P_LISTEN_HOST: "127.0.0.1",
      POD_NAME: `${name}-0`,
      // https, as a Region serves by default (the test process trusts the test CA: testkit/tls.ts).
      HYBRIDP2P_SERVING_TLS_DIR: testServingTls().dir,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.push(child);
  let out = "";
  child.stdout!.on("data", (d) => {
    out += d;
  });
  child.stderr!.on("data", (d) => {
    out += d;
  });
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`${name} exited ${child.exitCode}: ${out}`);
    const ok = await fetch(`http://127.0.0.1:${health}/readyz`)
      .then((r) => r.status === 200)
      .catch(() => false);
    if (ok) break;
    if (i > 300) throw new Error(`${name} never became ready: ${out}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    child,
    url: `https://127.0.0.1:${api}`,
    metrics: `http://127.0.0.1:${metrics}`,
    output: () => out,
  };
}

describe("workload processes", () => {
  it("run login and char servers from the environment and stop cleanly on SIGTERM", async () => {
    const keys = await keysetFile("proc");
    const password = "process-password";
    const vars = {
      ...storeCredentialEnv(env),
      HYBRIDP2P_DATABASE_URL: await freshDatabase(env.databaseUrl!, "procs"),
      HYBRIDP2P_REDIS_URL: env.redisUrl!,
      HYBRIDP2P_REDIS_PREFIX: uniquePrefix("procs"),
      HYBRIDP2P_AUTH_KEYSET_FILE: keys.path,
      HYBRIDP2P_SCRYPT_LOG_N: "10",
      HYBRIDP2P_SCRYPT_P: "1",
      HYBRIDP2P_GATEWAY_ADDRESS: "gw.example:7000",
      HYBRIDP2P_DRAIN_DELAY: "200ms",
    };
    const [login, chars] = await Promise.all([
      startWorkload("login-server", vars),
      startWorkload("char-server", vars),
    ]);
    expect(
      (await call(login.url, "POST", "/v1/accounts", { body: { username: "proc_user", password } })).status,
    ).toBe(201);
    const s = await call(login.url, "POST", "/v1/sessions", { body: { username: "proc_user", password } });
    expect(s.status).toBe(200);
    const c = await call(chars.url, "POST", "/v1/characters", {
      token: s.body.token,
      body: { name: "Processed" },
    });
    expect(c.status).toBe(201);
    const metrics = await fetch(`${login.metrics}/metrics`).then((r) => r.text());
    expect(metrics).toMatch(/hybridp2p_login_attempts_total\{result="ok",pod="login-server-0"/);

    for (const w of [login, chars]) {
      w.child.kill("SIGTERM");
      const [code] = await once(w.child, "exit");
      expect(code).toBe(0);
      const lines = w.output().trim().split("\n");
      for (const l of lines) expect(() => JSON.parse(l)).not.toThrow();
      expect(w.output()).toContain('"msg":"shutdown complete"');
      expect(w.output()).not.toContain(password);
      expect(w.output()).not.toContain(s.body.token);
    }
  });
});
