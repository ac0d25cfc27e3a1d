// Wires the flag plane (operator/flags: compile P2PPolicies, Zones and Regions into flag
// documents, publish them to etcd fenced, fold workload reports into status) into the
// operator: it reads the operator's caches and runs only while this instance leads.

import type { KubeConfig } from "@kubernetes/client-node";
import { Etcd3 } from "etcd3";
import type { KubeObject } from "../api/meta.ts";
import { type FlagSource, startFlagPlane } from "../flags/plane.ts";
import { changed } from "../runtime/controller.ts";
import type { Manager } from "../runtime/manager.ts";
import { type Context, policyResource } from "./context.ts";

export interface FlagPlaneConfig {
  /** Comma-separated etcd endpoints of the flag store. */
  endpoints: string;
  /** Key prefix (the flag plane's default when unset). */
  prefix?: string;
  identity: string;
  kubeConfig: KubeConfig;
}

export function setupFlagPlane(mgr: Manager, ctx: Context, cfg: FlagPlaneConfig): void {
  const etcd = new Etcd3({ hosts: cfg.endpoints.split(",").map((h) => h.trim()) });
  const policies = mgr.informer<KubeObject>(policyResource);
  const source = {
    policies: () => policies.list(),
    zones: () => ctx.zones.list(),
    regions: () => ctx.regions.list(),
  } as unknown as FlagSource; // the same objects, typed by the flag plane's narrower view
  const plane = startFlagPlane({
    etcd,
    kubeConfig: cfg.kubeConfig,
    identity: cfg.identity,
    prefix: cfg.prefix,
    namespace: mgr.namespace,
    source,
    log: ctx.log.child({ component: "flags" }),
  });
  // The compile reads specs, labels (policy selectors) and annotations (forced fallback), not status.
  for (const inf of [policies, ctx.zones, ctx.regions] as const) {
    const relevant = changed<KubeObject>(
      (o) =>
        `${o.metadata.generation}|${JSON.stringify(o.metadata.labels)}|${JSON.stringify(o.metadata.annotations)}`,
    );
    inf.on((type, obj) => {
      if (relevant(type, obj)) plane.changed();
    });
  }
  mgr.addLeaderRunnable({ name: "flag-plane", lead: () => plane.lead(), follow: () => plane.follow() });
  mgr.onStop(async () => {
    await plane.stop();
    etcd.close();
  });
}
