// Schema pieces shared by the kinds.

import type { V1ObjectMeta } from "@kubernetes/client-node";
import { type ObjectOptions, type Static, type TSchema, Type } from "@sinclair/typebox";
import { API_VERSION } from "./constants.ts";
import {
  cel,
  DateTime,
  DefaultedObject,
  DnsSubdomain,
  Int64,
  OpaqueObject,
  Quantity,
  StringEnum,
  StringMap,
} from "./schema.ts";

// ---- The resource ---------------------------------------------------------------------------

/** A kind's top-level schema: apiVersion, kind, metadata (the apiserver's to validate), spec, status. */
export function ResourceSchema<Spec extends TSchema, Status extends TSchema>(
  kind: string,
  spec: Spec,
  status: Status,
  options: ObjectOptions,
) {
  return Type.Object(
    {
      apiVersion: Type.Optional(Type.String({ description: API_VERSION })),
      kind: Type.Optional(Type.String({ description: kind })),
      metadata: Type.Optional(OpaqueObject<V1ObjectMeta>()),
      spec,
      status: Type.Optional(status),
    },
    options,
  );
}

// ---- metav1.Condition -------------------------------------------------------------------

// Same fields, bounds and patterns as metav1.Condition, so kstatus, Argo CD and
// `kubectl wait --for=condition=Ready` read our conditions like any built-in's.
export const ConditionStatusValues = ["True", "False", "Unknown"] as const;

export const Condition = Type.Object(
  {
    type: Type.String({
      description: "Type of condition in CamelCase (Ready, Reconciling, Stalled, Degraded).",
      maxLength: 316,
      pattern:
        "^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$",
    }),
    status: StringEnum(ConditionStatusValues, { description: "True, False or Unknown." }),
    observedGeneration: Type.Optional(
      Int64({ minimum: 0, description: "metadata.generation the condition was set from." }),
    ),
    lastTransitionTime: DateTime({ description: "When the condition last changed status." }),
    reason: Type.String({
      description: "Machine-readable CamelCase reason.",
      minLength: 1,
      maxLength: 1024,
      pattern: "^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
    }),
    message: Type.String({ description: "Human-readable detail.", maxLength: 32768 }),
  },
  { description: "A metav1.Condition." },
);
export type Condition = Static<typeof Condition>;

export const Conditions = Type.Array(Condition, {
  description: "Ready, Reconciling, Stalled and Degraded, one entry per type.",
  maxItems: 16,
  "x-kubernetes-list-type": "map",
  "x-kubernetes-list-map-keys": ["type"],
});

/** observedGeneration and conditions: the part of every status kstatus reads. */
export const StatusCommon = {
  observedGeneration: Type.Optional(
    Int64({ minimum: 0, description: "metadata.generation the operator last acted on." }),
  ),
  conditions: Type.Optional(Conditions),
};

// ---- Resources ----------------------------------------------------------------------------

const ResourceList = StringMap(Quantity({ nonNegative: true }), {
  description: "Resource name (cpu, memory, ephemeral-storage, ...) to quantity, never negative.",
  maxProperties: 16,
});

/** corev1.ResourceRequirements without claims. */
export const ResourceRequirements = Type.Object(
  {
    requests: Type.Optional(ResourceList),
    limits: Type.Optional(ResourceList),
  },
  {
    description: "Compute resources of each container, as in a Pod spec.",
    // The Pod would be refused later, by the StatefulSet or Deployment controller, far from the
    // manifest that caused it; say it here instead.
    ...cel({
      // The resources the workloads use, named, so the apiserver's cost estimate stays bounded.
      rule: "!has(self.requests) || !has(self.limits) || ['cpu', 'memory', 'ephemeral-storage'].all(r, !(r in self.requests) || !(r in self.limits) || quantity(string(self.requests[r])).compareTo(quantity(string(self.limits[r]))) <= 0)",
      message: "requests of cpu, memory and ephemeral-storage must be less than or equal to their limits",
      reason: "FieldValueInvalid",
    }),
  },
);
export type ResourceRequirements = Static<typeof ResourceRequirements>;

// ---- Services -----------------------------------------------------------------------------

export const ServiceTypeValues = ["ClusterIP", "NodePort", "LoadBalancer"] as const;
export type ServiceType = (typeof ServiceTypeValues)[number];

export function ServicePort(defaultPort: number) {
  return Type.Integer({ default: defaultPort, minimum: 1, maximum: 65535, description: "Service port." });
}

/** Bounded by the port range only: the cluster's node port range is configurable. */
export function NodePort(description: string) {
  return Type.Integer({ minimum: 1, maximum: 65535, description });
}

