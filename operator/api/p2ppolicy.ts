// P2PPolicy: turns P2P on or off for the Zones it selects, with mesh limits, fallback thresholds
// and recovery. Figures are the original rAthena hybrid design's.

import { type Static, Type } from "@sinclair/typebox";
import { KNOWN_SERVICES } from "../../platform/flags/layout.ts";
import { LabelSelector, ResourceSchema, StatusCommon } from "./common.ts";
import { P2P_POLICY } from "./constants.ts";
import { cel, DefaultedObject, Int64, StringEnum } from "./schema.ts";

// webrtc-datachannel: direct ICE; webrtc-turn: WebRTC relayed through TURN;
// websocket-relay: messages relayed by the coordinator over the client's WebSocket.
export const TransportValues = ["webrtc-datachannel", "webrtc-turn", "websocket-relay"] as const;
export type Transport = (typeof TransportValues)[number];

export const RecoveryModeValues = ["Auto", "Manual"] as const;
export type RecoveryMode = (typeof RecoveryModeValues)[number];

/** Backoff used when recovery is Auto and spec.recovery.backoff is absent. */
export const DEFAULT_BACKOFF = { initialSeconds: 5, maxSeconds: 300 } as const;

const MeshSpec = DefaultedObject(
  {
    maxPeers: Type.Optional(
      Type.Integer({
        default: 40,
        minimum: 2,
        maximum: 50,
        description: "Peers per mesh (design: 30 to 50).",
      }),
    ),
    maxLinks: Type.Optional(
      Type.Integer({
        default: 8,
        minimum: 1,
        maximum: 49,
        description:
          "Direct links per peer, nearest mates first; the gateway relays the moves of the rest in view. maxPeers - 1 or more: a full mesh.",
      }),
    ),
    peerTTLSeconds: Type.Optional(
      Type.Integer({
        default: 30,
        minimum: 5,
        maximum: 600,
        description: "A silent peer is dropped after this.",
      }),
    ),
    refreshSeconds: Type.Optional(
      Type.Integer({ default: 10, minimum: 1, maximum: 300, description: "Mesh membership refresh period." }),
    ),
  },
  {
    description: "Mesh limits.",
    ...cel({
      rule: "self.refreshSeconds < self.peerTTLSeconds",
      message: "refreshSeconds must be less than peerTTLSeconds, or live peers expire between refreshes",
      fieldPath: ".refreshSeconds",
    }),
  },
);

// warn: report Degraded; critical: enter fallback when sustained; max: enter fallback at once.
function Thresholds(
  description: string,
  unit: string,
  warn: number,
  critical: number,
  max: number,
  bound: number,
  integer: boolean,
) {
  const Num = integer ? Type.Integer : Type.Number;
  const field = (name: string, value: number) =>
    Type.Optional(Num({ default: value, minimum: 0, maximum: bound, description: `${name} (${unit}).` }));
  return DefaultedObject(
    {
      warn: field("Report Degraded above this", warn),
      critical: field("Enter fallback when sustained above this", critical),
      max: field("Enter fallback at once above this", max),
    },
    {
      description,
      ...cel({
        rule: "self.warn <= self.critical && self.critical <= self.max",
        message: "thresholds must satisfy warn <= critical <= max",
      }),
    },
  );
}

