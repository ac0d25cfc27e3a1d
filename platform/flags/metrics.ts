// A pod's side of the flag plane, as metrics: the epoch it applied and the mode it is in. The
// operator exports the published epoch (operator/flags/metrics.ts); their difference per pod is
// the ack lag the flag-plane dashboard and the EpochNotAcked alert look at.
import { Gauge, type Registry } from "prom-client";
import type { FlagClient } from "./client.ts";

const MODES = ["p2p", "server", "fallback"] as const;

export function registerFlagMetrics(registry: Registry, flags: FlagClient): void {
  new Gauge({
    name: "hybridp2p_flags_applied_epoch",
    help: "The flag epoch this pod applied (0: none yet)",
    registers: [registry],
    collect() {
      this.set(flags.current().epoch);
    },
  });
  new Gauge({
    name: "hybridp2p_flags_pod_mode",
    help: "1 for the mode this pod is in (p2p, server, fallback)",
    labelNames: ["mode"],
    registers: [registry],
    collect() {
      const mode = flags.current().mode;
      for (const m of MODES) this.set({ mode: m }, m === mode ? 1 : 0);
    },
  });
}
