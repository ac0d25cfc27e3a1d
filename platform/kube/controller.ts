// One controller per kind: a work queue of object keys fed by informer events, drained by
// a bounded number of workers that call the kind's reconcile. A reconcile that throws is
// retried with the key's capped backoff; one that succeeds clears it.

import type { Logger } from "../log.ts";
import type { EventType, Informer } from "./informer.ts";
import { objectKey } from "./informer.ts";
import type { KubeObject } from "./meta.ts";
import type { Metrics } from "./metrics.ts";
import { WorkQueue } from "./workqueue.ts";

export interface ReconcileResult {
  /** Reconcile again after this long even without an event (e.g. waiting on something unwatched). */
  requeueAfterMs?: number;
}

export type Reconcile = (key: string) => Promise<ReconcileResult | undefined>;

export type Predicate<T> = (type: EventType, obj: T) => boolean;

/** Passes adds and deletes, and updates only when `fingerprint` changed (e.g. metadata.generation,
 * so a controller is not woken by status writes, its own included). */
export function changed<T extends KubeObject>(fingerprint: (obj: T) => string): Predicate<T> {
  const seen = new Map<string, string>();
  return (type, obj) => {
    const key = objectKey(obj);
    if (type === "delete") {
      seen.delete(key);
      return true;
    }
    const fp = fingerprint(obj);
    const before = seen.get(key);
    seen.set(key, fp);
    return type === "add" || before !== fp;
  };
}

export const generationChanged = <T extends KubeObject>(): Predicate<T> =>
  changed((o: T) => String(o.metadata.generation ?? 0));

export interface ControllerOptions {
  name: string;
  reconcile: Reconcile;
  concurrency?: number;
  metrics: Metrics;
  log: Logger;
  baseDelayMs?: number;
  maxDelayMs?: number;
}

export class Controller {
  readonly name: string;
  queue: WorkQueue;
  private readonly reconcile: Reconcile;
  private readonly concurrency: number;
  private readonly metrics: Metrics;
  private readonly log: Logger;
  private readonly resyncSources: Array<() => string[]> = [];
  private workers: Promise<void>[] = [];

  constructor(o: ControllerOptions) {
    this.name = o.name;
    this.reconcile = o.reconcile;
    this.concurrency = o.concurrency ?? 4;
    this.metrics = o.metrics;
    this.log = o.log.child({ controller: o.name });
    this.newQueue = () =>
      new WorkQueue({
        baseDelayMs: o.baseDelayMs,
        maxDelayMs: o.maxDelayMs,
        onDepth: (n) => o.metrics.queueDepth.set({ controller: o.name }, n),
      });
    this.queue = this.newQueue();
    // A series from the start: an idle queue hands keys straight to waiting workers and never
    // reports a depth, which left dashboards and alerts without the series.
    o.metrics.queueDepth.set({ controller: o.name }, 0);
  }

  private readonly newQueue: () => WorkQueue;

  /** Reconciles every object of the primary kind on its events (and on resync). */
  watchPrimary<T extends KubeObject>(informer: Informer<T>, predicate?: Predicate<T>): void {
    informer.on((type, obj) => {
      if (!predicate || predicate(type, obj)) this.queue.add(objectKey(obj));
    });
    this.resyncSources.push(() => informer.list().map(objectKey));
  }

  /** Reconciles the controlling owner of `ownerKind` when one of its children changes, so
   * an edited or deleted child is restored. */
  watchOwned<T extends KubeObject>(informer: Informer<T>, ownerKind: string): void {
    informer.on((_type, obj) => {
      const ref = obj.metadata.ownerReferences?.find((r) => r.controller && r.kind === ownerKind);
      if (ref) this.queue.add(`${obj.metadata.namespace ?? ""}/${ref.name}`);
    });
  }

  /** Reconciles the keys `map` returns for each event of another kind. A `delayMs` coalesces
   * bursts (an aggregate such as a count needs one reconcile per burst, not one per event). */
  watchMapped<T extends KubeObject>(
    informer: Informer<T>,
    map: (obj: T) => string[],
    opts: { predicate?: Predicate<T>; delayMs?: number } = {},
  ): void {
    informer.on((type, obj) => {
      if (opts.predicate && !opts.predicate(type, obj)) return;
      for (const key of map(obj)) this.queue.addAfter(key, opts.delayMs ?? 0);
    });
  }

  resync(): void {
    for (const keys of this.resyncSources) for (const key of keys()) this.queue.add(key);
  }

  start(): void {
    if (this.workers.length > 0) return;
    if (this.queue.isShutDown()) this.queue = this.newQueue(); // leading again after a stop
    for (let i = 0; i < this.concurrency; i++) this.workers.push(this.work());
  }

  /** Stops taking keys and waits for in-flight reconciles to finish. */
  async stop(): Promise<void> {
    this.queue.shutDown();
    await Promise.all(this.workers);
    this.workers = [];
  }

  private async work(): Promise<void> {
    for (;;) {
      const key = await this.queue.get();
      if (key === undefined) return;
      const end = this.metrics.reconcileDuration.startTimer({ controller: this.name });
      try {
        const result = await this.reconcile(key);
        this.queue.forget(key);
        if (result?.requeueAfterMs !== undefined) this.queue.addAfter(key, result.requeueAfterMs);
        this.metrics.reconciles.inc({
          controller: this.name,
          result: result?.requeueAfterMs ? "requeue" : "success",
        });
      } catch (err) {
        const delayMs = this.queue.addRateLimited(key);
        this.metrics.reconciles.inc({ controller: this.name, result: "error" });
        this.metrics.reconcileErrors.inc({ controller: this.name });
        this.log.warn("reconcile failed, will retry", { key, err: String(err), delayMs });
      } finally {
        end();
        this.queue.done(key);
      }
    }
  }
}
