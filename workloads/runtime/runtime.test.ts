// The shared workload runtime: configuration errors name the variable and hide secrets; logs
// are JSON and never carry passwords, tokens or credentials; shutdown hooks run in reverse.
import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { createLogger, REDACTED } from "../../platform/log.ts";
import { parseDuration } from "../../platform/time.ts";
import {
  ConfigError,
  DEFAULT_HEALTH_PORT,
  DEFAULT_METRICS_PORT,
  EnvReader,
  readRuntimeConfig,
} from "./config.ts";
import { scrapedMetrics } from "./metrics.ts";
import { Shutdown } from "./shutdown.ts";
import { startWorkload } from "./workload.ts";

describe("config", () => {
  it("reads defaults and the env var contract", () => {
    const r = new EnvReader({ POD_NAME: "login-0", HYBRIDP2P_REGION: "eu" });
    const cfg = readRuntimeConfig(r);
    r.done();
    expect(cfg).toMatchObject({
      podName: "login-0",
      region: "eu",
      healthPort: DEFAULT_HEALTH_PORT,
      metricsPort: DEFAULT_METRICS_PORT,
    });
    expect([DEFAULT_HEALTH_PORT, DEFAULT_METRICS_PORT]).toEqual([8081, 9090]);
  });

  it("reports every bad variable at once, by name", () => {
    const r = new EnvReader({
      HYBRIDP2P_HEALTH_PORT: "eighty",
      HYBRIDP2P_SHUTDOWN_TIMEOUT: "10",
      HYBRIDP2P_LOG_LEVEL: "loud",
      HYBRIDP2P_DATABASE_URL: "mysql://root:hunter2@db/x",
    });
    readRuntimeConfig(r);
    r.url("HYBRIDP2P_DATABASE_URL", ["postgres"]);
    r.url("HYBRIDP2P_REDIS_URL", ["redis"]);
    let err: ConfigError | undefined;
    try {
      r.done();
    } catch (e) {
      err = e as ConfigError;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const text = err!.message;
    for (const name of [
      "HYBRIDP2P_HEALTH_PORT",
      "HYBRIDP2P_SHUTDOWN_TIMEOUT",
      "HYBRIDP2P_LOG_LEVEL",
      "HYBRIDP2P_DATABASE_URL",
      "HYBRIDP2P_REDIS_URL: is required",
    ]) {
      expect(text).toContain(name);
    }
    expect(text).not.toContain("hunter2");
    expect(err!.problems).toHaveLength(5);
  });

  it("parses durations with units only", () => {
    expect(parseDuration("15m")).toBe(900_000);
    expect(parseDuration("1.5s")).toBe(1500);
    expect(parseDuration("250ms")).toBe(250);
    expect(parseDuration("10")).toBeUndefined();
  });
});

describe("log", () => {
  it("writes one JSON object per line and redacts secrets wherever they are", () => {
    const lines: string[] = [];
    const log = createLogger("test", { sink: (l) => lines.push(l) }).child({ pod: "p-0" });
    const jwt = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlc2lnbmF0dXJl";
    log.info(`user sent ${jwt}`, {
      password: "hunter2",
      body: { username: "bob", password: "hunter3", nested: { token: "abc" } },
      url: "postgres://app:s3cret@db:5432/x",
      header: `Bearer ${jwt}`,
      err: new Error(`failed for redis://:pw@r:6379 with ${jwt}`),
      accountId: "42",
    });
    log.debug("hidden at info level");
    expect(lines).toHaveLength(1);
    const rec = JSON.parse(lines[0]!);
    expect(rec).toMatchObject({
      level: "info",
      component: "test",
      pod: "p-0",
      accountId: "42",
      password: REDACTED,
    });
    expect(rec.body).toEqual({ username: "bob", password: REDACTED, nested: { token: REDACTED } });
    for (const secret of ["hunter2", "hunter3", "s3cret", ":pw@", jwt, 'abc"'])
      expect(lines[0]).not.toContain(secret);
    expect(rec.url).toBe(`postgres://app:${REDACTED}@db:5432/x`);
  });
});

describe("shutdown", () => {
  it("runs hooks once, last registered first, past a failing one", async () => {
    const order: string[] = [];
    const s = new Shutdown(createLogger("t", { sink: () => {} }), 1000);
    s.add("db", () => {
      order.push("db");
    });
    s.add("broken", () => {
      throw new Error("boom");
    });
    s.add("http", async () => {
      order.push("http");
    });
    await Promise.all([s.run("test"), s.run("again")]);
    expect(order).toEqual(["http", "db"]);
    expect(s.stopping).toBe(true);
  });

  it("does not wait past the deadline for a stuck hook", async () => {
    const s = new Shutdown(createLogger("t", { sink: () => {} }), 50);
    let after = false;
    s.add("after", () => {
      after = true;
    });
    s.add("stuck", () => new Promise(() => {}));
    await s.run("test");
    expect(after).toBe(true);
  });
});

describe("startWorkload", () => {
  it("serves health, readiness with the workload's checks, and metrics, and drains first on shutdown", async () => {
    const lines: string[] = [];
    const w = await startWorkload("demo", {
      env: {
        HYBRIDP2P_HEALTH_PORT: "0",
        HYBRIDP2P_METRICS_PORT: "0",
        POD_NAME: "demo-0",
        HYBRIDP2P_DRAIN_DELAY: "0s",
      },
      installSignals: false,
      log: createLogger("demo", { sink: (l) => lines.push(l) }),
    });
    const health = `http://127.0.0.1:${w.ops.healthPort}`;
    expect((await fetch(`${health}/healthz`)).status).toBe(200);
    // Alive but not ready until the workload says it serves.
    const starting = await fetch(`${health}/readyz`);
    expect(starting.status).toBe(503);
    expect(await starting.json()).toEqual({ status: "not ready", checks: { started: "starting" } });
    w.ready();
    expect((await fetch(`${health}/readyz`)).status).toBe(200);
    let broken = true;
    w.checks.bus = () => {
      if (broken) throw new Error("bus down");
    };
    const notReady = await fetch(`${health}/readyz`);
    expect(notReady.status).toBe(503);
    expect(await notReady.json()).toEqual({ status: "not ready", checks: { bus: "bus down" } });
    broken = false;
    expect((await fetch(`${health}/readyz`)).status).toBe(200);
    const metrics = await (await fetch(`http://127.0.0.1:${w.ops.metricsPort}/metrics`)).text();
    expect(metrics).toContain('process_cpu_seconds_total{pod="demo-0"');

    const seen: number[] = [];
    w.shutdown.add("persist", async () => {
      seen.push((await fetch(`${health}/readyz`)).status);
    });
    await w.shutdown.run("test");
    expect(seen).toEqual([503]);
    await expect(fetch(`${health}/healthz`)).rejects.toThrow();
  });

  it("refuses bad settings, naming them", async () => {
    await expect(
      startWorkload("demo", { env: { HYBRIDP2P_METRICS_PORT: "99999" }, installSignals: false }),
    ).rejects.toThrow(/HYBRIDP2P_METRICS_PORT/);
  });
});

describe("scrapedMetrics", () => {
  it("reads levels and running totals when scraped, totals as counters", async () => {
    const registry = new Registry();
    const stats = { open: 2, sent: 5 };
    const { gauge, total } = scrapedMetrics(registry);
    gauge("demo_open", "Open things", () => stats.open);
    total("demo_sent_total", "Things sent", () => stats.sent);
    stats.open = 3;
    stats.sent = 7;
    const text = await registry.metrics();
    expect(text).toContain("# HELP demo_open Open things\n# TYPE demo_open gauge\ndemo_open 3\n");
    expect(text).toContain("# TYPE demo_sent_total counter\ndemo_sent_total 7\n");
  });
});
