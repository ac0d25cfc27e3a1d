// The global orchestrator: watches WorldEvents, Regions and Zones in every namespace and, while
// it holds the Lease (two replicas are safe: only the leader writes), decides each event against
// the clock and the Regions' live state (plan.ts) and delivers it to every targeted Region's own
// bus (buses.ts), then writes the WorldEvent's status. It runs on the same controller runtime as
// the operator (platform/kube). Why per-Region delivery: README.md beside this file.
import { Counter, Gauge } from "prom-client";
import { KubeClient, type ResourceType, registerResource, resources } from "../../platform/kube/kube.ts";
import { Manager } from "../../platform/kube/manager.ts";
import type { KubeObject } from "../../platform/kube/meta.ts";
import { Metrics } from "../../platform/kube/metrics.ts";
import type { Logger } from "../../platform/log.ts";
import { managedNatsAccess, RegionBus, regionNatsUrl } from "./buses.ts";
import {
  type DesiredCondition,
  planEvent,
  type RegionObject,
  type RegionView,
  regionKey,
  resolveTargets,
  type WorldEventObject,
  type WorldEventStatus,
  type ZoneObject,
} from "./plan.ts";

const API = "hybridp2p.io/v1alpha1";
export const WORLD_EVENT_RESOURCE: ResourceType = {
  apiVersion: API,
  kind: "WorldEvent",
  plural: "worldevents",
  namespaced: true,
};
const REGION_RESOURCE: ResourceType = {
  apiVersion: API,
  kind: "Region",
  plural: "regions",
  namespaced: true,
};
const ZONE_RESOURCE: ResourceType = { apiVersion: API, kind: "Zone", plural: "zones", namespaced: true };
for (const rt of [WORLD_EVENT_RESOURCE, REGION_RESOURCE, ZONE_RESOURCE]) registerResource(rt);

export const ORCHESTRATOR_LEASE = "hybrid-orchestrator";
/** A deleted WorldEvent's ended record stays this long (map servers end it), then is purged. */
const PURGE_AFTER_MS = 60_000;
/** Status changes of live counters only (players, mobs, maps applied) are written this often at most. */
const COUNTER_WRITE_MS = 5_000;

/** The status without the counters that move while an event runs. */
function settled(st: WorldEventStatus): string {
  return JSON.stringify({
    ...st,
    regions: st.regions?.map(({ players: _p, spawned: _s, alive: _a, message: _m, ...r }) => r),
  });
}

export interface OrchestratorOptions {
  client: KubeClient;
  metrics: Metrics;
  log: Logger;
  identity: string;
  /** Lease namespace; no leader election when undefined (a single replica). */
  leaseNamespace?: string;
  leaseName?: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  healthAddress?: string;
  metricsAddress?: string;
  /** Watch only this namespace (the chart's watchNamespace); every namespace when undefined. */
  namespace?: string;
  /** One NATS for every Region (development, tests): returns its URL, or undefined for the Region's own. */
  natsOverride?: (namespace: string, name: string) => string | undefined;
  /** How often every event is looked at again (besides on every change). Default 1 s. */
  intervalMs?: number;
  now?: () => number;
  onLostLeadership?: () => void;
}

export class Orchestrator {
  readonly mgr: Manager;
  private readonly o: OrchestratorOptions;
  private readonly buses = new Map<string, RegionBus>();
  private readonly endedAt = new Map<string, number>();
  /** When each WorldEvent's status was last written (by uid). */
  private readonly written = new Map<string, number>();
  private leading = false;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private readonly m: ReturnType<typeof orchestratorMetrics>;

  constructor(o: OrchestratorOptions) {
    this.o = o;
    this.mgr = new Manager({
      client: o.client,
      metrics: o.metrics,
      log: o.log,
      namespace: o.namespace,
      healthAddress: o.healthAddress,
      metricsAddress: o.metricsAddress,
      onLostLeadership: o.onLostLeadership,
      leaderElection: o.leaseNamespace
        ? {
            namespace: o.leaseNamespace,
            name: o.leaseName ?? ORCHESTRATOR_LEASE,
            identity: o.identity,
            leaseDurationMs: o.leaseDurationMs,
            renewDeadlineMs: o.renewDeadlineMs,
            retryPeriodMs: o.retryPeriodMs,
          }
        : undefined,
    });
    this.m = orchestratorMetrics(o.metrics);
    for (const rt of [WORLD_EVENT_RESOURCE, REGION_RESOURCE, ZONE_RESOURCE])
      this.mgr.informer(rt).on(() => this.kick());
    this.mgr.addLeaderRunnable({
      name: "orchestrator",
      lead: async () => {
        this.leading = true;
        this.o.log.info("leading: delivering world events");
        this.timer = setInterval(() => this.kick(), this.o.intervalMs ?? 1000);
        this.kick();
      },
      follow: () => {
        this.leading = false;
        clearInterval(this.timer);
        void this.closeBuses();
      },
    });
  }

