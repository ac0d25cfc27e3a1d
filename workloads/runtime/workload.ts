// The common start of every workload process, in one call: runtime settings from the
// environment (validated), a JSON logger, a metrics registry, the ops server (/healthz, /readyz,
// /metrics on the ports from config.ts) and graceful shutdown on SIGTERM. A workload then adds
// its own readiness checks, metrics and shutdown hooks:
//
//   const w = await startWorkload("map-server");
//   const nc = await w.startup.waitFor("nats", url, () => connect({ servers: url }));
//   w.checks.nats = () => nc.flush();
//   w.shutdown.add("persist", () => persistAll());
//   w.ready(); // once it serves
import type { Registry } from "prom-client";
import { newRegistry, type OpsServer, type ReadinessCheck, startOpsServer } from "../../platform/http.ts";
import { createLogger, type Logger } from "../../platform/log.ts";
import { sleep } from "../../platform/time.ts";
import { type Env, EnvReader, type RuntimeConfig, readRuntimeConfig } from "./config.ts";
import { Shutdown } from "./shutdown.ts";
import { Startup } from "./startup.ts";

export interface Workload {
  name: string;
  config: RuntimeConfig;
  log: Logger;
  registry: Registry;
  /** Readiness checks by name; add or remove at any time. */
  checks: Record<string, ReadinessCheck>;
  ops: OpsServer;
  shutdown: Shutdown;
  /** Waits for the stores with backoff while /readyz says what it waits for (liveness stays OK). */
  startup: Startup;
  /** Call once the workload serves: until then /readyz answers "starting". */
  ready(): void;
}

export async function startWorkload(
  name: string,
  opts: {
    env?: Env;
    /** Read the workload's own variables with the same reader so all problems are reported together. */
    readConfig?: (r: EnvReader) => void;
    installSignals?: boolean;
    log?: Logger;
  } = {},
): Promise<Workload> {
  const reader = new EnvReader(opts.env ?? process.env);
  const config = readRuntimeConfig(reader);
  opts.readConfig?.(reader);
  reader.done();
  const log = opts.log ?? createLogger(name, { level: config.logLevel, fields: { pod: config.podName } });
  const { registry, checks, ops, startup, ready } = await startOps(config, log, {
    labels: { pod: config.podName, region: config.region },
  });
  const shutdown = new Shutdown(log, config.shutdownTimeoutMs);
  shutdown.add("ops server", () => ops.close());
  // Before every other hook: stop receiving traffic, then let the workload's own hooks close.
  shutdown.addFirst("readiness off", async () => {
    ops.setReady(false);
    await sleep(config.drainDelayMs);
  });
  shutdown.addFirst("stop waiting for stores", () => startup.stop());
  if (opts.installSignals ?? true) shutdown.installSignalHandlers();
  log.info("workload started", { healthPort: ops.healthPort, metricsPort: ops.metricsPort });
  return {
    name,
    config,
    log,
    registry,
    checks,
    ops,
    shutdown,
    startup,
    ready,
  };
}

/** The ops server of a workload that is still starting, and what goes with it. */
export interface StartingOps {
  registry: Registry;
  /** Readiness checks by name: "started" until ready(), then the workload's own. */
  checks: Record<string, ReadinessCheck>;
  ops: OpsServer;
  startup: Startup;
  /** The workload serves: /readyz is up to its own checks from now on. */
  ready(): void;
}

/**
 * Starts the ops server before anything else: alive while the workload waits for its stores
 * (they may start after this pod), and /readyz answers "starting" until ready().
 */
export async function startOps(
  runtime: Pick<RuntimeConfig, "healthPort" | "metricsPort">,
  log: Logger,
  opts: { labels: Record<string, string>; host?: string },
): Promise<StartingOps> {
  const startup = new Startup(log);
  const registry = newRegistry(opts.labels);
  const checks: Record<string, ReadinessCheck> = { started: startup.check };
  const ops = await startOpsServer({
    healthPort: runtime.healthPort,
    metricsPort: runtime.metricsPort,
    host: opts.host,
    registry,
    log,
    checks,
  });
  return {
    registry,
    checks,
    ops,
    startup,
    ready: () => {
      startup.done();
      delete checks.started;
    },
  };
}
