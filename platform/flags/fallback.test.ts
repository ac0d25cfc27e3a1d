import { describe, expect, it } from "vitest";
import { FallbackLatch, type RecoveryPolicy } from "./fallback.ts";

const auto: RecoveryPolicy = { mode: "Auto", initialSeconds: 10, maxSeconds: 60, clearToken: "" };
const manual: RecoveryPolicy = { mode: "Manual", initialSeconds: 10, maxSeconds: 60, clearToken: "t0" };

describe("fallback latch", () => {
  it("enters on a trigger and, with Auto recovery, leaves after the backoff once the trigger clears", () => {
    const l = new FallbackLatch();
    expect(l.evaluate(0, auto, true).active).toBe(false);
    l.set("coordinator", "coordinator unreachable", 1000, auto);
    expect(l.evaluate(1000, auto, true)).toMatchObject({
      active: true,
      reason: "coordinator unreachable",
      since: 1000,
    });
    l.clear("coordinator", 5000);
    const waiting = l.evaluate(5000, auto, true);
    expect(waiting.active).toBe(true);
    expect(waiting.releaseAt).toBe(15_000);
    expect(l.evaluate(14_999, auto, true).active).toBe(true);
    expect(l.evaluate(15_000, auto, true).active).toBe(false);
  });

  it("doubles the backoff on each quick re-entry, up to the maximum, and resets after a stable period", () => {
    const l = new FallbackLatch();
    let t = 0;
    const cycle = () => {
      l.set("mesh", "loss past max", t, auto);
      l.clear("mesh", t);
      const releaseAt = l.evaluate(t, auto, true).releaseAt!;
      const backoff = releaseAt - t;
      t = releaseAt;
      expect(l.evaluate(t, auto, true).active).toBe(false);
      return backoff;
    };
    expect([cycle(), cycle(), cycle(), cycle(), cycle()]).toEqual([10_000, 20_000, 40_000, 60_000, 60_000]);
    t += 61_000;
    expect(cycle()).toBe(10_000);
  });

  it("stays while any trigger is set", () => {
    const l = new FallbackLatch();
    l.set("a", "A", 0, auto);
    l.set("b", "B", 0, auto);
    l.clear("a", 1);
    expect(l.evaluate(100_000, auto, true)).toMatchObject({ active: true, reason: "B" });
  });

  it("with Manual recovery, stays until the clear token changes or P2P is switched off", () => {
    const l = new FallbackLatch();
    l.set("store", "flag store unreachable", 0, manual);
    l.clear("store", 10);
    expect(l.evaluate(10_000_000, manual, true).active).toBe(true);
    expect(l.evaluate(10_000_000, { ...manual, clearToken: "t1" }, true).active).toBe(false);

    l.set("store", "again", 20_000_000, manual);
    l.clear("store", 20_000_001);
    expect(l.evaluate(20_000_002, manual, true).active).toBe(true);
    expect(l.evaluate(20_000_003, manual, false).active).toBe(false);
  });
});
