import { describe, expect, it } from "vitest";
import { LatencyHistogram, runBots } from "./bots.ts";

describe("LatencyHistogram", () => {
  it("gives quantiles at 0.1 ms resolution and merges", () => {
    const a = new LatencyHistogram();
    for (let i = 1; i <= 100; i++) a.record(i);
    expect(a.quantile(0.5)).toBe(50);
    expect(a.quantile(0.99)).toBe(99);
    const b = new LatencyHistogram();
    for (let i = 0; i < 100; i++) b.record(1000);
    a.merge(b);
    expect(a.total).toBe(200);
    expect(a.quantile(0.99)).toBe(1000);
    expect(new LatencyHistogram(a.counts).quantile(0.25)).toBe(50);
  });

  it("clamps what it cannot hold", () => {
    const h = new LatencyHistogram();
    h.record(-5);
    h.record(1e9);
    expect(h.quantile(0)).toBe(0);
    expect(h.quantile(1)).toBe(9999.9);
    h.reset();
    expect(h.quantile(0.5)).toBe(0);
  });
});

describe("runBots", () => {
  it("refuses P2P bots without a coordinator to mesh through", async () => {
    await expect(
      runBots({ count: 1, gatewayUrl: "ws://127.0.0.1:1", maps: ["m"], keyset: "k.json", p2pShare: 0.5 }),
    ).rejects.toThrow(/needs coordinators/);
  });
});
