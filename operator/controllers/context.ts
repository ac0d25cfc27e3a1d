// What the controllers share, in a module of its own: the resource descriptors of the
// hybridp2p.io kinds, their cached object types, and the Context every reconcile gets. It
// imports no controller, so the wiring (operator.ts, flagplane.ts) and the reconcilers
// (region.ts, zone.ts, reconcile.ts) can all import it without an import circle.

import type { Informer } from "../../platform/kube/informer.ts";
import { type KubeClient, type ResourceType, registerResource } from "../../platform/kube/kube.ts";
import type { KubeObject } from "../../platform/kube/meta.ts";
import type { Logger } from "../../platform/log.ts";
import {
  API_VERSION,
  P2P_POLICY,
  type P2PPolicy,
  REGION,
  type Region,
  ZONE,
  type Zone,
} from "../api/index.ts";
import type { StoreHealth } from "../flags/stores.ts";
import type { ChildApplier } from "./children.ts";
import type { EtcdAuth } from "./etcdauth.ts";
import type { EventRecorder } from "./events.ts";
import type { SecretReader } from "./secrets.ts";

const ours = (k: { kind: string; plural: string }): ResourceType => {
  const rt = { apiVersion: API_VERSION, kind: k.kind, plural: k.plural, namespaced: true };
  registerResource(rt);
  return rt;
};
export const regionResource = ours(REGION);
export const zoneResource = ours(ZONE);
export const policyResource = ours(P2P_POLICY);

// The API types carry client-node's metadata (Date timestamps); on the wire they are our KubeObject.
export type RegionObject = Region & KubeObject;
export type ZoneObject = Zone & KubeObject;
export type PolicyObject = P2PPolicy & KubeObject;

export interface Context {
  client: KubeClient;
  log: Logger;
  events: EventRecorder;
  applier: ChildApplier;
  regions: Informer<RegionObject>;
  zones: Informer<ZoneObject>;
  /** Secrets by name (generated ones and those Regions name): the operator may not list or watch them. */
  secrets: SecretReader;
  /** The roles the operator applied on managed etcds. */
  etcdAuth: EtcdAuth;
  /** Where the operator reaches a Region's store (its Service, as the Region's pods do). */
  storeEndpoint(region: Region, store: "etcd" | "nats"): string;
  /** The live child (from the cache) matching a desired one. */
  live(desired: KubeObject): KubeObject | undefined;
  /** The live children (from the caches) this owner controls. */
  owned(owner: KubeObject): KubeObject[];
  /** Whether a Region's (`namespace/name`) flag store takes publishes: the flag plane's word,
   * when the flag plane runs (it sets this); undefined while not tried. */
  flagStoreHealth?: (region: string) => StoreHealth | undefined;
  /** Reconciles these Regions again (their flag store's health changed). */
  requeueRegions(keys: string[]): void;
}
