#!/usr/bin/env node
// hybrid-operator: `hybrid-operator run` reconciles Regions and Zones until SIGTERM.
import { hostname } from "node:os";
import { KubeConfig } from "@kubernetes/client-node";
import { Command, InvalidArgumentError } from "commander";
import { connectFlagStore } from "../platform/flags/etcd.ts";
import { KubeClient } from "../platform/kube/kube.ts";
import { Manager } from "../platform/kube/manager.ts";
import { Metrics } from "../platform/kube/metrics.ts";
import { createLogger, LOG_LEVELS, type Logger, type LogLevel } from "../platform/log.ts";
import { connectNats, requireStoreAccess } from "../platform/stores/access.ts";
import { parseDuration } from "../platform/time.ts";
import { waitFor } from "../platform/wait.ts";
import type { Region } from "./api/index.ts";
import type { Context } from "./controllers/context.ts";
import { setupFlagPlane } from "./controllers/flagplane.ts";
import { setupOperator } from "./controllers/operator.ts";
import { operatorStoreAccess } from "./controllers/storeaccess.ts";
import { STORE_CALL_TIMEOUT_MS } from "./flags/stores.ts";

export const LEASE_NAME = "hybrid-operator-leader";

/** Node flags the operator process runs with (image, chart and benchmark): V8 sizes its heap
 * from the machine, not the container, so without a limit it grows lazily past a 256 MiB
 * container limit before collecting. The live set at 1000 Zones is about 60 MB. */
export const OPERATOR_NODE_FLAGS = ["--max-old-space-size=160", "--max-semi-space-size=4"];

export interface OperatorConfig {
  kubeconfig?: string;
  /** Watch only this namespace; all namespaces when unset. */
  namespace?: string;
  leaderElect: boolean;
  /** Namespace of the leader Lease (defaults to --namespace, then POD_NAMESPACE, then "default"). */
  leaseNamespace?: string;
  identity?: string;
  metricsBindAddress: string;
  healthProbeBindAddress: string;
  concurrency?: number;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  resyncIntervalMs?: number;
  /** Run the flag plane (default true); tests of the other controllers that play it set false. */
  flagPlane?: boolean;
  /** One flag store for every Region instead of each Region's own etcd (its dataStores.etcd). */
  flagsEtcdEndpoints?: string;
  /** One report channel for every Region instead of each Region's NATS (its dataStores.nats). */
  flagsNatsUrl?: string;
  flagsPrefix?: string;
  /** Where the operator reaches a Region's managed etcd or NATS (default: its Service, as the
   * Region's pods do); tests on a control plane without pods point it at stores they run. */
  storeEndpoint?: (region: Region, store: "etcd" | "nats") => string;
  log?: Logger;
  onLostLeadership?: () => void;
}

/** A command-line duration ("15s", "500ms"), refused with a message when malformed. */
function durationOption(value: string): number {
  const ms = parseDuration(value);
  if (ms === undefined || ms <= 0) {
    throw new InvalidArgumentError(`expected a positive duration such as 15s or 500ms, got "${value}"`);
  }
  return ms;
}

/** LOG_LEVEL picks the level; a misspelt one is refused at start rather than silently ignored. */
function operatorLogger(): Logger {
  const level = process.env.LOG_LEVEL ?? "info";
  if (!(LOG_LEVELS as readonly string[]).includes(level)) {
    throw new Error(`LOG_LEVEL must be one of ${LOG_LEVELS.join(", ")}; got "${level}"`);
  }
  return createLogger("operator", { level: level as LogLevel });
}

/** Builds and starts one operator instance (also used by the tests and the benchmark). */
export async function startOperator(cfg: OperatorConfig): Promise<Manager> {
  const kc = new KubeConfig();
  if (cfg.kubeconfig) kc.loadFromFile(cfg.kubeconfig);
  else kc.loadFromDefault();
  const identity = cfg.identity ?? `${process.env.POD_NAME ?? hostname()}-${process.pid}`;
  const log = (cfg.log ?? operatorLogger()).child({ identity });
  const metrics = new Metrics({ processMetrics: cfg.log === undefined });
  const client = await new KubeClient(kc, metrics).init();
  const mgr = new Manager({
    client,
    metrics,
    log,
    namespace: cfg.namespace,
    healthAddress: cfg.healthProbeBindAddress,
    metricsAddress: cfg.metricsBindAddress,
    resyncIntervalMs: cfg.resyncIntervalMs,
    onLostLeadership: cfg.onLostLeadership,
    leaderElection: cfg.leaderElect
      ? {
          namespace: cfg.leaseNamespace ?? cfg.namespace ?? process.env.POD_NAMESPACE ?? "default",
          name: LEASE_NAME,
          identity,
          leaseDurationMs: cfg.leaseDurationMs,
          renewDeadlineMs: cfg.renewDeadlineMs,
          retryPeriodMs: cfg.retryPeriodMs,
        }
      : undefined,
  });
  const ctx = setupOperator(mgr, {
    identity,
    concurrency: cfg.concurrency,
    storeEndpoint: cfg.storeEndpoint,
  });
  if (cfg.flagPlane !== false) await setupFlags(mgr, ctx, cfg, identity);
  await mgr.start();
  return mgr;
}

/** The flag plane publishes each Region's flags to the Region's own flag store and listens for its
 * pods' reports on the Region's NATS, unless one store (or channel) for all is given. */
