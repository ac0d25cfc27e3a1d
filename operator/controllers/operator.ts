// The operator's wiring: which informers exist, which controller each event wakes, and the
// shared pieces (the child applier, the event recorder). Reconcile logic lives in region.ts
// and zone.ts.

import { Controller, changed, generationChanged } from "../../platform/kube/controller.ts";
import { resources } from "../../platform/kube/kube.ts";
import type { Manager } from "../../platform/kube/manager.ts";
import type { KubeObject } from "../../platform/kube/meta.ts";
import { REGION, type Region, ZONE } from "../api/index.ts";
import { MANAGED_SELECTOR } from "../render/constants.ts";
import { storeAddress } from "../render/stores.ts";
import { ChildApplier } from "./children.ts";
import { type Context, type RegionObject, regionResource, type ZoneObject, zoneResource } from "./context.ts";
import { EtcdAuth } from "./etcdauth.ts";
import { EventRecorder } from "./events.ts";
import { reconcileRegion } from "./region.ts";
import { SecretReader } from "./secrets.ts";
import { reconcileZone } from "./zone.ts";

/** Kinds the operator creates; their informers watch only objects carrying the managed-by label. */
export const CHILD_RESOURCES = [
  resources.deployment,
  resources.statefulSet,
  resources.service,
  resources.configMap,
  resources.serviceAccount,
  resources.pdb,
  resources.networkPolicy,
];

/** How long a Region waits to recount its Zones after one changed. */
export const ZONE_COUNT_DELAY_MS = 1_000;

export interface OperatorOptions {
  /** Workers per controller. */
  concurrency?: number;
  identity: string;
  /** Where the operator reaches a Region's managed etcd or NATS (default: its Service, as the
   * Region's pods do; tests on a control plane without pods point it at stores they run). */
  storeEndpoint?: (region: Region, store: "etcd" | "nats") => string;
}

export function setupOperator(mgr: Manager, opts: OperatorOptions): Context {
  const regions = mgr.informer<RegionObject>(regionResource);
  const zones = mgr.informer<ZoneObject>(zoneResource);
  const children = new Map(
    CHILD_RESOURCES.map((rt) => [rt.kind, mgr.informer<KubeObject>(rt, MANAGED_SELECTOR)]),
  );
  const applier = new ChildApplier(mgr.client);
  const ctx: Context = {
    client: mgr.client,
    log: mgr.log,
    events: new EventRecorder(mgr.client, mgr.log, opts.identity),
    applier,
    regions,
    zones,
    secrets: new SecretReader(mgr.client),
    etcdAuth: new EtcdAuth(),
    storeEndpoint: opts.storeEndpoint ?? ((r, store) => storeAddress(r, store)),
    live: (d) => children.get(d.kind)?.get(d.metadata.namespace ?? "", d.metadata.name),
    owned: (owner) =>
      [...children.values()].flatMap((inf) =>
        inf
          .list(owner.metadata.namespace)
          .filter((o) =>
            o.metadata.ownerReferences?.some((r) => r.controller && r.uid === owner.metadata.uid),
          ),
      ),
    requeueRegions: (keys) => {
      for (const k of keys) regionCtl.queue.add(k);
    },
  };
  const common = { metrics: mgr.metrics, log: mgr.log, concurrency: opts.concurrency ?? 4 };
  const regionCtl = new Controller({ name: "region", reconcile: (k) => reconcileRegion(ctx, k), ...common });
  const zoneCtl = new Controller({ name: "zone", reconcile: (k) => reconcileZone(ctx, k), ...common });

  regionCtl.watchPrimary(regions, generationChanged());
  zoneCtl.watchPrimary(zones, generationChanged());
  // A Region's spec (image, stores) shapes its Zones' pods; its appearance un-stalls them.
  zoneCtl.watchMapped(
    regions,
    (r) =>
      zones
        .list(r.metadata.namespace)
        .filter((z) => z.spec.regionRef.name === r.metadata.name)
        .map(keyOf),
    { predicate: generationChanged() },
  );
  // A Region counts its Zones by mode.
  // Once per burst of Zone changes, not once per Zone.
  regionCtl.watchMapped(zones, (z) => [`${z.metadata.namespace}/${z.spec.regionRef.name}`], {
    predicate: changed((z: ZoneObject) => `${z.spec.regionRef.name}|${z.status?.mode ?? ""}`),
    delayMs: ZONE_COUNT_DELAY_MS,
  });
  for (const inf of children.values()) {
    regionCtl.watchOwned(inf, REGION.kind);
    zoneCtl.watchOwned(inf, ZONE.kind);
    inf.on((type, obj) => {
      if (type === "delete") applier.forget(obj);
    });
  }
  mgr.add(regionCtl);
  mgr.add(zoneCtl);
  return ctx;
}

const keyOf = (o: KubeObject): string => `${o.metadata.namespace}/${o.metadata.name}`;
