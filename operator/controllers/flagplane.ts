// The flag plane, on the operator's runtime: it reads the Manager's shared informers, compiles
// P2PPolicies, Zones and Regions into flag documents and publishes each Region's documents to
// that Region's flag store (fenced per store), folds the pods' reports into Zone and P2PPolicy
// status and records fallback Events, all only while this instance leads.
//
// Keys of one controller's work queue: "publish/<store>" (a spec, label, annotation or deletion
// change of the three kinds publishes to every store; a store that fails is retried with its
// key's capped backoff, and holds up no other store) and "status" (after a publish, and on report
// changes). Status writes go through the runtime client under the operator's field manager.
//
// Status at scale: reports arrive on NATS (platform/flags/reports.ts) into one table per report
// channel; a change marks only its zone dirty, a fold looks only at dirty zones (and waits for a
// burst of acks to pause), and a zone's status is written once its pods have settled (every
// desired replica at the live epoch) or after ZONE_COALESCE_MS, not once per report.
//
// Zone status, one writer per field (merge patches of disjoint fields, so neither writer
// removes the other's):
//   flag plane (here):       mode, policy, appliedEpoch, replicas.applied, fallbackReason,
//                            fallbackSince, p2pPeers
//   Zone reconciler (zone.ts): observedGeneration, conditions, replicas.desired, selector
// P2PPolicy status is the flag plane's alone. Region status is the Region reconciler's; it asks
// storeHealth() whether the Region's flag store takes publishes (Degraded when not).

import type { NatsConnection } from "@nats-io/transport-node";
import type { Etcd3 } from "etcd3";
import { layout, type PodReport, type ZoneFlags } from "../../platform/flags/layout.ts";
import type { ReportTable } from "../../platform/flags/reports.ts";
import { Controller, changed } from "../../platform/kube/controller.ts";
import type { Informer } from "../../platform/kube/informer.ts";
import { isNotFound } from "../../platform/kube/kube.ts";
import type { Manager } from "../../platform/kube/manager.ts";
import type { KubeObject } from "../../platform/kube/meta.ts";
import type { StoreAccess } from "../../platform/stores/access.ts";
import { type CompiledFlags, compile } from "../flags/compiler.ts";
import { fallbackCause, registerFlagPlaneMetrics, type ZoneView } from "../flags/metrics.ts";
import { FencedError, type PublishResult } from "../flags/publisher.ts";
import {
  foldPolicies,
  foldZone,
  type ZoneFlagStatus,
  type ZoneFold,
  type ZoneForFold,
} from "../flags/status.ts";
import {
  FlagStore,
  type RegionStores,
  ReportSource,
  regionStores,
  type StoreHealth,
} from "../flags/stores.ts";
import { mergeConditions, metaTime } from "./conditions.ts";
import {
  type PolicyObject,
  policyResource,
  type RegionObject,
  regionResource,
  type ZoneObject,
  zoneResource,
} from "./context.ts";
import { EventRecorder } from "./events.ts";

export interface FlagPlaneConfig {
  /** One flag store for every Region instead of each Region's own (`--flags-etcd-endpoints`);
   * its owner closes it. */
  etcd?: Etcd3;
  /** One report channel for every Region instead of each Region's NATS (`--flags-nats-url`);
   * its owner closes it. A promise while it still connects: reports are folded once it has. */
  nats?: NatsConnection | Promise<NatsConnection>;
  /** Where a Region's stores are (default: its dataStores, as its workloads see them). */
  storesOf?: (region: RegionObject) => RegionStores;
  /** The operator's credentials and TLS material for a Region's store at `url` (its own client
   * certificate and NATS user on a managed store, the Region's Secrets on an external one);
   * without it, the operator's own environment. */
  accessOf?: (region: RegionObject, store: "etcd" | "nats", url: string) => Promise<StoreAccess>;
  /** This operator instance (pod name): recorded as the publisher and in Events. */
  identity: string;
  /** Key prefix (the publisher's default when unset). */
  prefix?: string;
  /** The operator's Event recorder; one of the flag plane's own when unset. */
  events?: EventRecorder;
  /** Called after every publish attempt that got through (metrics, benchmarks). */
  onPublish?: (result: PublishResult, regions: string[]) => void;
  /** Called with every report as it arrives (benchmarks: when an ack reached the operator). */
  onReport?: (report: PodReport) => void;
  /** Called when the health of Regions' flag stores changes (`namespace/name` keys). */
  onStoreHealth?: (regions: string[]) => void;
}

