// Names of the hybridp2p.io API, shared by the CRD generator, the operator and the CLI.

export const GROUP = "hybridp2p.io";
export const VERSION = "v1alpha1";
export const API_VERSION = `${GROUP}/${VERSION}`;

/** `kubectl get hybridp2p` lists every kind of this API. */
export const CATEGORY = "hybridp2p";

export interface KindNames {
  readonly kind: string;
  readonly listKind: string;
  readonly plural: string;
  readonly singular: string;
  readonly shortNames: readonly string[];
}

// Short names avoid the built-in ones (rs, rc, ...) and the common add-ons' (vpa, pdb, ...).
export const REGION = {
  kind: "Region",
  listKind: "RegionList",
  plural: "regions",
  singular: "region",
  shortNames: ["rgn"],
} as const satisfies KindNames;

export const ZONE = {
  kind: "Zone",
  listKind: "ZoneList",
  plural: "zones",
  singular: "zone",
  shortNames: ["zn"],
} as const satisfies KindNames;

export const P2P_POLICY = {
  kind: "P2PPolicy",
  listKind: "P2PPolicyList",
  plural: "p2ppolicies",
  singular: "p2ppolicy",
  shortNames: ["p2pp"],
} as const satisfies KindNames;

export const WORLD_EVENT = {
  kind: "WorldEvent",
  listKind: "WorldEventList",
  plural: "worldevents",
  singular: "worldevent",
  shortNames: ["wev"],
} as const satisfies KindNames;

/** `<plural>.<group>`, the CRD's metadata.name. */
export function crdName(names: KindNames): string {
  return `${names.plural}.${GROUP}`;
}

/** Condition types every status carries (kstatus and Argo CD read Ready, Reconciling and Stalled). */
export const ConditionType = {
  Ready: "Ready",
  Reconciling: "Reconciling",
  Stalled: "Stalled",
  Degraded: "Degraded",
} as const;
export type ConditionType = (typeof ConditionType)[keyof typeof ConditionType];

/** Label a user puts on Zones to be selected by policies (a convention, not enforced). */
export const ZONE_TYPE_LABEL = `${GROUP}/zone-type`;

/**
 * The longest names that leave room for every child name made from them. A StatefulSet's name
 * ends up in its pods' controller-revision-hash label ("<name>-<10-char hash>", a 63-character
 * label value), so a StatefulSet name may have at most 52 characters: a Region's longest is
 * "<region>-dragonfly" (and its Services "<region>-login-server"), a Zone's "<zone>-map-server".
 */
export const MAX_REGION_NAME = 52 - "-dragonfly".length;
export const MAX_ZONE_NAME = 52 - "-map-server".length;