const FallbackSpec = DefaultedObject(
  {
    latencyMs: Type.Optional(
      Thresholds("Round-trip latency between peers.", "ms", 100, 200, 300, 60000, true),
    ),
    // Percent of packets lost; a number so that 0.5 can be said.
    lossPercent: Type.Optional(Thresholds("Packet loss between peers.", "percent", 1, 2, 5, 100, false)),
    jitterMs: Type.Optional(
      DefaultedObject(
        {
          warn: Type.Optional(
            Type.Integer({
              default: 20,
              minimum: 0,
              maximum: 60000,
              description: "Report Degraded above this (ms).",
            }),
          ),
          critical: Type.Optional(
            Type.Integer({
              default: 50,
              minimum: 0,
              maximum: 60000,
              description: "Enter fallback above this (ms).",
            }),
          ),
        },
        {
          description: "Jitter between peers.",
          ...cel({
            rule: "self.warn <= self.critical",
            message: "jitter thresholds must satisfy warn <= critical",
          }),
        },
      ),
    ),
    coordinatorTimeoutMs: Type.Optional(
      Type.Integer({
        default: 1500,
        minimum: 100,
        maximum: 60000,
        description: "A coordinator silent this long puts the zone in fallback.",
      }),
    ),
    minPeers: Type.Optional(
      Type.Integer({
        default: 2,
        minimum: 1,
        maximum: 50,
        description: "Fewer peers than this in a mesh means fallback for its members.",
      }),
    ),
  },
  { description: "When workloads fall back to server mode." },
);

const RecoverySpec = DefaultedObject(
  {
    mode: Type.Optional(
      StringEnum(RecoveryModeValues, {
        default: "Auto",
        description: "Auto leaves fallback after the trigger clears, with backoff; Manual only by hand.",
      }),
    ),
    // No default object: a defaulted backoff would trip the Manual rule below. DEFAULT_BACKOFF applies.
    backoff: Type.Optional(
      Type.Object(
        {
          initialSeconds: Type.Optional(
            Type.Integer({
              default: 5,
              minimum: 1,
              maximum: 3600,
              description: "First wait before leaving.",
            }),
          ),
          maxSeconds: Type.Optional(
            Type.Integer({
              default: 300,
              minimum: 1,
              maximum: 86400,
              description: "Longest wait, after doubling.",
            }),
          ),
        },
        {
          description: "Wait before leaving fallback; doubles on each re-entry.",
          ...cel({
            rule: "self.initialSeconds <= self.maxSeconds",
            message: "initialSeconds must be less than or equal to maxSeconds",
            fieldPath: ".initialSeconds",
          }),
        },
      ),
    ),
  },
  {
    description: "How zones leave fallback.",
    ...cel({
      rule: "self.mode == 'Auto' || !has(self.backoff)",
      message: "backoff is only allowed when mode is Auto",
      fieldPath: ".backoff",
      reason: "FieldValueForbidden",
    }),
  },
);

export const P2PPolicySpec = Type.Object(
  {
    zoneSelector: LabelSelector,
    // The flag layout's list of services is the source, so the API cannot drift from it.
    services: Type.Optional(
      Type.Array(StringEnum(KNOWN_SERVICES), {
        description: "Services the policy covers.",
        default: [...KNOWN_SERVICES],
        minItems: 1,
        maxItems: KNOWN_SERVICES.length,
        "x-kubernetes-list-type": "set",
      }),
    ),
    enabled: Type.Optional(
      Type.Boolean({ default: true, description: "P2P on (true) or off for the zones." }),
    ),
    transports: Type.Optional(
      Type.Array(StringEnum(TransportValues), {
        description:
          "Transports in order of preference, published to the workloads. Clients open WebRTC data channels (webrtc-datachannel; webrtc-turn when their ICE settings name TURN servers) and a pair that cannot connect goes through the server relay (websocket-relay).",
        default: ["webrtc-datachannel", "websocket-relay"],
        minItems: 1,
        maxItems: TransportValues.length,
        "x-kubernetes-list-type": "set",
      }),
    ),
    rolloutPercent: Type.Optional(
      Type.Integer({
        default: 100,
        minimum: 0,
        maximum: 100,
        description:
          "Share of P2P-capable players that play P2P (by a stable hash of the character, so widening only adds players); the others play in server mode. 0 turns P2P off.",
      }),
    ),
    includeTowns: Type.Optional(
      Type.Boolean({ default: false, description: "Town maps are server-only unless this is true." }),
    ),
    mesh: Type.Optional(MeshSpec),
    fallback: Type.Optional(FallbackSpec),
    recovery: Type.Optional(RecoverySpec),
    forceFallback: Type.Optional(
      Type.Boolean({ default: false, description: "Put every selected zone in fallback now." }),
    ),
    priority: Type.Optional(
      Type.Integer({
        default: 0,
        minimum: -1000,
        maximum: 1000,
        description:
          "When policies overlap on a zone, the highest priority wins, then the name that sorts first; the losers list the conflict in status.",
      }),
    ),
  },
  {
    description: "Desired P2P behaviour of the selected zones.",
    ...cel({
      // mesh and fallback are always there after defaulting; the has() guards cost nothing.
      rule: "!has(self.fallback) || !has(self.mesh) || self.fallback.minPeers <= self.mesh.maxPeers",
      message: "fallback.minPeers must be less than or equal to mesh.maxPeers",
      fieldPath: ".fallback.minPeers",
    }),
  },
);
export type P2PPolicySpec = Static<typeof P2PPolicySpec>;

