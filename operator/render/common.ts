// Building blocks every rendered workload shares: labels, owner references, the hardened
// security contexts, probes and resources.
import { createHash } from "node:crypto";
import type {
  V1Container,
  V1ContainerPort,
  V1EnvVar,
  V1NetworkPolicyIngressRule,
  V1PodSecurityContext,
  V1Probe,
  V1ResourceRequirements,
  V1SecurityContext,
} from "@kubernetes/client-node";
import type { KubeObject, OwnerReference } from "../../platform/kube/meta.ts";
import { ENV, HEALTH_PORT, LABEL, MANAGED_BY, METRICS_PORT, PART_OF } from "./constants.ts";

/** The custom resource a child belongs to. */
export interface Owner {
  apiVersion: string;
  kind: string;
  metadata: { name?: string; namespace?: string; uid?: string };
}

export function ownerRef(owner: Owner): OwnerReference {
  return {
    apiVersion: owner.apiVersion,
    kind: owner.kind,
    name: owner.metadata.name!,
    uid: owner.metadata.uid!,
    controller: true,
    blockOwnerDeletion: true,
  };
}

/** The labels that select a component's pods: stable for the object's lifetime (selectors are immutable). */
export function selectorLabels(name: string, instance: string, component: string): Record<string, string> {
  return { [LABEL.name]: name, [LABEL.instance]: instance, [LABEL.component]: component };
}

/** Selector labels plus part-of, managed-by and the region/zone labels. */
export function standardLabels(
  selector: Record<string, string>,
  extra: { region: string; zone?: string },
): Record<string, string> {
  return {
    ...selector,
    [LABEL.partOf]: PART_OF,
    [LABEL.managedBy]: MANAGED_BY,
    [LABEL.region]: extra.region,
    ...(extra.zone ? { [LABEL.zone]: extra.zone } : {}),
  };
}

export function child(
  apiVersion: string,
  kind: string,
  name: string,
  owner: Owner,
  labels: Record<string, string>,
  body: Record<string, unknown>,
): KubeObject {
  return {
    apiVersion,
    kind,
    metadata: { name, namespace: owner.metadata.namespace, labels, ownerReferences: [ownerRef(owner)] },
    ...body,
  };
}

/** Non-root, no privilege escalation, seccomp RuntimeDefault: the "restricted" Pod Security Standard. */
export function podSecurityContext(uid: number): V1PodSecurityContext {
  return {
    runAsNonRoot: true,
    runAsUser: uid,
    runAsGroup: uid,
    fsGroup: uid,
    seccompProfile: { type: "RuntimeDefault" },
  };
}

export function containerSecurityContext(): V1SecurityContext {
  return {
    allowPrivilegeEscalation: false,
    readOnlyRootFilesystem: true,
    runAsNonRoot: true,
    capabilities: { drop: ["ALL"] },
  };
}

type Probes = Pick<V1Container, "startupProbe" | "livenessProbe" | "readinessProbe">;

/**
 * Liveness on /healthz, readiness on /readyz, both on the health port, and a startup probe on
 * /healthz that holds liveness off until the process first answers (up to 90 s). Why: Node loads
 * the workload's modules before the ops server listens, which on a node starting a whole Region
 * at once (the main job on two cores) takes far longer than on an idle one, and liveness alone
 * (three misses 10 s apart, from the container's start) would kill a pod that is only slow to
 * boot: one more restart. Once up, a workload answers /healthz while it waits for its stores
 * (workloads/runtime/startup.ts; /readyz says "starting" meanwhile), so the budget covers the
 * process start only, never the stores; after it, liveness is as strict as before.
 */
export function workloadProbes(): Probes {
  const probe = (path: string, failureThreshold: number, periodSeconds = 10): V1Probe => ({
    httpGet: { path, port: HEALTH_PORT },
    periodSeconds,
    timeoutSeconds: 2,
    failureThreshold,
  });
  return {
    startupProbe: probe("/healthz", 45, 2),
    livenessProbe: probe("/healthz", 3),
    readinessProbe: probe("/readyz", 2),
  };
}

