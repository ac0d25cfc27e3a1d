// The manager wires the pieces: shared informers (started on every instance so a follower
// has warm caches), controllers (whose workers run only while this instance leads), leader
// election, periodic resync, the probe and metrics servers, and graceful shutdown.

import { type OpsServer, parseBindAddress, startOpsServer } from "../http.ts";
import type { Logger } from "../log.ts";
import { sleep } from "../time.ts";
import type { Controller } from "./controller.ts";
import { Informer } from "./informer.ts";
import type { KubeClient, ResourceType } from "./kube.ts";
import { type LeaderElectionOptions, LeaderElector } from "./leader.ts";
import type { KubeObject } from "./meta.ts";
import type { Metrics } from "./metrics.ts";
import { backoffDelay } from "./workqueue.ts";

export interface ManagerOptions {
  client: KubeClient;
  metrics: Metrics;
  log: Logger;
  /** Namespace to watch; undefined watches all namespaces. */
  namespace?: string;
  /** The Lease and timings; the manager supplies the logger and the leading callbacks itself. */
  leaderElection?: Omit<LeaderElectionOptions, "log" | "onStartedLeading" | "onStoppedLeading">;
  healthAddress?: string;
  metricsAddress?: string;
  /** Every this often all primary objects are re-queued; a converged operator finds nothing to do. */
  resyncIntervalMs?: number;
  /** Called when leadership is lost (not on a requested stop): main exits so state restarts clean. */
  onLostLeadership?: () => void;
}

/** Work that runs only while this instance leads, besides the controllers (e.g. the flag
 * publisher, which must never write from a follower). */
export interface LeaderRunnable {
  name: string;
  lead(): Promise<void>;
  follow(): void;
}

export class Manager {
  readonly client: KubeClient;
  readonly metrics: Metrics;
  readonly log: Logger;
  readonly namespace?: string;
  private readonly o: ManagerOptions;
  private readonly informers = new Map<string, Informer<KubeObject>>();
  private readonly controllers: Controller[] = [];
  private readonly runnables: LeaderRunnable[] = [];
  private readonly stopHooks: Array<() => Promise<void>> = [];
  private elector?: LeaderElector;
  private servers?: OpsServer;
  private resyncTimer?: NodeJS.Timeout;
  private started = false;
  private stopping = false;
  private leading = false;

  constructor(o: ManagerOptions) {
    this.o = o;
    this.client = o.client;
    this.metrics = o.metrics;
    this.log = o.log;
    this.namespace = o.namespace;
  }

  /** The shared informer for a resource type (and label selector). */
  informer<T extends KubeObject>(rt: ResourceType, labelSelector?: string): Informer<T> {
    const id = `${rt.apiVersion}/${rt.plural}?${labelSelector ?? ""}`;
    let inf = this.informers.get(id);
    if (!inf) {
      inf = new Informer<KubeObject>(this.client, rt, {
        namespace: this.namespace,
        labelSelector,
        log: this.log,
      });
      this.informers.set(id, inf);
    }
    return inf as unknown as Informer<T>;
  }

  add(controller: Controller): void {
    this.controllers.push(controller);
  }

  addLeaderRunnable(r: LeaderRunnable): void {
    this.runnables.push(r);
  }

  /** Cleanup run at the end of stop(), after the controllers and informers stopped. */
  onStop(fn: () => Promise<void>): void {
    this.stopHooks.push(fn);
  }

  isLeader(): boolean {
    return this.leading;
  }

  ready(): boolean {
    return this.started && !this.stopping && [...this.informers.values()].every((i) => i.hasSynced());
  }

  get healthPort(): number | undefined {
    return this.servers?.healthPort;
  }

  get metricsPort(): number | undefined {
    return this.servers?.metricsPort;
  }

  async start(): Promise<void> {
    const health = parseBindAddress(this.o.healthAddress ?? "0");
    const metrics = parseBindAddress(this.o.metricsAddress ?? "0");
    this.servers = await startOpsServer({
      healthPort: health?.port,
      healthHost: health?.host,
      metricsPort: metrics?.port,
      metricsHost: metrics?.host,
      registry: this.metrics.registry,
      checks: {
        informers: () => {
          if (!this.ready()) throw new Error(this.stopping ? "stopping" : "caches not synced");
        },
      },
      log: this.log,
    });
    await Promise.all([...this.informers.values()].map((i) => i.start()));
    this.started = true;
    this.log.info("caches synced", { informers: this.informers.size });
    const le = this.o.leaderElection;
    if (!le) {
      this.startLeading();
    } else {
      this.elector = new LeaderElector(this.client, {
        ...le,
        log: this.log,
        onStartedLeading: () => this.startLeading(),
        onStoppedLeading: () => {
          void this.stopLeading();
          if (!this.stopping) this.o.onLostLeadership?.();
        },
      });
      this.elector.start();
    }
    const every = this.o.resyncIntervalMs ?? 10 * 60_000;
    this.resyncTimer = setInterval(() => this.resync(), every);
  }

  /** Graceful: stop campaigning, let in-flight reconciles finish, release the lease, stop watches. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    clearInterval(this.resyncTimer);
    if (this.elector) await this.elector.stop();
    else await this.stopLeading();
    await Promise.all([...this.informers.values()].map((i) => i.stop()));
    for (const fn of this.stopHooks)
      await fn().catch((err) => this.log.warn("stop hook failed", { err: String(err) }));
    await this.servers?.close();
    this.log.info("stopped");
  }

  /** Re-queues every primary object of every controller (what the periodic resync does). */
  resync(): void {
    if (this.leading) for (const c of this.controllers) c.resync();
  }

  private startLeading(): void {
    this.leading = true;
    this.metrics.isLeader.set(1);
    for (const c of this.controllers) {
      c.start();
      c.resync(); // keys queued while following may be stale or missing: look at everything once
    }
    for (const r of this.runnables) void this.lead(r, 0);
  }

  // A runnable that cannot start (its backend is down) retries with capped backoff while we lead.
  private async lead(r: LeaderRunnable, attempt: number): Promise<void> {
    if (!this.leading || this.stopping) return;
    try {
      await r.lead();
    } catch (err) {
      const delayMs = backoffDelay(attempt, 500, 5_000);
      this.log.warn("leader runnable failed to start, retrying", {
        runnable: r.name,
        err: String(err),
        delayMs,
      });
      await sleep(delayMs);
      return this.lead(r, attempt + 1);
    }
  }

  private async stopLeading(): Promise<void> {
    if (!this.leading) return;
    this.leading = false;
    this.metrics.isLeader.set(0);
    for (const r of this.runnables) r.follow();
    await Promise.all(this.controllers.map((c) => c.stop()));
  }
}