export const P2PPolicyStatus = Type.Object(
  {
    ...StatusCommon,
    matchedZones: Type.Optional(Type.Integer({ minimum: 0, description: "Zones the selector matches." })),
    appliedZones: Type.Optional(
      Type.Integer({
        minimum: 0,
        description: "Matched zones where this policy wins and its epoch is applied.",
      }),
    ),
    epoch: Type.Optional(
      Int64({
        minimum: 0,
        description:
          "Flag epoch that carried this generation (the highest, when its zones are in several flag stores).",
      }),
    ),
    epochs: Type.Optional(
      Type.Array(
        Type.Object({
          region: Type.String({ maxLength: 253, description: "A Region with zones this policy governs." }),
          epoch: Int64({
            minimum: 0,
            description:
              "The epoch of that Region's flag store that first carried this generation; 0 while it is not published there yet.",
          }),
        }),
        {
          description:
            "Each Region has its own flag store and epochs: the epoch per Region of the governed zones.",
          maxItems: 256,
          "x-kubernetes-list-type": "map",
          "x-kubernetes-list-map-keys": ["region"],
        },
      ),
    ),
    conflicts: Type.Optional(
      Type.Array(
        Type.Object({
          zone: Type.String({ maxLength: 253, description: "Zone selected by several policies." }),
          policies: Type.Array(Type.String({ maxLength: 253 }), {
            description: "Every policy selecting the zone.",
            maxItems: 64,
            "x-kubernetes-list-type": "atomic",
          }),
          winner: Type.String({ maxLength: 253, description: "The policy in effect." }),
          reason: Type.String({ maxLength: 1024, description: "Why it won." }),
        }),
        {
          description: "Zones this policy shares with others.",
          maxItems: 256,
          "x-kubernetes-list-type": "map",
          "x-kubernetes-list-map-keys": ["zone"],
        },
      ),
    ),
  },
  { description: "Observed state of the policy." },
);
export type P2PPolicyStatus = Static<typeof P2PPolicyStatus>;

export const P2PPolicySchema = ResourceSchema(P2P_POLICY.kind, P2PPolicySpec, P2PPolicyStatus, {
  description: "A P2PPolicy switches P2P play on or off for the Zones it selects.",
});
export type P2PPolicy = Static<typeof P2PPolicySchema>;

export const p2pPolicyPrinterColumns = [
  { name: "Enabled", type: "boolean", jsonPath: ".spec.enabled" },
  { name: "Fallback", type: "boolean", jsonPath: ".spec.forceFallback" },
  { name: "Priority", type: "integer", jsonPath: ".spec.priority" },
  { name: "Matched", type: "integer", jsonPath: ".status.matchedZones" },
  { name: "Applied", type: "integer", jsonPath: ".status.appliedZones" },
  { name: "Epoch", type: "integer", jsonPath: ".status.epoch" },
  { name: "Ready", type: "string", jsonPath: '.status.conditions[?(@.type=="Ready")].status', priority: 1 },
  { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" },
];