  async start(): Promise<void> {
    await this.mgr.start();
  }

  isLeader(): boolean {
    return this.mgr.isLeader();
  }

  private now(): number {
    return (this.o.now ?? Date.now)();
  }

  /** Runs a pass now, or right after the running one. */
  kick(): void {
    if (!this.leading) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.pass()
      .catch((err) => this.o.log.error("orchestrator pass failed", { err: String(err) }))
      .finally(() => {
        this.running = undefined;
        if (this.again) {
          this.again = false;
          setTimeout(() => this.kick(), 50);
        }
      });
  }

  /** A Secret's data, by name (get only: the orchestrator lists no Secrets). */
  private async secret(namespace: string, name: string): Promise<Record<string, string> | undefined> {
    const s = await this.mgr.client.get<{ data?: Record<string, string> } & KubeObject>(
      resources.secret,
      namespace,
      name,
    );
    if (!s) return undefined;
    return Object.fromEntries(
      Object.entries(s.data ?? {}).map(([k, v]) => [k, Buffer.from(v, "base64").toString("utf8")]),
    );
  }

  private informer<T>(rt: ResourceType) {
    return this.mgr.informer(rt) as unknown as { list(): readonly T[] };
  }

  private bus(r: RegionObject): RegionBus {
    const key = regionKey(r.metadata.namespace ?? "", r.metadata.name);
    const servers = regionNatsUrl(r, this.o.natsOverride);
    let b = this.buses.get(key);
    if (b && b.servers !== servers) {
      void b.close();
      b = undefined;
    }
    if (!b) {
      b = new RegionBus({
        key,
        region: r.metadata.name,
        servers,
        // One NATS for every Region (the override) is reached with this process's own credentials.
        access: this.o.natsOverride?.(r.metadata.namespace ?? "default", r.metadata.name)
          ? undefined
          : managedNatsAccess(r, servers, (ns, name) => this.secret(ns, name)),
        log: this.o.log,
        onChange: () => this.kick(),
        now: this.o.now,
      });
      b.start();
      this.buses.set(key, b);
    }
    return b;
  }

  /** One look at every WorldEvent. */
  private async pass(): Promise<void> {
    const events = this.informer<WorldEventObject>(WORLD_EVENT_RESOURCE).list();
    const regions = this.informer<RegionObject>(REGION_RESOURCE).list();
    const zones = this.informer<ZoneObject>(ZONE_RESOURCE).list();
    const regionByKey = new Map(
      regions.map((r) => [regionKey(r.metadata.namespace ?? "", r.metadata.name), r]),
    );
    for (const ev of events) {
      if (!this.leading) return;
      if (ev.metadata.deletionTimestamp) continue;
      const views = new Map<string, RegionView>();
      for (const t of resolveTargets(ev.spec, regions, zones)) {
        if (!t.region) continue;
        const b = this.bus(t.region);
        views.set(regionKey(t.namespace, t.name), {
          reachable: b.reachable,
          error: b.error,
          current: b.records.get(ev.metadata.uid ?? "")?.record,
          live: b.reports(),
        });
      }
      const plan = planEvent(ev, regions, zones, views, this.now());
      let failedWrites = 0;
      for (const [key, record] of plan.writes) {
        const b = this.buses.get(key);
        if (b && (await b.put(record))) {
          this.m.writes.inc({ state: record.state });
          this.o.log.info("world event delivered", {
            event: record.name,
            region: key,
            occurrence: record.id,
            state: record.state,
            reason: record.reason,
          });
        } else failedWrites++;
      }
      if (failedWrites > 0) this.again = true;
      await this.writeStatus(ev, plan.status, plan.conditions).catch((err) =>
        this.o.log.warn("WorldEvent status not written", { event: ev.metadata.name, err: String(err) }),
      );
    }
    await this.sweep(new Set(events.map((e) => e.metadata.uid ?? "")), regionByKey);
    let up = 0;
    for (const b of this.buses.values()) if (b.reachable) up++;
    this.m.regions.set({ reachable: "true" }, up);
    this.m.regions.set({ reachable: "false" }, this.buses.size - up);
    this.m.events.set(events.length);
  }

