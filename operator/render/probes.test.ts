import { describe, expect, it } from "vitest";
import { tcpProbes, workloadProbes } from "./common.ts";
import { HEALTH_PORT } from "./constants.ts";

/** Seconds a probe may keep failing before the kubelet acts on it. */
const budget = (p: { periodSeconds?: number; failureThreshold?: number; initialDelaySeconds?: number }) =>
  (p.initialDelaySeconds ?? 0) + (p.periodSeconds ?? 10) * (p.failureThreshold ?? 3);

describe("probes", () => {
  it("gives a workload's process a startup budget before liveness applies, on /healthz", () => {
    const p = workloadProbes();
    expect(p.startupProbe?.httpGet).toEqual({ path: "/healthz", port: HEALTH_PORT });
    expect(budget(p.startupProbe!)).toBe(90);
    // Liveness stays strict once started; readiness is where waiting for the stores shows.
    expect(budget(p.livenessProbe!)).toBe(30);
    expect(p.readinessProbe?.httpGet).toEqual({ path: "/readyz", port: HEALTH_PORT });
    expect(budget(p.startupProbe!)).toBeGreaterThan(budget(p.livenessProbe!));
  });

  it("gives a store's first start minutes, longer than liveness", () => {
    const p = tcpProbes(5432);
    expect(p.startupProbe?.tcpSocket).toEqual({ port: 5432 });
    expect(budget(p.startupProbe!)).toBe(300);
    expect(budget(p.startupProbe!)).toBeGreaterThan(budget(p.livenessProbe!));
  });
});
