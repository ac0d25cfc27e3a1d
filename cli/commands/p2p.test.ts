import { describe, expect, it } from "vitest";
import { rolloutSteps } from "./p2p.ts";

describe("hybridctl p2p rollout steps", () => {
  it("walks from the current percentage to the target by the step, ending exactly on the target", () => {
    expect(rolloutSteps(0, 50, 20)).toEqual([20, 40, 50]);
    expect(rolloutSteps(10, 100, 30)).toEqual([40, 70, 100]);
    expect(rolloutSteps(80, 20, 25)).toEqual([55, 30, 20]);
  });

  it("goes in one step without --step, and stays put when already there", () => {
    expect(rolloutSteps(5, 60, undefined)).toEqual([60]);
    expect(rolloutSteps(40, 40, 10)).toEqual([40]);
  });

  it("refuses percentages and steps out of range", () => {
    expect(() => rolloutSteps(0, 101, 10)).toThrow(/--to/);
    expect(() => rolloutSteps(0, 50, 0)).toThrow(/--step/);
  });
});
