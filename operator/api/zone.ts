// Zone: a set of maps served by one map-server pool, in one Region.

import { type Static, Type } from "@sinclair/typebox";
import { ResourceRequirements, ResourceSchema, StatusCommon } from "./common.ts";
import { MAX_ZONE_NAME, ZONE } from "./constants.ts";
import { cel, DateTime, DefaultedObject, DnsLabel, Int64, StringEnum } from "./schema.ts";

export const MapTypeValues = ["Town", "Field", "Dungeon", "Instance", "PvP"] as const;
export type MapType = (typeof MapTypeValues)[number];

// Deny opts a map out of P2P whatever the policies say. There is deliberately no "Allow":
// towns are critical and become P2P only when a policy says so (P2PPolicy spec.includeTowns).
export const MapP2PValues = ["Inherit", "Deny"] as const;
export type MapP2P = (typeof MapP2PValues)[number];

export const ZoneModeValues = ["P2P", "Server", "Fallback", "Mixed"] as const;
export type ZoneMode = (typeof ZoneModeValues)[number];

/** rAthena's design figure: 500 to 2000 entities per worker thread. */
export const MAX_PLAYERS_PER_WORKER_THREAD = 2000;

export const GameMap = Type.Object(
  {
    // rAthena's MAP_NAME_LENGTH is 11 characters plus NUL; names are lower case with digits,
    // '_' and '-' (prt_fild08, new_1-1), and instance maps carry '@' (1@tower).
    name: Type.String({
      description: "rAthena map name, e.g. prontera, prt_fild08, 1@tower.",
      minLength: 1,
      maxLength: 11,
      pattern: "^[a-z0-9][a-z0-9_@-]*$",
    }),
    type: StringEnum(MapTypeValues, {
      description: "Town maps never run P2P unless a policy sets includeTowns.",
    }),
    p2p: Type.Optional(
      StringEnum(MapP2PValues, {
        default: "Inherit",
        description: "Inherit follows the zone's policies; Deny keeps this map server-only.",
      }),
    ),
  },
  {
    description: "A map served by the zone.",
    ...cel({
      rule: "(self.type == 'Instance') == self.name.contains('@')",
      message:
        "a map is of type Instance exactly when its name contains '@' (rAthena instance maps, e.g. 1@tower)",
      fieldPath: ".name",
    }),
  },
);
export type GameMap = Static<typeof GameMap>;

export const MapServerSpec = DefaultedObject(
  {
    replicas: Type.Optional(
      Type.Integer({
        default: 1,
        minimum: 0,
        maximum: 100,
        description: "Map-server pods; each map is owned by one pod at a time.",
      }),
    ),
    workerThreads: Type.Optional(
      Type.Integer({ default: 2, minimum: 1, maximum: 64, description: "Worker threads per pod." }),
    ),
    // rAthena's timer granularity is 20 ms, so no tick can be shorter: at most 50 Hz.
    // Mob AI runs every 100 ms, so a tick must not be longer: at least 10 Hz.
    tickRateHz: Type.Optional(
      Type.Integer({ default: 20, minimum: 10, maximum: 50, description: "Simulation ticks per second." }),
    ),
    maxPlayers: Type.Optional(
      Type.Integer({ default: 500, minimum: 1, maximum: 20000, description: "Players one pod admits." }),
    ),
    resources: Type.Optional(ResourceRequirements),
  },
  {
    description: "The map-server pool.",
    ...cel({
      rule: `self.maxPlayers <= self.workerThreads * ${MAX_PLAYERS_PER_WORKER_THREAD}`,
      message: `maxPlayers must not exceed workerThreads * ${MAX_PLAYERS_PER_WORKER_THREAD} (entities per worker thread)`,
      fieldPath: ".maxPlayers",
    }),
  },
);
export type MapServerSpec = Static<typeof MapServerSpec>;

export const ZoneSpec = Type.Object(
  {
    regionRef: Type.Object(
      { name: DnsLabel({ description: "Name of the Region, in the same namespace." }) },
      {
        description: "The Region this zone belongs to. Immutable: moving a zone means a new Zone.",
        ...cel({ rule: "self == oldSelf", message: "regionRef is immutable" }),
      },
    ),
    maps: Type.Array(GameMap, {
      description: "Maps served by this zone, unique by name.",
      minItems: 1,
      maxItems: 64,
      "x-kubernetes-list-type": "map",
      "x-kubernetes-list-map-keys": ["name"],
    }),
    mapServer: Type.Optional(MapServerSpec),
  },
  { description: "Desired state of the zone." },
);
export type ZoneSpec = Static<typeof ZoneSpec>;

