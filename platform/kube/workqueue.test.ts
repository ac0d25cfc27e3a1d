import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { backoffDelay, WorkQueue } from "./workqueue.ts";

describe("backoffDelay", () => {
  it("doubles from the base and stops at the cap", () => {
    expect([0, 1, 2, 3].map((n) => backoffDelay(n, 5, 5000))).toEqual([5, 10, 20, 40]);
    expect(backoffDelay(10, 5, 5000)).toBe(5000);
    expect(backoffDelay(1000, 5, 5000)).toBe(5000); // no overflow to Infinity/NaN
  });
});

describe("WorkQueue", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it("keeps one entry per key however often it is added", async () => {
    const q = new WorkQueue();
    q.add("a");
    q.add("b");
    q.add("a");
    expect(q.len()).toBe(2);
    expect(await q.get()).toBe("a");
    expect(await q.get()).toBe("b");
  });

  it("never hands one key to two workers; a key added while in flight comes back after done", async () => {
    const q = new WorkQueue();
    q.add("a");
    const key = await q.get();
    q.add("a");
    expect(q.len()).toBe(0); // not handed out again while processing
    q.done(key!);
    expect(q.len()).toBe(1);
    expect(await q.get()).toBe("a");
  });

  it("retries with per-key exponential backoff capped at maxDelay, and forget resets it", () => {
    const q = new WorkQueue({ baseDelayMs: 10, maxDelayMs: 1000 });
    const delays = Array.from({ length: 10 }, () => q.addRateLimited("a"));
    expect(delays).toEqual([10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
    expect(q.addRateLimited("b")).toBe(10); // per key
    q.forget("a");
    expect(q.addRateLimited("a")).toBe(10);
  });

  it("adds a delayed key when its time comes; the earliest of several delays wins", async () => {
    const q = new WorkQueue();
    q.addAfter("a", 1000);
    q.addAfter("a", 100);
    q.addAfter("a", 5000);
    vi.advanceTimersByTime(99);
    expect(q.len()).toBe(0);
    vi.advanceTimersByTime(1);
    expect(q.len()).toBe(1);
    expect(await q.get()).toBe("a");
    q.done("a");
    vi.advanceTimersByTime(10_000);
    expect(q.len()).toBe(0);
  });

  it("wakes a waiting worker on add and releases waiters on shutdown", async () => {
    const q = new WorkQueue();
    const waiting = q.get();
    q.add("x");
    expect(await waiting).toBe("x");
    const idle = q.get();
    q.shutDown();
    expect(await idle).toBeUndefined();
    q.add("y");
    expect(q.len()).toBe(0);
  });

  it("reports its depth", () => {
    const depths: number[] = [];
    const q = new WorkQueue({ onDepth: (n) => depths.push(n) });
    q.add("a");
    q.add("b");
    void q.get();
    expect(depths).toEqual([1, 2, 1]);
  });
});