export interface FlagPlane {
  /** The last publish to the store of `region` (`namespace/name`), or to any store (tests, benchmarks). */
  lastPublish(region?: string): PublishResult | undefined;
  /** Whether the flag store of a Region (`namespace/name`) takes publishes; undefined: not tried yet. */
  storeHealth(region: string): StoreHealth | undefined;
  /** Every report received (tests). */
  reports(): PodReport[];
}

const PUBLISH = "publish/";
const STATUS = "status";
/** Reports arrive in bursts (every replica after a publish): fold a burst, not each report. */
const FOLD_DELAY_MS = 25;
/** Status waits for a burst of acks to pause this long (its writes would slow the rest of the
 * burst down: the acks are the latency that matters), but never longer than BURST_MAX_MS. */
const ACK_QUIET_MS = 100;
const BURST_MAX_MS = 1_000;
/** A zone whose pods have not all settled is written at most this often. */
export const ZONE_COALESCE_MS = 1_000;
const STATUS_WRITE_CONCURRENCY = 16;
/** The key of the one store every Region uses when the plane is given one. */
const SHARED_STORE = "shared";

export function setupFlagPlane(mgr: Manager, cfg: FlagPlaneConfig): FlagPlane {
  const log = mgr.log.child({ component: "flags" });
  const policies = mgr.informer<PolicyObject>(policyResource);
  const zones = mgr.informer<ZoneObject>(zoneResource);
  const regions = mgr.informer<RegionObject>(regionResource);
  const events = cfg.events ?? new EventRecorder(mgr.client, log, cfg.identity);
  const l = layout(cfg.prefix);
  const storesOf = cfg.storesOf ?? regionStores;

  // ---- stores and report channels, kept in step with the Regions ----------------------------
  const stores = new Map<string, FlagStore>();
  const sources = new Map<string, ReportSource>();
  /** Region key -> store key and report-channel key. */
  let regionTo = new Map<string, { store: string; nats: string }>();
  let last: PublishResult | undefined;

  const storeKeyOf = (r: RegionObject) => (cfg.etcd ? SHARED_STORE : storesOf(r).etcd);
  const natsKeyOf = (r: RegionObject) => (cfg.nats ? SHARED_STORE : storesOf(r).nats);
  const regionsOn = (key: string, which: "store" | "nats") =>
    [...regionTo].filter(([, t]) => t[which] === key).map(([r]) => r);

  /** The credentials of a store key: those of a Region on it now (Regions sharing endpoints
   * share the store, and name the same credentials). */
  const accessFor = (key: string, which: "store" | "nats") => {
    const accessOf = cfg.accessOf;
    if (!accessOf) return undefined;
    return async (): Promise<StoreAccess> => {
      const [ns, name] = (regionsOn(key, which)[0] ?? "").split("/");
      const region = ns !== undefined && name !== undefined ? regions.get(ns, name) : undefined;
      if (!region) throw new Error(`no Region uses ${key} any more`);
      return accessOf(region, which === "store" ? "etcd" : "nats", key);
    };
  };

  const syncStores = () => {
    const next = new Map<string, { store: string; nats: string }>();
    for (const r of regions.list()) {
      if (r.metadata.deletionTimestamp) continue;
      try {
        next.set(keyOf(r), { store: storeKeyOf(r), nats: natsKeyOf(r) });
      } catch (err) {
        log.warn("region stores unknown", { region: keyOf(r), error: String(err) });
      }
    }
    regionTo = next;
    const wantStores = new Set([...next.values()].map((t) => t.store));
    const wantNats = new Set([...next.values()].map((t) => t.nats));
    for (const [k, s] of stores) {
      if (wantStores.has(k)) continue;
      stores.delete(k);
      s.close();
    }
    for (const k of wantStores) {
      if (stores.has(k)) continue;
      stores.set(
        k,
        new FlagStore({
          key: k,
          etcd: cfg.etcd,
          access: accessFor(k, "store"),
          identity: cfg.identity,
          prefix: cfg.prefix,
        }),
      );
      if (leading) ctl.queue.add(PUBLISH + k);
    }
    for (const [k, s] of sources) {
      if (wantNats.has(k)) continue;
      sources.delete(k);
      void s.close();
    }
    for (const k of wantNats) {
      if (sources.has(k)) continue;
      sources.set(
        k,
        new ReportSource({
          url: k,
          nats: cfg.nats,
          access: accessFor(k, "nats"),
          layout: l,
          name: `hybrid-operator-${cfg.identity}`,
          log,
          table: {
            syncNamespaces: () => new Set(regionsOn(k, "nats").map((r) => r.split("/")[0]!)),
            onError: (m) => log.warn(m),
            onReport: (r) => {
              cfg.onReport?.(r);
              if (r.rejectedEpoch !== undefined) rejected(k, r);
            },
          },
          onReady: (t) => {
            t.on("change", (changedZones) => reportsChanged(changedZones));
            reportsChanged(new Set(regionsOn(k, "nats").map((r) => `${r.split("/")[0]}/_`)));
          },
        }),
      );
    }
  };

  // A pod that could not read a flag document says so in its report (it keeps its last good
  // snapshot): one Warning Event per pod and rejected epoch, on its Zone, or on its namespace's
  // Regions of that report channel for a region-wide pod.
  const rejectedSeen = new Map<string, number>();
  const rejected = (source: string, r: PodReport) => {
    const id = `${r.namespace}/${r.pod}`;
    if (rejectedSeen.get(id) === r.rejectedEpoch) return;
    rejectedSeen.set(id, r.rejectedEpoch!);
    if (rejectedSeen.size > 100_000) rejectedSeen.clear(); // bounded; at worst an Event repeats
    const message = `${r.service} pod ${r.pod} could not read the flag documents of epoch ${r.rejectedEpoch} (malformed) and keeps epoch ${r.epoch}`;
    const targets: Array<ZoneObject | RegionObject> =
      r.zone !== undefined
        ? [zones.get(r.namespace, r.zone)].filter((z): z is ZoneObject => z !== undefined)
        : regionsOn(source, "nats")
            .map((key) => key.split("/"))
            .filter(([ns]) => ns === r.namespace)
            .map(([ns, name]) => regions.get(ns!, name!))
            .filter((x): x is RegionObject => x !== undefined);
    for (const t of targets) void events.record(t, "Warning", "FlagDocumentRejected", message);
  };

  const storeOfZone = (z: { namespace: string; region: string }) =>
    stores.get(regionTo.get(`${z.namespace}/${z.region}`)?.store ?? "");
  const tableOfZone = (ns: string, region: string): ReportTable | undefined =>
    sources.get(regionTo.get(`${ns}/${region}`)?.nats ?? "")?.current();

  // ---- publishing ---------------------------------------------------------------------------
  let leading = false;
  let stopping: Promise<void> = Promise.resolve();
  let inputs = 0; // bumped on every change the compile reads
  let compiled: { at: number; flags: CompiledFlags } | undefined;
  /** What each zone's store holds (the last successful publish there), by `namespace/zone`. */
  const published = new Map<string, ZoneFlags>();

  const compileNow = (): CompiledFlags => {
    if (compiled?.at !== inputs) {
      const at = inputs;
      compiled = {
        at,
        flags: compile({ policies: policies.list(), zones: zones.list(), regions: regions.list() }),
      };
    }
    return compiled.flags;
  };

  const publishTo = async (storeKey: string) => {
    const store = stores.get(storeKey);
    if (store === undefined) return;
    const t0 = performance.now();
    const all = compileNow();
    const compileMs = performance.now() - t0;
    const mine = new Set(regionsOn(storeKey, "store"));
    const flags: CompiledFlags = {
      zones: all.zones.filter((z) => mine.has(`${z.namespace}/${z.region}`)),
      policies: all.policies,
    };
    let res: PublishResult;
    try {
      res = await store.publish(flags);
    } catch (err) {
      if (err instanceof FencedError) throw err;
      const message = `flag store ${storeKey === SHARED_STORE ? "" : `${storeKey} `}unavailable: ${String((err as Error).message ?? err).slice(0, 300)}`;
      if (store.setHealth(false, message)) {
        log.warn("flag store unavailable", { store: storeKey, error: String(err) });
        cfg.onStoreHealth?.([...mine]);
      }
      throw err; // retried with the key's backoff; other stores go on
    }
    if (res.timings) res.timings = { compileMs, ...res.timings };
    if (store.setHealth(true, "")) cfg.onStoreHealth?.([...mine]);
    last = res;
    cfg.onPublish?.(res, [...mine]);
    if (res.published)
      log.info("flags published", {
        store: storeKey,
        epoch: res.epoch,
        zones: res.zones,
        chunks: res.chunks,
      });
    if (res.published) for (const r of mine) publishedAt.set(r, { epoch: res.epoch, at: Date.now() });
    for (const z of flags.zones) {
      const k = `${z.namespace}/${z.zone}`;
      published.set(k, z);
      markZone(k);
    }
    policiesDirty = true;
    ctl.queue.add(STATUS);
  };

  // ---- metrics: the folds as the leader last made them (a follower exports none) -------------
  /** The last publish per Region (`namespace/name`) and the epoch each zone last acked in full. */
  const publishedAt = new Map<string, { epoch: number; at: number }>();
  const ackedEpoch = new Map<string, number>();
  const metrics = registerFlagPlaneMetrics(mgr.metrics.registry, () => {
    if (!leading) return { zones: [], regions: [] };
    const zoneViews: ZoneView[] = [];
    for (const z of zones.list()) {
      const f = folds.get(keyOf(z));
      if (f === undefined) continue;
      zoneViews.push({
        namespace: z.metadata.namespace!,
        region: z.spec.regionRef.name,
        zone: z.metadata.name,
        mode: f.status.mode,
        appliedEpoch: f.applied.epoch,
        replicas: { desired: z.spec.mapServer?.replicas ?? 1, applied: f.status.replicas.applied },
        peers: f.status.p2pPeers,
        players: f.status.p2pPlayers,
      });
    }
    const regionViews = [...regionTo].map(([k, t]) => {
      const [namespace, region] = k.split("/") as [string, string];
      return { namespace, region, publishedEpoch: stores.get(t.store)?.liveEpoch ?? 0 };
    });
    return { zones: zoneViews, regions: regionViews };
  });

  // ---- folding into status ------------------------------------------------------------------
  /** Zones to fold: since when, and whether anything changed since their last fold. */
  const dirty = new Map<string, { since: number; stale: boolean }>();
  const folds = new Map<string, ZoneFold>();
  // What this instance wrote last, so a lagging cache does not cause repeated writes or Events.
  const writtenZones = new Map<string, ZoneFlagStatus>();
  const writtenPolicies = new Map<string, string>();
  let policiesDirty = true;

  const markZone = (key: string) => {
    const d = dirty.get(key);
    if (d === undefined) dirty.set(key, { since: Date.now(), stale: true });
    else d.stale = true;
  };
  let burst: { start: number; last: number } | undefined;
  const reportsChanged = (changedZones: ReadonlySet<string>) => {
    const t = Date.now();
    if (burst === undefined || t - burst.last > ACK_QUIET_MS) burst = { start: t, last: t };
    else burst.last = t;
    for (const zk of changedZones) {
      const [ns, zone] = zk.split("/") as [string, string];
      if (zone === "_") for (const z of zones.list(ns)) markZone(keyOf(z));
      else markZone(zk);
    }
    if (leading) ctl.queue.addAfter(STATUS, FOLD_DELAY_MS);
  };

  const foldIntoStatus = async () => {
    const now = new Date();
    const nowMs = now.getTime();
    if (burst !== undefined && nowMs - burst.last < ACK_QUIET_MS && nowMs - burst.start < BURST_MAX_MS) {
      ctl.queue.addAfter(STATUS, ACK_QUIET_MS - (nowMs - burst.last) + 1);
      return;
    }
    const at = metaTime(now);
    const writes: (() => Promise<void>)[] = [];
    let wakeIn: number | undefined;
    for (const [key, d] of [...dirty]) {
      const waited = nowMs - d.since;
      // Nothing new since the last fold, and not yet due: its pods are still settling.
      if (!d.stale && waited < ZONE_COALESCE_MS) {
        wakeIn = Math.min(wakeIn ?? ZONE_COALESCE_MS, ZONE_COALESCE_MS - waited);
        continue;
      }
      d.stale = false;
      const [ns, name] = key.split("/") as [string, string];
      const z = zones.get(ns, name);
      if (z === undefined) {
        dirty.delete(key);
        folds.delete(key);
        writtenZones.delete(key);
        published.delete(key);
        continue;
      }
      const region = z.spec.regionRef.name;
      const table = tableOfZone(ns, region);
      const epoch = storeOfZone({ namespace: ns, region })?.liveEpoch ?? 0;
      const mine = writtenZones.get(key);
      const current: ZoneForFold =
        mine === undefined ? z : { ...z, status: { ...z.status, ...nullsToUndefined(mine) } };
      const f = foldZone({
        zone: current,
        doc: published.get(key),
        reports: table?.zoneReports(ns, name) ?? [],
        regionReports: table?.zoneReports(ns, undefined) ?? [],
        epoch,
        now: at,
      });
      const before = folds.get(key);
      folds.set(key, f);
      const pub = publishedAt.get(`${ns}/${region}`);
      if (pub && f.applied.complete && f.applied.epoch >= pub.epoch && ackedEpoch.get(key) !== pub.epoch) {
        ackedEpoch.set(key, pub.epoch);
        metrics.acked((nowMs - pub.at) / 1000);
      }
      if (before?.applied.epoch !== f.applied.epoch || before?.applied.complete !== f.applied.complete)
        policiesDirty = true;
      if (sameZoneStatus(f.status, current.status)) {
        dirty.delete(key);
        continue;
      }
      // Coalesce: write once the pods have settled, or when they have taken too long.
      const settled = f.applied.complete && f.applied.epoch >= epoch;
      if (!settled && waited < ZONE_COALESCE_MS) {
        wakeIn = Math.min(wakeIn ?? ZONE_COALESCE_MS, ZONE_COALESCE_MS - waited);
        continue;
      }
      dirty.delete(key);
      const s = f.status;
      const event = f.event;
      writes.push(async () => {
        await ignoreNotFound(mgr.client.patchStatus(zoneResource, ns, name, s));
        writtenZones.set(key, s);
        if (event?.reason === "FallbackEntered")
          metrics.fallbackEntered(
            { namespace: ns, region, zone: name },
            fallbackCause(s.fallbackReason ?? "", published.get(key)?.fallback === true),
          );
        if (event) await events.record(z, event.type, event.reason, event.message);
      });
    }
    await inParallel(writes, STATUS_WRITE_CONCURRENCY);
    if (wakeIn !== undefined) ctl.queue.addAfter(STATUS, wakeIn + 5);
    if (!policiesDirty) return;
    policiesDirty = false;
    const out = foldPolicies({
      compiled: compileNow(),
      policies: policies.list(),
      applied: (ns, zone) => folds.get(`${ns}/${zone}`)?.applied,
      regionOf: (ns, zone) => zones.get(ns, zone)?.spec.regionRef.name ?? "",
      carriedBy: (ns, policy, generation, region) =>
        storeOfZone({ namespace: ns, region })?.carriedBy(`${ns}/${policy}`, generation),
    });
    for (const p of policies.list()) {
      const key = keyOf(p);
      const s = out.get(key);
      if (s === undefined) continue;
      const fingerprint = JSON.stringify(s);
      if (writtenPolicies.get(key) === fingerprint) continue;
      const conditions = mergeConditions(p.status?.conditions, s.conditions, s.observedGeneration, now);
      await ignoreNotFound(
        mgr.client.patchStatus(policyResource, p.metadata.namespace!, p.metadata.name, { ...s, conditions }),
      );
      writtenPolicies.set(key, fingerprint);
    }
  };

  const ctl = new Controller({
    name: "flags",
    concurrency: 8, // status and several stores' publishes side by side, each key never twice at once
    metrics: mgr.metrics,
    log,
    reconcile: async (key) => {
      try {
        await (key === STATUS ? foldIntoStatus() : publishTo(key.slice(PUBLISH.length)));
      } catch (err) {
        if (!(err instanceof FencedError)) throw err; // retried with backoff
        // Another instance took the fencing token: retrying cannot help until we lead again.
        log.warn("flag plane deposed; no longer publishing", { error: err.message });
        leading = false;
        stopping = ctl.stop(); // not awaited: this reconcile is one of the workers it waits for
      }
      return undefined;
    },
  });
  const publishAll = () => {
    for (const k of stores.keys()) ctl.queue.add(PUBLISH + k);
  };
  // The compile reads specs, labels (policy selectors), annotations (forced fallback) and
  // deletion, not status: a status write (ours, on every report burst) must not trigger it.
  const specOf = <T extends KubeObject>({ metadata: m }: T) =>
    JSON.stringify([m.generation, m.labels, m.annotations, m.deletionTimestamp]);
  const onSpecChange = <T extends KubeObject>(inf: Informer<T>, also?: (obj: T) => void) => {
    const pred = changed<T>(specOf);
    inf.on((type, obj) => {
      if (!pred(type, obj)) return;
      inputs++;
      also?.(obj);
      if (leading) publishAll();
    });
  };
  onSpecChange(policies, () => {
    policiesDirty = true;
  });
  onSpecChange(zones, (z) => markZone(keyOf(z)));
  onSpecChange(regions, () => syncStores());
  // Replicas desired and the written status also shape a zone's fold.
  zones.on((type, z) => {
    if (type !== "update") markZone(keyOf(z));
  });

  mgr.addLeaderRunnable({
    name: "flag-plane",
    async lead() {
      leading = true;
      await stopping; // the last term's reconciles have finished
      if (!leading) return; // lost leadership meanwhile
      syncStores();
      writtenZones.clear();
      writtenPolicies.clear();
      for (const z of zones.list()) markZone(keyOf(z));
      policiesDirty = true;
      ctl.start();
      publishAll();
    },
    follow() {
      leading = false;
      stopping = ctl.stop();
      for (const s of stores.values()) s.release();
    },
  });
  // Followers listen to the reports too, so a new leader folds at once.
  mgr.onStop(async () => {
    leading = false;
    await stopping;
    for (const s of stores.values()) s.close();
    stores.clear();
    await Promise.all([...sources.values()].map((s) => s.close()));
    sources.clear();
  });
  // The Regions are known once the caches have synced; until then there is nothing to listen to.
  regions.on(() => {
    if (regions.hasSynced()) syncStores();
  });

  return {
    lastPublish: (region) => {
      if (region === undefined) return last;
      const t = regionTo.get(region);
      return t === undefined ? undefined : stores.get(t.store)?.last;
    },
    storeHealth: (region) => {
      const t = regionTo.get(region);
      return t === undefined ? undefined : stores.get(t.store)?.health;
    },
    reports: () => [...sources.values()].flatMap((s) => s.current()?.reports() ?? []),
  };
}

