import { describe, expect, it } from "vitest";
import { TokenBucket } from "./ratelimit.ts";

describe("TokenBucket", () => {
  it("allows a burst, then the refill rate, never more than the burst", () => {
    const b = new TokenBucket(10, 5, 0);
    for (let i = 0; i < 5; i++) expect(b.take(0)).toBe(true);
    expect(b.take(0)).toBe(false);
    expect(b.take(99)).toBe(false); // 0.99 tokens
    expect(b.take(100)).toBe(true);
    // A long pause refills to the burst, not beyond.
    let ok = 0;
    for (let i = 0; i < 20; i++) if (b.take(100_000)) ok++;
    expect(ok).toBe(5);
  });

  it("charges by size", () => {
    const b = new TokenBucket(1000, 1000, 0);
    expect(b.take(0, 800)).toBe(true);
    expect(b.take(0, 300)).toBe(false);
    expect(b.take(100, 300)).toBe(true);
  });

  it("ignores a clock that goes backwards", () => {
    const b = new TokenBucket(10, 1, 1000);
    expect(b.take(1000)).toBe(true);
    expect(b.take(500)).toBe(false);
    expect(b.take(1100)).toBe(true);
  });
});
