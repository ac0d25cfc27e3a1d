// Region: one playable edge region (gateway, coordinator, login and char servers, data stores).
// Its Zones and P2PPolicies live in the same namespace; a namespace per region is the convention.

import { type Static, Type } from "@sinclair/typebox";
import {
  ComponentSpec,
  Image,
  ResourceRequirements,
  ResourceSchema,
  SecretRef,
  StatusCommon,
} from "./common.ts";
import { MAX_REGION_NAME, REGION } from "./constants.ts";
import { MapCacheSpec, RoSpec } from "./ro.ts";
import { cel, DefaultedObject, DnsSubdomain, Quantity, StringEnum } from "./schema.ts";

// Pinned defaults; a Region overrides them in spec.images.
export const DEFAULT_WORKLOAD_IMAGE = "ghcr.io/hybrid-p2p/workload:0.1.0";
export const DEFAULT_DRAGONFLY_IMAGE = "docker.dragonflydb.io/dragonflydb/dragonfly:v1.37.2";

export const DataStoreModeValues = ["Managed", "External"] as const;
export type DataStoreMode = (typeof DataStoreModeValues)[number];

export const DataStoreNames = ["etcd", "nats", "postgres", "dragonfly"] as const;
export type DataStoreName = (typeof DataStoreNames)[number];

const ManagedDataStore = Type.Object(
  {
    image: Type.Optional(Image({ description: "Image override; the operator pins a default per store." })),
    storage: Type.Optional(Quantity({ default: "1Gi", description: "Size of the data volume." })),
    resources: Type.Optional(ResourceRequirements),
  },
  { description: "A single-instance store run by the operator: for small and dev installs." },
);

const ExternalDataStore = Type.Object(
  {
    endpoints: Type.Array(Type.String({ minLength: 1, maxLength: 512 }), {
      description: "Client endpoints (host:port or URLs), tried in order.",
      minItems: 1,
      maxItems: 16,
      "x-kubernetes-list-type": "atomic",
    }),
    secretRef: Type.Optional(SecretRef),
    tlsSecretRef: Type.Optional(SecretRef),
  },
  {
    description:
      "A store run elsewhere (CloudNativePG, a NATS cluster, an etcd cluster): endpoints plus Secret references.",
  },
);

function DataStore(description: string) {
  return DefaultedObject(
    {
      mode: Type.Optional(
        StringEnum(DataStoreModeValues, { default: "Managed", description: "Managed or External." }),
      ),
      // No default on `managed`: a defaulted `managed: {}` would break the External rule below.
      // The operator applies managed defaults itself (Value.Default on this schema).
      managed: Type.Optional(ManagedDataStore),
      external: Type.Optional(ExternalDataStore),
    },
    {
      description,
      ...cel(
        {
          rule: "self.mode != 'External' || has(self.external)",
          message: "external is required when mode is External",
          fieldPath: ".external",
          reason: "FieldValueRequired",
        },
        {
          rule: "self.mode != 'External' || !has(self.managed)",
          message: "managed must not be set when mode is External",
          fieldPath: ".managed",
          reason: "FieldValueForbidden",
        },
        {
          rule: "self.mode != 'Managed' || !has(self.external)",
          message: "external must not be set when mode is Managed",
          fieldPath: ".external",
          reason: "FieldValueForbidden",
        },
      ),
    },
  );
}
export type DataStore = Static<ReturnType<typeof DataStore>>;

export const TlsModeValues = ["Enabled", "Disabled"] as const;
export type TlsMode = (typeof TlsModeValues)[number];

/** TLS of the endpoints players reach: gateway and coordinator (wss), login and char servers (https). */
export const RegionTls = DefaultedObject(
  {
    mode: Type.Optional(
      StringEnum(TlsModeValues, {
        default: "Enabled",
        description:
          "Enabled (the default): the endpoints serve TLS. Disabled: plain ws/http, an explicit switch for development.",
      }),
    ),
    secretName: Type.Optional(
      DnsSubdomain({
        description:
          "A kubernetes.io/tls Secret in the Region's namespace (tls.crt, tls.key; ca.crt optional), e.g. one cert-manager writes. Without it the operator makes a per-Region CA and the Secret <region>-serving-tls.",
      }),
    ),
  },
  {
    description: "Client-facing TLS.",
    ...cel({
      rule: "self.mode != 'Disabled' || !has(self.secretName)",
      message: "secretName must not be set when mode is Disabled",
      fieldPath: ".secretName",
      reason: "FieldValueForbidden",
    }),
  },
);
export type RegionTls = Static<typeof RegionTls>;