async function setupFlags(mgr: Manager, ctx: Context, cfg: OperatorConfig, identity: string): Promise<void> {
  const etcd = cfg.flagsEtcdEndpoints
    ? connectFlagStore(requireStoreAccess("etcd", cfg.flagsEtcdEndpoints), {
        callTimeoutMs: STORE_CALL_TIMEOUT_MS,
      })
    : undefined;
  // The shared NATS may come up after the operator: connect in the background (retried, logged),
  // so the operator starts, serves its probes and reconciles meanwhile instead of exiting.
  const stopWaiting = new AbortController();
  const flagsNatsUrl = cfg.flagsNatsUrl;
  const nats = flagsNatsUrl
    ? waitFor(
        "nats",
        flagsNatsUrl,
        () =>
          connectNats(requireStoreAccess("nats", flagsNatsUrl), {
            name: `hybrid-operator-${identity}`,
            maxReconnectAttempts: -1,
            reconnectTimeWait: 500,
          }),
        { log: mgr.log, signal: stopWaiting.signal },
      )
    : undefined;
  nats?.catch(() => undefined); // stopped while waiting: nothing to close
  const plane = setupFlagPlane(mgr, {
    etcd,
    nats,
    prefix: cfg.flagsPrefix,
    // Each Region's own stores, with the operator's identity there (its Secrets, read by name).
    storesOf: (r) => ({ etcd: ctx.storeEndpoint(r, "etcd"), nats: ctx.storeEndpoint(r, "nats") }),
    accessOf: (r, store, url) => operatorStoreAccess(ctx.secrets, r, store, url),
    identity,
    events: ctx.events,
    onStoreHealth: (regions) => ctx.requeueRegions(regions),
  });
  ctx.flagStoreHealth = plane.storeHealth;
  mgr.onStop(async () => {
    etcd?.close();
    stopWaiting.abort(new Error("operator stopping"));
    await (await nats?.catch(() => undefined))?.close();
  });
}

function cli(): Command {
  const program = new Command("hybrid-operator").description("Kubernetes operator for the hybrid P2P MMO");
  program
    .command("run")
    .description("reconcile Regions and Zones until SIGTERM")
    .option("--kubeconfig <path>", "kubeconfig file (default: in-cluster config or $KUBECONFIG)")
    .option("--namespace <ns>", "watch only this namespace (default: all namespaces)")
    .option("--leader-elect", "elect a leader through a Lease before reconciling", false)
    .option("--leader-election-namespace <ns>", "namespace of the leader Lease")
    .option(
      "--leader-elect-lease-duration <duration>",
      "how long followers wait after the last renewal before taking the Lease: a killed leader is replaced after this (default: 15s)",
      durationOption,
    )
    .option(
      "--leader-elect-renew-deadline <duration>",
      "how long a leader keeps trying to renew before it gives up leading (default: 10s)",
      durationOption,
    )
    .option(
      "--leader-elect-retry-period <duration>",
      "how often a leader renews and a follower tries to acquire (default: 2s)",
      durationOption,
    )
    .option("--metrics-bind-address <addr>", "address of /metrics (0 disables)", ":9090")
    .option("--health-probe-bind-address <addr>", "address of /healthz and /readyz (0 disables)", ":8081")
    .option("--concurrency <n>", "reconcile workers per controller", (v) => Number.parseInt(v, 10), 4)
    .option("--resync-period <seconds>", "re-examine every object this often", (v) => Number(v), 600)
    .option(
      "--flags-etcd-endpoints <urls>",
      "one flag store (etcd, comma-separated URLs) for every Region instead of each Region's own (empty: each Region's dataStores.etcd)",
      "",
    )
    .option(
      "--flags-nats-url <urls>",
      "one report channel (NATS) for every Region instead of each Region's own (empty: each Region's dataStores.nats)",
      "",
    )
    .option("--flags-prefix <prefix>", "key prefix of the runtime flags in etcd")
    .action(async (o) => {
      const log = operatorLogger();
      let mgr: Manager | undefined;
      const shutdown = async (signal: string) => {
        log.info("shutting down", { signal });
        // A second signal, or a stuck shutdown, ends the process anyway.
        setTimeout(() => process.exit(1), 30_000).unref();
        await mgr?.stop();
        process.exit(0);
      };
      process.once("SIGTERM", () => void shutdown("SIGTERM"));
      process.once("SIGINT", () => void shutdown("SIGINT"));
      mgr = await startOperator({
        kubeconfig: o.kubeconfig,
        namespace: o.namespace,
        leaderElect: o.leaderElect,
        leaseNamespace: o.leaderElectionNamespace,
        leaseDurationMs: o.leaderElectLeaseDuration,
        renewDeadlineMs: o.leaderElectRenewDeadline,
        retryPeriodMs: o.leaderElectRetryPeriod,
        metricsBindAddress: o.metricsBindAddress,
        healthProbeBindAddress: o.healthProbeBindAddress,
        concurrency: o.concurrency,
        resyncIntervalMs: o.resyncPeriod * 1000,
        flagsEtcdEndpoints: o.flagsEtcdEndpoints,
        flagsNatsUrl: o.flagsNatsUrl,
        flagsPrefix: o.flagsPrefix,
        onLostLeadership: () => {
          // Like client-go: a deposed leader exits and starts over rather than act on stale state.
          log.error("lost leadership, exiting");
          process.exit(1);
        },
      });
    });
  return program;
}

if (import.meta.main) {
  await cli()
    .parseAsync(process.argv)
    .catch((err: unknown) => {
      createLogger("operator").error("operator failed", { err });
      process.exit(1);
    });
}