  /** Records of deleted WorldEvents: ended on the map servers, then purged. */
  private async sweep(uids: Set<string>, regions: Map<string, RegionObject>): Promise<void> {
    const now = this.now();
    for (const [key, b] of this.buses) {
      if (!regions.has(key) && b.records.size === 0) {
        this.buses.delete(key);
        await b.close();
        continue;
      }
      if (!b.reachable) continue;
      for (const { record } of [...b.records.values()]) {
        if (uids.has(record.uid)) continue;
        const mark = `${key}|${record.uid}`;
        if (record.state !== "ended") {
          if (await b.put({ ...record, state: "ended", reason: "Deleted" })) this.endedAt.set(mark, now);
          continue;
        }
        const since = this.endedAt.get(mark);
        if (since === undefined) this.endedAt.set(mark, now);
        else if (now - since >= PURGE_AFTER_MS) {
          await b.purge(record.uid).catch(() => undefined);
          this.endedAt.delete(mark);
        }
      }
    }
  }

  private async writeStatus(
    ev: WorldEventObject,
    fields: Omit<WorldEventStatus, "conditions" | "observedGeneration">,
    desired: DesiredCondition[],
  ): Promise<void> {
    const old = ev.status ?? {};
    const generation = ev.metadata.generation ?? 0;
    const at = new Date(this.now()).toISOString();
    const conditions = desired.map((c) => {
      const was = old.conditions?.find((x) => x.type === c.type);
      const same = was && was.status === c.status;
      return {
        ...c,
        observedGeneration: generation,
        lastTransitionTime: same && was.lastTransitionTime ? was.lastTransitionTime : at,
      };
    });
    const next: WorldEventStatus = { ...fields, observedGeneration: generation, conditions };
    const keys = [...new Set([...Object.keys(next), ...Object.keys(old)])] as (keyof WorldEventStatus)[];
    const changed = keys.filter((k) => JSON.stringify(next[k] ?? null) !== JSON.stringify(old[k] ?? null));
    if (changed.length === 0) return;
    // Counters alone (players, mobs) are written every few seconds, not on every pass.
    const uid = ev.metadata.uid ?? "";
    const last = this.written.get(uid) ?? 0;
    if (
      settled(next) === settled({ ...old, observedGeneration: old.observedGeneration ?? 0 }) &&
      this.now() - last < COUNTER_WRITE_MS
    )
      return;
    const patch = Object.fromEntries(changed.map((k) => [k, next[k] ?? null]));
    await this.o.client.patchStatus(WORLD_EVENT_RESOURCE, ev.metadata.namespace!, ev.metadata.name, patch);
    this.written.set(uid, this.now());
  }

  private async closeBuses(): Promise<void> {
    const all = [...this.buses.values()];
    this.buses.clear();
    await Promise.all(all.map((b) => b.close()));
  }

  async stop(): Promise<void> {
    this.leading = false;
    clearInterval(this.timer);
    await this.running?.catch(() => undefined);
    await this.mgr.stop();
    await this.closeBuses();
  }
}

function orchestratorMetrics(metrics: Metrics) {
  const registers = [metrics.registry];
  return {
    writes: new Counter({
      name: "hybridp2p_orchestrator_records_written_total",
      help: "World-event records written to Region buses, by state",
      labelNames: ["state"],
      registers,
    }),
    regions: new Gauge({
      name: "hybridp2p_orchestrator_regions",
      help: "Region buses the leader holds, by reachability",
      labelNames: ["reachable"],
      registers,
    }),
    events: new Gauge({ name: "hybridp2p_orchestrator_world_events", help: "WorldEvents seen", registers }),
  };
}

/** Builds the client and starts one orchestrator (main and the tests). */
export async function startOrchestrator(
  o: Omit<OrchestratorOptions, "client" | "metrics"> & {
    kubeconfig?: string;
    client?: KubeClient;
    metrics?: Metrics;
  },
): Promise<Orchestrator> {
  const metrics = o.metrics ?? new Metrics();
  let client = o.client;
  if (!client) {
    const { KubeConfig } = await import("@kubernetes/client-node");
    const kc = new KubeConfig();
    if (o.kubeconfig) kc.loadFromFile(o.kubeconfig);
    else kc.loadFromDefault();
    client = await new KubeClient(kc, metrics).init();
  }
  const orch = new Orchestrator({ ...o, client, metrics });
  await orch.start();
  return orch;
}