const keyOf = (o: KubeObject): string => `${o.metadata.namespace}/${o.metadata.name}`;

async function ignoreNotFound(write: Promise<unknown>): Promise<void> {
  try {
    await write;
  } catch (err) {
    if (!isNotFound(err)) throw err; // deleted meanwhile: nothing to report on
  }
}

async function inParallel(tasks: (() => Promise<void>)[], limit: number): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < tasks.length) await tasks[next++]!();
  };
  await Promise.all(Array.from({ length: Math.min(limit, tasks.length) }, worker));
}

function nullsToUndefined(s: ZoneFlagStatus): Record<string, unknown> {
  return Object.fromEntries(Object.entries(s).map(([k, v]) => [k, v === null ? undefined : v]));
}

function sameZoneStatus(s: ZoneFlagStatus, cur: ZoneForFold["status"]): boolean {
  const c = cur ?? {};
  return (
    s.mode === c.mode &&
    s.policy === (c.policy ?? null) &&
    s.appliedEpoch === (c.appliedEpoch ?? null) &&
    s.replicas.applied === c.replicas?.applied &&
    s.fallbackReason === (c.fallbackReason ?? null) &&
    s.fallbackSince === (c.fallbackSince ?? null) &&
    s.p2pPeers?.connected === c.p2pPeers?.connected &&
    s.p2pPeers?.meshes === c.p2pPeers?.meshes &&
    s.p2pPeers?.relayed === c.p2pPeers?.relayed &&
    s.p2pPlayers?.eligible === c.p2pPlayers?.eligible &&
    s.p2pPlayers?.playing === c.p2pPlayers?.playing &&
    s.p2pPlayers?.rolloutPercent === c.p2pPlayers?.rolloutPercent
  );
}
