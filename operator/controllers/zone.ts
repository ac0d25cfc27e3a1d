// Zone reconcile: find the Region (Stalled until it exists), apply the map-server pool,
// report status.

import type { ReconcileResult } from "../../platform/kube/controller.ts";
import { splitKey } from "../../platform/kube/informer.ts";
import type { KubeObject } from "../../platform/kube/meta.ts";
import { mapServerSelector, renderZone } from "../render/zone.ts";
import { type Phase, phaseConditions } from "./conditions.ts";
import { type Context, type RegionObject, type ZoneObject, zoneResource } from "./context.ts";
import { applyChildren, notReady, waitingPhase } from "./reconcile.ts";
import { writeStatus } from "./status.ts";

export async function reconcileZone(ctx: Context, key: string): Promise<ReconcileResult | undefined> {
  const { namespace, name } = splitKey(key);
  const zone = ctx.zones.get(namespace, name);
  if (!zone || zone.metadata.deletionTimestamp) return undefined;
  const regionName = zone.spec.regionRef.name;
  const replicas = { desired: zone.spec.mapServer?.replicas ?? 1 };
  const selector = Object.entries(mapServerSelector(name))
    .map(([k, v]) => `${k}=${v}`)
    .join(",");

  const region = ctx.regions.get(namespace, regionName);
  if (!region) {
    // The Region informer wakes this Zone when the Region appears.
    const message = `Region "${regionName}" not found in namespace "${namespace}"`;
    await writeStatus(ctx.client, ctx.events, zoneResource, zone, {
      fields: { replicas, selector },
      conditions: phaseConditions({ phase: "Stalled", reason: "RegionNotFound", message }),
    });
    return undefined;
  }

  const desired = rendered(zone, region);
  const drift = zone.status?.observedGeneration === zone.metadata.generation;
  const { written, rejected } = await applyChildren(ctx, zone, desired, drift);
  const waiting = notReady(ctx, desired, written);
  const phase: Phase =
    rejected ??
    (waiting.length > 0
      ? waitingPhase(zone, waiting, written)
      : { phase: "Ready", reason: "Available", message: "all map servers are ready" });
  await writeStatus(ctx.client, ctx.events, zoneResource, zone, {
    fields: { replicas, selector },
    conditions: phaseConditions(phase),
  });
  return undefined;
}

// Most reconciles are wake-ups from child events with nothing to change: render once per
// (Zone, Region) version. Cached objects are replaced on update, so identity is the version.
const renders = new WeakMap<ZoneObject, { region: RegionObject; children: KubeObject[] }>();
function rendered(zone: ZoneObject, region: RegionObject): KubeObject[] {
  const hit = renders.get(zone);
  if (hit?.region === region) return hit.children;
  const children = renderZone(zone, region);
  renders.set(zone, { region, children });
  return children;
}