export const RegionSpec = Type.Object(
  {
    // Default ports: login and char as in rAthena (6900, 6121); gateway and coordinator are new.
    gateway: Type.Optional(ComponentSpec("The regional gateway clients connect to.", 7000)),
    coordinator: Type.Optional(ComponentSpec("The P2P coordinator: signaling and mesh management.", 7100)),
    loginServer: Type.Optional(ComponentSpec("The login server.", 6900)),
    charServer: Type.Optional(ComponentSpec("The char server.", 6121)),
    startPoint: Type.Optional(
      Type.Object(
        {
          map: Type.String({ minLength: 1, maxLength: 32, pattern: "^[a-z0-9_]+$", description: "The map." }),
          x: Type.Integer({ minimum: 0, maximum: 4095, description: "Cell x." }),
          y: Type.Integer({ minimum: 0, maximum: 4095, description: "Cell y." }),
        },
        {
          description:
            "Where new characters start (the char server's start point). Default: Prontera (prontera 156,191), a town.",
        },
      ),
    ),
    tls: Type.Optional(RegionTls),
    ro: Type.Optional(RoSpec),
    mapCache: Type.Optional(MapCacheSpec),
    dataStores: Type.Optional(
      DefaultedObject(
        {
          etcd: Type.Optional(DataStore("etcd: directory, map ownership, runtime flags.")),
          nats: Type.Optional(DataStore("NATS JetStream: state bus and event streaming.")),
          postgres: Type.Optional(DataStore("PostgreSQL: accounts and characters.")),
          dragonfly: Type.Optional(DataStore("DragonflyDB (Redis protocol): sessions and hot state.")),
        },
        { description: "Data stores, each Managed by the operator or External." },
      ),
    ),
    images: Type.Optional(
      DefaultedObject(
        {
          operator: Type.Optional(Image({ description: "Operator image, for jobs the operator starts." })),
          workload: Type.Optional(
            Image({
              description: "Image of every TypeScript workload (gateway, coordinator, map, login, char).",
              default: DEFAULT_WORKLOAD_IMAGE,
            }),
          ),
          dragonfly: Type.Optional(
            Image({ description: "Managed DragonflyDB image.", default: DEFAULT_DRAGONFLY_IMAGE }),
          ),
        },
        { description: "Container images." },
      ),
    ),
  },
  { description: "Desired state of the region." },
);
export type RegionSpec = Static<typeof RegionSpec>;

const ZoneCount = (description: string) => Type.Optional(Type.Integer({ minimum: 0, description }));

export const RegionStatus = Type.Object(
  {
    ...StatusCommon,
    zones: Type.Optional(
      Type.Object(
        {
          total: ZoneCount("Zones of this region."),
          p2p: ZoneCount("Zones in P2P mode."),
          server: ZoneCount("Zones in server mode."),
          fallback: ZoneCount("Zones in fallback."),
          mixed: ZoneCount("Zones whose pods disagree (switching, or partly in fallback)."),
        },
        { description: "Zone counts by mode." },
      ),
    ),
    gatewayEndpoint: Type.Optional(
      Type.String({ maxLength: 512, description: "Address clients connect to (host:port)." }),
    ),
  },
  { description: "Observed state of the region." },
);
export type RegionStatus = Static<typeof RegionStatus>;

export const RegionSchema = ResourceSchema(REGION.kind, RegionSpec, RegionStatus, {
  description:
    "A Region is one playable edge region: gateway, P2P coordinator, login and char servers and their data stores.",
  ...cel({
    rule: `self.metadata.name.size() <= ${MAX_REGION_NAME}`,
    message: `a Region's name may have at most ${MAX_REGION_NAME} characters, so the names of its children fit (its <name>-dragonfly StatefulSet name ends up in a 63-character label)`,
    reason: "FieldValueInvalid",
  }),
});
export type Region = Static<typeof RegionSchema>;

export const regionPrinterColumns = [
  { name: "Ready", type: "string", jsonPath: '.status.conditions[?(@.type=="Ready")].status' },
  { name: "Zones", type: "integer", jsonPath: ".status.zones.total" },
  { name: "P2P", type: "integer", jsonPath: ".status.zones.p2p" },
  { name: "Fallback", type: "integer", jsonPath: ".status.zones.fallback", priority: 1 },
  { name: "Gateway", type: "string", jsonPath: ".status.gatewayEndpoint" },
  { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" },
];
