// Start-up without a crash loop: workload processes started before their NATS (as pods are on a
// fresh Region) stay up, alive on /healthz and "starting" on /readyz, say what they wait for,
// and become ready once NATS comes up, in the same process: no restart. Before this, the first
// refused connection ended the process (exit 1), and the kubelet restarted it two or three times.
import { type ChildProcess, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdirSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, inject, it } from "vitest";
import { sleep } from "../../platform/time.ts";
import { keysetFile } from "../../testkit/auth.ts";
import { binDir } from "../../testkit/local/node.ts";
import { storeCredentialEnv } from "../../testkit/local/services.ts";
import { freePort, type Proc, startProcess, tcpOpen } from "../../testkit/processes.ts";

const env = inject("localEnv");
const main = new URL("../main.ts", import.meta.url).pathname;
const children: ChildProcess[] = [];
const procs: Proc[] = [];

afterAll(async () => {
  for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
  await Promise.all(procs.map((p) => p.stop()));
});

async function spawnWorkload(name: string, vars: Record<string, string>) {
  const [health, metrics] = [await freePort(), await freePort()];
  const child = spawn(process.execPath, [main, name], {
    env: {
      PATH: process.env.PATH,
      HYBRIDP2P_HEALTH_PORT: String(health),
      HYBRIDP2P_METRICS_PORT: String(metrics),
      HYBRIDP2P_LISTEN_HOST: "127.0.0.1",
      HYBRIDP2P_DRAIN_DELAY: "0s",
      POD_NAME: `${name}-0`,
      ...vars,
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
  const get = async (path: string) => {
    const r = await fetch(`http://127.0.0.1:${health}${path}`).catch(() => undefined);
    return (
      r && { status: r.status, body: (await r.json()) as { status: string; checks?: Record<string, string> } }
    );
  };
  return { name, child, pid: child.pid, get, output: () => out };
}

type Running = Awaited<ReturnType<typeof spawnWorkload>>;

async function until<T>(what: string, w: Running, probe: () => Promise<T | undefined>, ms: number) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (w.child.exitCode !== null) throw new Error(`${w.name} exited ${w.child.exitCode}: ${w.output()}`);
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`${w.name}: ${what} not within ${ms} ms: ${w.output()}`);
    await sleep(100);
  }
}

it("waits for NATS alive and not ready, then becomes ready without a restart", async () => {
  const natsPort = await freePort();
  const natsUrl = `nats://127.0.0.1:${natsPort}`;
  const keys = await keysetFile("startup");
  const common = {
    HYBRIDP2P_NATS_URL: natsUrl,
    HYBRIDP2P_AUTH_KEYSET_FILE: keys.path,
    HYBRIDP2P_REGION: `s${process.pid}`,
  };
  const workloads = [
    await spawnWorkload("gateway", {
      ...common,
      HYBRIDP2P_GATEWAY_MAPS: "z=izlude",
      HYBRIDP2P_GATEWAY_PORT: String(await freePort()),
    }),
    await spawnWorkload("coordinator", {
      ...common,
      HYBRIDP2P_COORDINATOR_MAPS: "z=izlude",
      HYBRIDP2P_COORDINATOR_PORT: String(await freePort()),
      HYBRIDP2P_COORDINATOR_CHECK_SESSIONS: "false",
    }),
  ];

  // No NATS yet: alive, "starting" and naming what it waits for, for several retries.
  for (const w of workloads) {
    await until(
      "/healthz",
      w,
      async () => ((await w.get("/healthz"))?.status === 200 ? true : undefined),
      20_000,
    );
    await until(
      "a logged wait for NATS",
      w,
      async () => (w.output().includes(`waiting for nats at ${natsUrl}:`) ? true : undefined),
      20_000,
    );
  }
  await sleep(2000);
  for (const w of workloads) {
    expect(w.child.exitCode, w.output()).toBeNull();
    expect((await w.get("/healthz"))?.status).toBe(200);
    const ready = await w.get("/readyz");
    expect(ready?.status).toBe(503);
    expect(ready?.body.checks?.started).toBe(`starting: waiting for nats at ${natsUrl}`);
    expect(w.output()).toMatch(/retry in \d+\.\d s/);
  }

  // NATS comes up on the address they wait for: ready, still the same processes.
  const dir = mkdtempSync(join(tmpdir(), "hybridp2p-startup-"));
  mkdirSync(join(dir, "logs"));
  const nats = startProcess(
    "nats-server",
    join(binDir(), "nats-server"),
    ["-a", "127.0.0.1", "-p", String(natsPort), "-js", "-sd", join(dir, "nats")],
    join(dir, "logs", "nats.log"),
  );
  procs.push(nats);
  await until("NATS port", workloads[0]!, async () => ((await tcpOpen(natsPort)) ? true : undefined), 20_000);
  for (const w of workloads) {
    // The longest wait between attempts is 10 s (the backoff's cap).
    await until(
      "/readyz 200",
      w,
      async () => ((await w.get("/readyz"))?.status === 200 ? true : undefined),
      30_000,
    );
    expect(w.child.exitCode).toBeNull();
    expect(w.child.pid).toBe(w.pid);
    expect(w.output()).toContain(`nats at ${natsUrl} answered`);
  }
}, 90_000);

it("a map server waits for NATS after PostgreSQL and Redis answered, then becomes ready in the same process", async () => {
  const natsPort = await freePort();
  const natsUrl = `nats://127.0.0.1:${natsPort}`;
  // The suite's stores (with their credentials and TLS), except NATS: a plain one, started later.
  const credentials = Object.fromEntries(
    Object.entries(storeCredentialEnv(env)).filter(([k]) => !k.startsWith("HYBRIDP2P_NATS_")),
  );
  const w = await spawnWorkload("map-server", {
    ...credentials,
    HYBRIDP2P_DATABASE_URL: env.databaseUrl!,
    HYBRIDP2P_REDIS_URL: env.redisUrl!,
    HYBRIDP2P_ETCD_ENDPOINTS: env.etcdEndpoints!,
    HYBRIDP2P_NATS_URL: natsUrl,
    HYBRIDP2P_FLAG_PREFIX: `/startup-${randomUUID()}/`,
    HYBRIDP2P_REGION: `s${process.pid}`,
    HYBRIDP2P_ZONE: "z",
    HYBRIDP2P_MAPS: "izlude",
    HYBRIDP2P_WORKER_THREADS: "0",
  });
  await until(
    "/healthz",
    w,
    async () => ((await w.get("/healthz"))?.status === 200 ? true : undefined),
    20_000,
  );
  await until(
    "a logged wait for NATS",
    w,
    async () => (w.output().includes(`waiting for nats at ${natsUrl}:`) ? true : undefined),
    30_000,
  );
  const ready = await w.get("/readyz");
  expect(ready?.status).toBe(503);
  expect(ready?.body.checks?.started).toBe(`starting: waiting for nats at ${natsUrl}`);

  const dir = mkdtempSync(join(tmpdir(), "hybridp2p-startup-"));
  mkdirSync(join(dir, "logs"));
  procs.push(
    startProcess(
      "nats-server",
      join(binDir(), "nats-server"),
      ["-a", "127.0.0.1", "-p", String(natsPort), "-js", "-sd", join(dir, "nats")],
      join(dir, "logs", "nats.log"),
    ),
  );
  await until(
    "/readyz 200",
    w,
    async () => ((await w.get("/readyz"))?.status === 200 ? true : undefined),
    30_000,
  );
  expect(w.child.pid).toBe(w.pid);
  expect(w.output()).toContain(`nats at ${natsUrl} answered`);
}, 90_000);
