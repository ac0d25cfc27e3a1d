// Leader election on a coordination.k8s.io/v1 Lease, following client-go: acquire when
// the lease is free or its holder has not renewed it for a whole lease duration (measured
// on our own clock from when we last saw it change, so clock skew does not matter), renew
// every retry period, and give up leadership when renewals fail for the renew deadline.
// Optimistic concurrency (resourceVersion) makes every acquire and renew a compare-and-swap.
// Followers also watch the Lease, so a leader that releases it on a graceful stop is replaced
// at once instead of after the followers' next retry.

import type { Logger } from "../log.ts";
import { Informer } from "./informer.ts";
import type { KubeClient } from "./kube.ts";
import { ApiError, resources } from "./kube.ts";
import type { KubeObject } from "./meta.ts";

/** client-go's defaults (and controller-runtime's): the trade-off is documented in docs/operator.md. */
export const LEADER_ELECTION_DEFAULTS = {
  leaseDurationMs: 15_000,
  renewDeadlineMs: 10_000,
  retryPeriodMs: 2_000,
};

/** The checks client-go makes: a leader must give up before others may take over, and retry in time. */
export function checkLeaderElectionTimings(t: {
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
}): void {
  if (!(t.retryPeriodMs > 0)) throw new Error("the leader election retry period must be positive");
  if (!(t.leaseDurationMs > t.renewDeadlineMs)) {
    throw new Error("the leader election lease duration must be longer than the renew deadline");
  }
  if (!(t.renewDeadlineMs > t.retryPeriodMs * 1.2)) {
    throw new Error("the leader election renew deadline must be longer than 1.2 x the retry period");
  }
}

export interface LeaderElectionOptions {
  namespace: string;
  name: string;
  identity: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  onStartedLeading: () => void;
  onStoppedLeading: () => void;
  log: Logger;
}

interface LeaseSpec {
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  acquireTime?: string;
  renewTime?: string;
  leaseTransitions?: number;
}

interface Lease extends KubeObject {
  spec?: LeaseSpec;
}

// MicroTime wants exactly six fractional digits.
const microTime = (d: Date): string => d.toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");

export class LeaderElector {
  private readonly o: Required<Omit<LeaderElectionOptions, "log">> & { log: Logger };
  private leading = false;
  private stopped = false;
  private observed?: { holder: string; renewTime: string; at: number };
  private lease?: Lease;
  private timer?: NodeJS.Timeout;
  private wake?: () => void;
  private loop?: Promise<void>;
  private leaseWatch?: Informer<Lease>;

  private readonly client: KubeClient;

  constructor(client: KubeClient, opts: LeaderElectionOptions) {
    this.client = client;
    this.o = {
      ...opts,
      leaseDurationMs: opts.leaseDurationMs ?? LEADER_ELECTION_DEFAULTS.leaseDurationMs,
      renewDeadlineMs: opts.renewDeadlineMs ?? LEADER_ELECTION_DEFAULTS.renewDeadlineMs,
      retryPeriodMs: opts.retryPeriodMs ?? LEADER_ELECTION_DEFAULTS.retryPeriodMs,
    };
    checkLeaderElectionTimings(this.o);
  }

  isLeader(): boolean {
    return this.leading;
  }

  start(): void {
    this.stopped = false;
    this.loop ??= this.run();
    this.watchLease();
  }

  /** Wakes a follower as soon as the Lease is released (holder cleared) or deleted. */
  private watchLease(): void {
    if (this.leaseWatch) return;
    const { namespace, name } = this.o;
    const watch = new Informer<Lease>(this.client, resources.lease, { namespace, log: this.o.log });
    watch.on((type, lease) => {
      if (lease.metadata.name !== name || this.leading) return;
      if (type === "delete" || (lease.spec?.holderIdentity ?? "") === "") this.wake?.();
    });
    this.leaseWatch = watch;
    // The retry loop works without the watch; a watch that cannot start only loses the shortcut.
    watch.start().catch((err: unknown) => this.o.log.warn("watching the lease failed", { err }));
  }

  /** Stops campaigning; a leader releases the lease so a follower takes over at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.wake?.();
    await this.leaseWatch?.stop();
    this.leaseWatch = undefined;
    await this.loop;
    this.loop = undefined;
    if (this.leading) {
      this.leading = false;
      this.o.onStoppedLeading();
      // Compare-and-swap on the lease we last wrote: a conflict means it is no longer ours to release.
      await this.release().catch((err) => {
        if (!(err instanceof ApiError && err.status === 409))
          this.o.log.warn("releasing the lease failed", { err });
      });
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.wake = resolve;
      this.timer = setTimeout(resolve, ms * (this.leading ? 1 : 1 + Math.random() * 0.2));
    });
  }

  private async run(): Promise<void> {
    let lastRenew = 0;
    while (!this.stopped) {
      const ok = await this.tryAcquireOrRenew().catch((err) => {
        this.o.log.debug("lease attempt failed", { err });
        return false;
      });
      if (this.stopped) break;
      const now = Date.now();
      if (ok) {
        lastRenew = now;
        if (!this.leading) {
          this.leading = true;
          this.o.log.info("became leader", { lease: this.o.name, identity: this.o.identity });
          this.o.onStartedLeading();
        }
      } else if (this.leading && now - lastRenew > this.o.renewDeadlineMs) {
        this.leading = false;
        this.o.log.warn("lost leadership: could not renew within the deadline", { lease: this.o.name });
        this.o.onStoppedLeading();
      }
      await this.sleep(this.o.retryPeriodMs);
    }
  }

  private async tryAcquireOrRenew(): Promise<boolean> {
    const { namespace, name, identity } = this.o;
    const now = new Date();
    const spec: LeaseSpec = {
      holderIdentity: identity,
      leaseDurationSeconds: Math.ceil(this.o.leaseDurationMs / 1000),
      acquireTime: microTime(now),
      renewTime: microTime(now),
      leaseTransitions: 0,
    };
    const current = await this.client.get<Lease>(resources.lease, namespace, name);
    if (!current) {
      this.lease = await this.client.create<Lease>({
        apiVersion: "coordination.k8s.io/v1",
        kind: "Lease",
        metadata: { name, namespace },
        spec,
      });
      return true;
    }
    const cur = current.spec ?? {};
    const holder = cur.holderIdentity ?? "";
    const renewTime = cur.renewTime ?? "";
    if (!this.observed || this.observed.holder !== holder || this.observed.renewTime !== renewTime) {
      this.observed = { holder, renewTime, at: Date.now() };
    }
    const durationMs = (cur.leaseDurationSeconds ?? 0) * 1000;
    if (holder !== "" && holder !== identity && this.observed.at + durationMs > Date.now()) return false;
    if (holder === identity) {
      spec.acquireTime = cur.acquireTime;
      spec.leaseTransitions = cur.leaseTransitions ?? 0;
    } else {
      spec.leaseTransitions = (cur.leaseTransitions ?? 0) + 1;
    }
    try {
      this.lease = await this.client.replace<Lease>({ ...current, spec });
      return true;
    } catch (e) {
      if (e instanceof ApiError && e.status === 409) return false; // someone else won the race
      throw e;
    }
  }

  private async release(): Promise<void> {
    if (!this.lease || this.lease.spec?.holderIdentity !== this.o.identity) return;
    const now = microTime(new Date());
    await this.client.replace({
      ...this.lease,
      spec: {
        ...this.lease.spec,
        holderIdentity: "",
        leaseDurationSeconds: 1,
        renewTime: now,
        acquireTime: now,
      },
    });
    this.o.log.info("released the lease", { lease: this.o.name });
  }
}