/** The Service in front of a component; each component has its own default port. */
export function ServiceSpec(defaultPort: number) {
  return DefaultedObject(
    {
      type: Type.Optional(
        StringEnum(ServiceTypeValues, { default: "ClusterIP", description: "Kubernetes Service type." }),
      ),
      port: Type.Optional(ServicePort(defaultPort)),
      nodePort: Type.Optional(NodePort("Fixed node port; only for NodePort and LoadBalancer Services.")),
    },
    {
      description: "The Service that exposes the component.",
      ...cel({
        rule: "!has(self.nodePort) || self.type != 'ClusterIP'",
        message: "nodePort requires service type NodePort or LoadBalancer",
        fieldPath: ".nodePort",
      }),
    },
  );
}
export type ServiceSpec = Static<ReturnType<typeof ServiceSpec>>;

// ---- Workloads ----------------------------------------------------------------------------

/** A stateless component of a Region: gateway, coordinator, login server, char server. */
export function ComponentSpec(description: string, defaultPort: number) {
  return DefaultedObject(
    {
      // 0 is allowed to park a component; 100 bounds mistakes (a region is not a continent).
      replicas: Type.Optional(
        Type.Integer({ default: 1, minimum: 0, maximum: 100, description: "Number of pods." }),
      ),
      resources: Type.Optional(ResourceRequirements),
      service: Type.Optional(ServiceSpec(defaultPort)),
    },
    { description },
  );
}
export type ComponentSpec = Static<ReturnType<typeof ComponentSpec>>;

// ---- References ---------------------------------------------------------------------------

/** A key of a Secret in the same namespace. */
export const SecretRef = Type.Object(
  {
    name: DnsSubdomain({ description: "Secret name, in the resource's namespace." }),
    key: Type.Optional(
      Type.String({
        description: "Key in the Secret; without it the whole Secret is used (e.g. username and password).",
        minLength: 1,
        maxLength: 253,
        pattern: "^[-._a-zA-Z0-9]+$",
      }),
    ),
  },
  { description: "Reference to a Secret in the same namespace." },
);
export type SecretRef = Static<typeof SecretRef>;

/** A container image reference. Length-bounded only: tags and digests vary too much for a pattern. */
export function Image(options: { description: string; default?: string }) {
  return Type.String({ minLength: 1, maxLength: 512, ...options });
}

// ---- metav1.LabelSelector -----------------------------------------------------------------

/** A label key: an optional DNS-subdomain prefix and '/', then a name of at most 63 characters. */
export const LABEL_KEY_PATTERN =
  "^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$";
/** A label value: empty, or at most 63 letters, digits, '-', '_' or '.', alphanumeric at both ends. */
export const LABEL_VALUE_PATTERN = "^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$";

export const LabelSelectorOperatorValues = ["In", "NotIn", "Exists", "DoesNotExist"] as const;

export const LabelSelectorRequirement = Type.Object(
  {
    key: Type.String({ minLength: 1, maxLength: 317, pattern: LABEL_KEY_PATTERN, description: "Label key." }),
    operator: StringEnum(LabelSelectorOperatorValues, { description: "In, NotIn, Exists or DoesNotExist." }),
    values: Type.Optional(
      Type.Array(Type.String({ maxLength: 63, pattern: LABEL_VALUE_PATTERN }), {
        description: "Values for In and NotIn; empty for Exists and DoesNotExist.",
        maxItems: 64,
        "x-kubernetes-list-type": "atomic",
      }),
    ),
  },
  {
    description: "A label selector requirement, as in metav1.LabelSelector.",
    // The apiserver checks these for built-in selectors; CRDs must say it themselves.
    ...cel(
      {
        rule: "!(self.operator in ['In', 'NotIn']) || (has(self.values) && size(self.values) > 0)",
        message: "values must be non-empty when operator is In or NotIn",
        fieldPath: ".values",
        reason: "FieldValueRequired",
      },
      {
        rule: "!(self.operator in ['Exists', 'DoesNotExist']) || !has(self.values) || size(self.values) == 0",
        message: "values must be empty when operator is Exists or DoesNotExist",
        fieldPath: ".values",
        reason: "FieldValueForbidden",
      },
    ),
  },
);

export const LabelSelector = Type.Object(
  {
    matchLabels: Type.Optional(
      StringMap(Type.String({ maxLength: 63, pattern: LABEL_VALUE_PATTERN }), {
        description: "Labels a zone must carry, all of them.",
        maxProperties: 32,
      }),
    ),
    matchExpressions: Type.Optional(
      Type.Array(LabelSelectorRequirement, {
        description: "Requirements a zone must meet, all of them.",
        maxItems: 16,
        "x-kubernetes-list-type": "atomic",
      }),
    ),
  },
  {
    description: "A metav1.LabelSelector of Zones. An empty selector matches every Zone in the namespace.",
    "x-kubernetes-map-type": "atomic",
    // Map keys have no schema of their own; a key that is not label syntax would match nothing.
    ...cel({
      rule: `!has(self.matchLabels) || self.matchLabels.all(k, size(k) <= 317 && k.matches(r'${LABEL_KEY_PATTERN}'))`,
      message:
        "matchLabels keys must be label keys: an optional DNS-subdomain prefix and '/', then a name of at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
      fieldPath: ".matchLabels",
      reason: "FieldValueInvalid",
    }),
  },
);
export type LabelSelector = Static<typeof LabelSelector>;
