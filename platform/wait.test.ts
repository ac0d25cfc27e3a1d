import { describe, expect, it } from "vitest";
import type { Fields, Logger } from "./log.ts";
import { backoffMs, waitFor } from "./wait.ts";

function recorder(): { log: Logger; lines: Array<{ level: string; msg: string; fields?: Fields }> } {
  const lines: Array<{ level: string; msg: string; fields?: Fields }> = [];
  const at =
    (level: string) =>
    (msg: string, fields?: Fields): void => {
      lines.push({ level, msg, fields });
    };
  const log: Logger = {
    debug: at("debug"),
    info: at("info"),
    warn: at("warn"),
    error: at("error"),
    child: () => log,
  };
  return { log, lines };
}

describe("backoffMs", () => {
  const b = { initialMs: 100, maxMs: 1000, jitter: 0.5 };

  it("doubles per attempt up to the cap", () => {
    const top = () => 1; // the whole jitter drawn: the undiminished delay
    expect([1, 2, 3, 4, 5, 6, 50].map((n) => backoffMs(n, b, top))).toEqual([
      100, 200, 400, 800, 1000, 1000, 1000,
    ]);
  });

  it("draws the jitter fraction at random, never past the cap", () => {
    expect(backoffMs(1, b, () => 0)).toBe(50);
    expect(backoffMs(10, b, () => 0)).toBe(500);
    expect(backoffMs(10, b, () => 0.999)).toBeLessThanOrEqual(1000);
    expect(backoffMs(3, { ...b, jitter: 0 }, () => 0.3)).toBe(400);
  });
});

describe("waitFor", () => {
  const fast = { initialMs: 1, maxMs: 5, jitter: 0 };

  it("retries until the attempt succeeds and logs each wait with the store, address and error", async () => {
    const { log, lines } = recorder();
    let n = 0;
    const value = await waitFor(
      "nats",
      "nats://app:hunter2@nats:4222",
      async () => {
        n++;
        if (n < 3) throw Object.assign(new Error(""), { code: "ECONNREFUSED" });
        return "connected";
      },
      { log, backoff: fast },
    );
    expect(value).toBe("connected");
    const waits = lines.filter((l) => l.level === "warn").map((l) => l.msg);
    expect(waits).toEqual([
      "waiting for nats at nats://app:[redacted]@nats:4222: ECONNREFUSED, retry in 0.0 s",
      "waiting for nats at nats://app:[redacted]@nats:4222: ECONNREFUSED, retry in 0.0 s",
    ]);
    expect(lines.at(-1)?.msg).toBe("nats at nats://app:[redacted]@nats:4222 answered");
    expect(lines.at(-1)?.fields?.attempts).toBe(3);
  });

  it("counts an attempt that hangs as failed", async () => {
    const { log, lines } = recorder();
    let n = 0;
    await waitFor("redis", "redis://r:6379", () => (++n === 1 ? new Promise(() => {}) : Promise.resolve()), {
      log,
      backoff: fast,
      attemptTimeoutMs: 20,
    });
    expect(lines[0]?.msg).toMatch(/^waiting for redis at redis:\/\/r:6379: no answer within 0.0 s/);
  });

  it("stops when its signal aborts", async () => {
    const { log } = recorder();
    const ac = new AbortController();
    const p = waitFor("etcd", "http://etcd:2379", () => Promise.reject(new Error("refused")), {
      log,
      backoff: { initialMs: 60_000, maxMs: 60_000, jitter: 0 },
      signal: ac.signal,
    });
    setTimeout(() => ac.abort(new Error("shutting down")), 10);
    await expect(p).rejects.toThrow("shutting down");
  });
});
