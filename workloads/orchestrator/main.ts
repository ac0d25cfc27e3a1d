// `node workloads/main.ts orchestrator`: the global orchestrator of world events (WorldEvent
// resources). Leader-elected on a Lease, so the chart may run two replicas; it reaches each Region's
// NATS itself (README.md beside this file).
import { hostname } from "node:os";
import { createLogger } from "../../platform/log.ts";
import { EnvReader, type RuntimeConfig, readRuntimeConfig } from "../runtime/config.ts";
import { configOrExit, runUntilSignalled } from "../runtime/shutdown.ts";
import { startOrchestrator } from "./orchestrator.ts";

export interface OrchestratorConfig {
  runtime: RuntimeConfig;
  /** Kubeconfig file; in-cluster (or ~/.kube/config) when absent. */
  kubeconfig: string | undefined;
  leaderElect: boolean;
  leaseNamespace: string;
  leaseName: string;
  /** One NATS URL for every Region (development); each Region's own when absent. */
  natsUrl: string | undefined;
  /** Only WorldEvents, Regions and Zones of this namespace; every namespace when absent. */
  watchNamespace: string | undefined;
  intervalMs: number;
  /** client-go's leader election timings (defaults 15 s, 10 s, 2 s). */
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
}

export function orchestratorConfigFromEnv(env = process.env): OrchestratorConfig {
  const r = new EnvReader(env);
  const runtime = readRuntimeConfig(r);
  const cfg: OrchestratorConfig = {
    runtime,
    kubeconfig: r.str("KUBECONFIG"),
    leaderElect: r.bool("HYBRIDP2P_LEADER_ELECT", true),
    leaseNamespace: r.str("HYBRIDP2P_LEASE_NAMESPACE", runtime.namespace),
    leaseName: r.str("HYBRIDP2P_LEASE_NAME", "hybrid-orchestrator"),
    natsUrl: r.str("HYBRIDP2P_ORCHESTRATOR_NATS_URL"),
    watchNamespace: r.str("HYBRIDP2P_WATCH_NAMESPACE"),
    intervalMs: r.duration("HYBRIDP2P_ORCHESTRATOR_INTERVAL", 1000, { minMs: 100, maxMs: 60_000 }),
    leaseDurationMs: r.duration("HYBRIDP2P_LEASE_DURATION", 15_000, { minMs: 1000 }),
    renewDeadlineMs: r.duration("HYBRIDP2P_RENEW_DEADLINE", 10_000, { minMs: 500 }),
    retryPeriodMs: r.duration("HYBRIDP2P_RETRY_PERIOD", 2_000, { minMs: 100 }),
  };
  r.done();
  return cfg;
}

export async function run(): Promise<void> {
  const cfg = configOrExit("orchestrator", () => orchestratorConfigFromEnv());
  const identity = `${cfg.runtime.podName === "local" ? hostname() : cfg.runtime.podName}-${process.pid}`;
  const log = createLogger("orchestrator", { level: cfg.runtime.logLevel, fields: { identity } });
  await runUntilSignalled(log, cfg.runtime.shutdownTimeoutMs, async () => {
    const orch = await startOrchestrator({
      kubeconfig: cfg.kubeconfig,
      log,
      identity,
      leaseNamespace: cfg.leaderElect ? cfg.leaseNamespace : undefined,
      leaseName: cfg.leaseName,
      leaseDurationMs: cfg.leaseDurationMs,
      renewDeadlineMs: cfg.renewDeadlineMs,
      retryPeriodMs: cfg.retryPeriodMs,
      healthAddress: `:${cfg.runtime.healthPort}`,
      metricsAddress: `:${cfg.runtime.metricsPort}`,
      natsOverride: cfg.natsUrl ? () => cfg.natsUrl : undefined,
      namespace: cfg.watchNamespace,
      intervalMs: cfg.intervalMs,
      // A deposed leader exits; the Deployment restarts it as a follower with fresh state.
      onLostLeadership: () => {
        log.error("lost the lease, exiting");
        process.exit(1);
      },
    });
    log.info("orchestrator started", { leaderElect: cfg.leaderElect, sharedNats: cfg.natsUrl !== undefined });
    return { close: () => orch.stop() };
  });
}