export const ZoneStatus = Type.Object(
  {
    ...StatusCommon,
    mode: Type.Optional(StringEnum(ZoneModeValues, { description: "P2P, Server, Fallback or Mixed." })),
    policy: Type.Optional(Type.String({ maxLength: 253, description: "The P2PPolicy in effect, if any." })),
    appliedEpoch: Type.Optional(
      Int64({ minimum: 0, description: "Lowest flag epoch every pod of the zone has applied." }),
    ),
    replicas: Type.Optional(
      Type.Object(
        {
          desired: Type.Optional(Type.Integer({ minimum: 0, description: "Map-server pods wanted." })),
          applied: Type.Optional(
            Type.Integer({ minimum: 0, description: "Pods ready and running the current epoch." }),
          ),
        },
        { description: "Map-server pods." },
      ),
    ),
    // For the scale subresource (HPA, kubectl scale).
    selector: Type.Optional(Type.String({ maxLength: 1024, description: "Label selector of the pods." })),
    fallbackReason: Type.Optional(
      Type.String({ maxLength: 1024, description: "Why the zone is in fallback." }),
    ),
    fallbackSince: Type.Optional(DateTime({ description: "When the zone entered fallback." })),
    mapOwnership: Type.Optional(
      Type.Array(
        Type.Object({
          map: Type.String({ maxLength: 11, description: "Map name." }),
          pod: Type.String({ maxLength: 253, description: "Pod that owns the map." }),
        }),
        {
          description: "Which pod owns each map.",
          maxItems: 64,
          "x-kubernetes-list-type": "map",
          "x-kubernetes-list-map-keys": ["map"],
        },
      ),
    ),
    p2pPeers: Type.Optional(
      Type.Object(
        {
          connected: Type.Optional(Type.Integer({ minimum: 0, description: "Clients in a mesh." })),
          meshes: Type.Optional(Type.Integer({ minimum: 0, description: "Meshes." })),
          relayed: Type.Optional(
            Type.Integer({
              minimum: 0,
              description:
                "Clients with at least one pair exchanging through the server relay (no direct connection could be made).",
            }),
          ),
        },
        { description: "P2P clients of the zone, as the coordinator reports them." },
      ),
    ),
    p2pPlayers: Type.Optional(
      Type.Object(
        {
          eligible: Type.Optional(
            Type.Integer({
              minimum: 0,
              description:
                "P2P-capable players on the zone's maps while P2P is on there (before the rollout).",
            }),
          ),
          playing: Type.Optional(
            Type.Integer({
              minimum: 0,
              description: "Of those, players in P2P mode (inside rolloutPercent).",
            }),
          ),
          rolloutPercent: Type.Optional(
            Type.Integer({
              minimum: 0,
              maximum: 100,
              description: "The rollout in force (the governing policy's).",
            }),
          ),
        },
        { description: "The canary: players eligible for P2P and playing P2P, as the gateways report them." },
      ),
    ),
  },
  { description: "Observed state of the zone." },
);
export type ZoneStatus = Static<typeof ZoneStatus>;

export const ZoneSchema = ResourceSchema(ZONE.kind, ZoneSpec, ZoneStatus, {
  description: "A Zone is a set of maps served by one map-server pool of a Region.",
  ...cel({
    rule: `self.metadata.name.size() <= ${MAX_ZONE_NAME}`,
    message: `a Zone's name may have at most ${MAX_ZONE_NAME} characters, so the names of its children fit (its <name>-map-server StatefulSet name ends up in a 63-character label)`,
    reason: "FieldValueInvalid",
  }),
});
export type Zone = Static<typeof ZoneSchema>;

export const zonePrinterColumns = [
  { name: "Region", type: "string", jsonPath: ".spec.regionRef.name" },
  { name: "Mode", type: "string", jsonPath: ".status.mode" },
  { name: "Epoch", type: "integer", jsonPath: ".status.appliedEpoch" },
  { name: "Replicas", type: "integer", jsonPath: ".status.replicas.applied" },
  { name: "Desired", type: "integer", jsonPath: ".status.replicas.desired", priority: 1 },
  { name: "Policy", type: "string", jsonPath: ".status.policy", priority: 1 },
  { name: "Peers", type: "integer", jsonPath: ".status.p2pPeers.connected", priority: 1 },
  { name: "Relayed", type: "integer", jsonPath: ".status.p2pPeers.relayed", priority: 1 },
  { name: "Eligible", type: "integer", jsonPath: ".status.p2pPlayers.eligible", priority: 1 },
  { name: "Playing-P2P", type: "integer", jsonPath: ".status.p2pPlayers.playing", priority: 1 },
  { name: "Ready", type: "string", jsonPath: '.status.conditions[?(@.type=="Ready")].status' },
  { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" },
];

export const zoneScale = {
  specReplicasPath: ".spec.mapServer.replicas",
  statusReplicasPath: ".status.replicas.applied",
  labelSelectorPath: ".status.selector",
};