/**
 * A TCP probe for third-party images that serve no HTTP health endpoint, with a startup probe
 * of up to 5 minutes: a store's first start (PostgreSQL's initdb, etcd's first snapshot, on a
 * slow volume) can outlast liveness's minute and a kill there leaves a half-made data directory.
 */
export function tcpProbes(port: number): Probes {
  return {
    startupProbe: { tcpSocket: { port }, periodSeconds: 5, failureThreshold: 60 },
    livenessProbe: { tcpSocket: { port }, periodSeconds: 10, failureThreshold: 6 },
    readinessProbe: { tcpSocket: { port }, periodSeconds: 5, failureThreshold: 3 },
  };
}

/** The spec's requests and limits, with defaults for the missing half. */
export function resources(
  spec: { requests?: Record<string, string | number>; limits?: Record<string, string | number> } | undefined,
  defaults: { requests: Record<string, string>; limits: Record<string, string> },
): V1ResourceRequirements {
  const str = (m: Record<string, string | number>) =>
    Object.fromEntries(Object.entries(m).map(([k, v]) => [k, String(v)]));
  return {
    requests: spec?.requests ? str(spec.requests) : defaults.requests,
    limits: spec?.limits ? str(spec.limits) : defaults.limits,
  };
}

/** A short, stable hash of any JSON value (config checksums on pod templates). */
export function hashOf(value: unknown): string {
  return createHash("sha256").update(JSON.stringify(value)).digest("hex").slice(0, 16);
}

/** A NetworkPolicy peer: the pods of one component of one region. */
export function regionPods(region: string, component: string) {
  return {
    podSelector: {
      matchLabels: { [LABEL.partOf]: PART_OF, [LABEL.region]: region, [LABEL.component]: component },
    },
  };
}

/**
 * A PodDisruptionBudget: maxUnavailable rather than minAvailable, so a single replica never
 * blocks a node drain forever, and pods that are not healthy may always be evicted (a
 * crash-looping pod protects nothing and would otherwise hold the drain).
 */
export function podDisruptionBudget(
  name: string,
  owner: Owner,
  labels: Record<string, string>,
  selector: Record<string, string>,
): KubeObject {
  return child("policy/v1", "PodDisruptionBudget", name, owner, labels, {
    spec: {
      maxUnavailable: 1,
      unhealthyPodEvictionPolicy: "AlwaysAllow",
      selector: { matchLabels: selector },
    },
  });
}

/** A NetworkPolicy ingress rule as rendered (client-node's model spells `from` as `_from`). */
export type IngressRule = Omit<V1NetworkPolicyIngressRule, "_from"> & { from?: unknown[] };

/** A NetworkPolicy admitting only `ingress` to the selected pods (nothing else reaches them). */
export function ingressPolicy(
  name: string,
  owner: Owner,
  labels: Record<string, string>,
  selector: Record<string, string>,
  ingress: IngressRule[],
): KubeObject {
  return child("networking.k8s.io/v1", "NetworkPolicy", name, owner, labels, {
    spec: {
      podSelector: { matchLabels: selector },
      policyTypes: ["Ingress"],
      ingress,
    },
  });
}

// ---- what every workload container has (workloads/runtime: the ops server and pod identity) ----

/** The ops server's ports: health (probes) and metrics (scrapes). */
export function observabilityPorts(): V1ContainerPort[] {
  return [
    { name: "health", containerPort: HEALTH_PORT },
    { name: "metrics", containerPort: METRICS_PORT },
  ];
}

/** Health and metrics ports admit any source: kubelet probes come from the node, scrapes from monitoring. */
export function observabilityIngress(): V1NetworkPolicyIngressRule {
  return {
    ports: [
      { port: HEALTH_PORT, protocol: "TCP" },
      { port: METRICS_PORT, protocol: "TCP" },
    ],
  };
}

/** The pod's own name and namespace, from the downward API. */
export function podIdentityEnv(): V1EnvVar[] {
  return [
    { name: ENV.podName, valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
    { name: ENV.podNamespace, valueFrom: { fieldRef: { fieldPath: "metadata.namespace" } } },
  ];
}
