// The flag plane, on the operator's runtime: it reads the Manager's shared informers, compiles
// P2PPolicies, Zones and Regions into flag documents and publishes them to etcd (fenced), folds
// the pods' reports into Zone and P2PPolicy status and records fallback Events, all only while
// this instance leads.
//
// Two keys of one controller's work queue: "publish" (on a spec, label, annotation or deletion
// change of the three kinds) and "status" (after a publish, and on report changes). The queue
// coalesces bursts, never runs a key twice at once, and retries a failure with the key's capped
// backoff. Status writes go through the runtime client under the operator's field manager.
//
// Zone status, one writer per field (merge patches of disjoint fields, so neither writer
// removes the other's):
//   flag plane (here):       mode, policy, appliedEpoch, replicas.applied, fallbackReason,
//                            fallbackSince, p2pPeers
//   Zone reconciler (zone.ts): observedGeneration, conditions, replicas.desired, selector
// P2PPolicy status is the flag plane's alone.

import type { Etcd3 } from "etcd3";
import type { KubeObject } from "../api/meta.ts";
import { type CompiledFlags, compile } from "../flags/compiler.ts";
import { FencedError, FlagPublisher, type PublishResult, readPointer } from "../flags/publisher.ts";
import { ReportWatcher } from "../flags/reports.ts";
import { foldStatus, type ZoneFlagStatus, type ZoneForFold } from "../flags/status.ts";
import { Controller, changed } from "../runtime/controller.ts";
import type { Informer } from "../runtime/informer.ts";
import { isNotFound } from "../runtime/kube.ts";
import type { Manager } from "../runtime/manager.ts";
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
  /** The flag store; its owner closes it. */
  etcd: Etcd3;
  /** This operator instance (pod name): recorded as the publisher and in Events. */
  identity: string;
  /** Key prefix (the publisher's default when unset). */
  prefix?: string;
  /** The operator's Event recorder; one of the flag plane's own when unset. */
  events?: EventRecorder;
  /** Called after every publish attempt that got through (metrics, benchmarks). */
  onPublish?: (result: PublishResult) => void;
}

export interface FlagPlane {
  /** The last publish (tests and benchmarks). */
  lastPublish(): PublishResult | undefined;
}

const PUBLISH = "publish";
const STATUS = "status";
/** Reports arrive in bursts (every replica after a publish): fold a burst, not each report. */
const FOLD_DELAY_MS = 50;
const STATUS_WRITE_CONCURRENCY = 16;

export function setupFlagPlane(mgr: Manager, cfg: FlagPlaneConfig): FlagPlane {
  const log = mgr.log.child({ component: "flags" });
  const policies = mgr.informer<PolicyObject>(policyResource);
  const zones = mgr.informer<ZoneObject>(zoneResource);
  const regions = mgr.informer<RegionObject>(regionResource);
  const events = cfg.events ?? new EventRecorder(mgr.client, log, cfg.identity);
  const publisher = new FlagPublisher({ client: cfg.etcd, identity: cfg.identity, prefix: cfg.prefix });
  const reports = new ReportWatcher(cfg.etcd, publisher.layout, { onError: (m) => log.warn(m) });
  // Followers watch the reports too, so a new leader folds at once.
  const reportsStarted = reports.start();
  let leading = false;
  let stopping: Promise<void> = Promise.resolve();
  let compiled: CompiledFlags | undefined;
  let liveEpoch = 0;
  let last: PublishResult | undefined;
  // What this instance wrote last, so a lagging cache does not cause repeated writes or Events.
  const writtenZones = new Map<string, ZoneFlagStatus>();
  const writtenPolicies = new Map<string, string>();

  const publish = async () => {
    const next = compile({ policies: policies.list(), zones: zones.list(), regions: regions.list() });
    last = await publisher.publish(next);
    compiled = next;
    liveEpoch = last.epoch;
    cfg.onPublish?.(last);
    if (last.published)
      log.info("flags published", { epoch: last.epoch, zones: last.zones, chunks: last.chunks });
    ctl.queue.add(STATUS);
  };

  const foldIntoStatus = async () => {
    if (compiled === undefined) return;
    const current = zones.list().map((z) => {
      const mine = writtenZones.get(keyOf(z));
      return mine === undefined ? z : { ...z, status: { ...z.status, ...nullsToUndefined(mine) } };
    });
    const now = new Date();
    const out = foldStatus({
      compiled,
      epoch: liveEpoch,
      reports: reports.reports(),
      zones: current,
      policies: policies.list(),
      now: metaTime(now),
    });
    const writes: (() => Promise<void>)[] = [];
    for (const z of current) {
      const key = keyOf(z);
      const s = out.zones.get(key);
      if (s === undefined || sameZoneStatus(s, z.status)) continue;
      writes.push(async () => {
        await ignoreNotFound(mgr.client.patchStatus(zoneResource, z.metadata.namespace!, z.metadata.name, s));
        writtenZones.set(key, s);
      });
    }
    await inParallel(writes, STATUS_WRITE_CONCURRENCY);
    for (const e of out.events) {
      const z = zones.get(e.namespace, e.name);
      if (z) await events.record(z, e.type, e.reason, e.message);
    }
    for (const p of policies.list()) {
      const key = keyOf(p);
      const s = out.policies.get(key);
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
    concurrency: 2, // publish and status run side by side, each never twice at once
    metrics: mgr.metrics,
    log,
    reconcile: async (key) => {
      try {
        await (key === PUBLISH ? publish() : foldIntoStatus());
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
  // The compile reads specs, labels (policy selectors), annotations (forced fallback) and
  // deletion, not status: a status write (ours, on every report burst) must not trigger it.
  const onSpecChange = <T extends KubeObject>(inf: Informer<T>) =>
    ctl.watchMapped(inf, () => [PUBLISH], {
      predicate: changed<T>(({ metadata: m }) =>
        JSON.stringify([m.generation, m.labels, m.annotations, m.deletionTimestamp]),
      ),
    });
  onSpecChange(policies);
  onSpecChange(zones);
  onSpecChange(regions);
  reports.on("change", () => ctl.queue.addAfter(STATUS, FOLD_DELAY_MS));

  mgr.addLeaderRunnable({
    name: "flag-plane",
    async lead() {
      leading = true;
      await stopping; // the last term's reconciles have finished
      await reportsStarted;
      await publisher.acquire();
      const live = await readPointer(cfg.etcd, publisher.layout);
      if (!leading) return; // lost leadership meanwhile
      liveEpoch = live.pointer?.epoch ?? 0;
      writtenZones.clear();
      writtenPolicies.clear();
      ctl.start();
      ctl.queue.add(PUBLISH);
    },
    follow() {
      leading = false;
      stopping = ctl.stop();
      publisher.release();
    },
  });
  mgr.onStop(async () => {
    await stopping;
    await reports.close();
  });
  return { lastPublish: () => last };
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
    s.p2pPeers?.relayed === c.p2pPeers?.relayed
  );
}
