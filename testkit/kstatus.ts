// kstatus (sigs.k8s.io/cli-utils/pkg/kstatus/status), the rules Flux and kpt use to decide
// whether an applied object is reconciled, for the kinds the e2e suite waits on: custom
// resources by the generic rules, Deployments and StatefulSets by kstatus' built-in rules.
// A pure TypeScript port rather than the Go library: the e2e suite calls it in-process on
// every poll, with no Go toolchain or subprocess, and the rules are this short.

export type KStatus = "InProgress" | "Failed" | "Current" | "Terminating" | "NotFound" | "Unknown";

export interface KResult {
  status: KStatus;
  message: string;
}

interface Condition {
  type: string;
  status: string;
  reason?: string;
  message?: string;
}

export interface KObject {
  apiVersion?: string;
  kind?: string;
  metadata?: { generation?: number; deletionTimestamp?: string; name?: string };
  spec?: Record<string, unknown>;
  status?: Record<string, unknown>;
}

const num = (v: unknown): number | undefined => (typeof v === "number" ? v : undefined);

function conditions(obj: KObject): Condition[] {
  const c = obj.status?.conditions;
  return Array.isArray(c) ? (c as Condition[]) : [];
}

/** kstatus' Compute: the generic rules first, then the kind's own rules, else Current. */
export function computeStatus(obj: KObject | undefined): KResult {
  if (obj === undefined) return { status: "NotFound", message: "Resource not found" };
  if (obj.metadata?.deletionTimestamp)
    return { status: "Terminating", message: "Resource scheduled for deletion" };
  const generation = num(obj.metadata?.generation);
  const observed = num(obj.status?.observedGeneration);
  // Only when status has the field: kstatus cannot check generations a kind does not report.
  if (generation !== undefined && observed !== undefined && observed !== generation) {
    return {
      status: "InProgress",
      message: `${obj.kind} generation is ${generation}, but latest observed generation is ${observed}`,
    };
  }
  for (const c of conditions(obj)) {
    if (c.type === "Reconciling" && c.status === "True")
      return { status: "InProgress", message: c.message ?? "" };
    if (c.type === "Stalled" && c.status === "True") return { status: "Failed", message: c.message ?? "" };
  }
  const group = obj.apiVersion?.split("/")[0];
  if (group === "apps" && obj.kind === "Deployment") return deployment(obj, generation);
  if (group === "apps" && obj.kind === "StatefulSet") return statefulSet(obj, generation);
  // No known condition says otherwise: kstatus takes the object as current.
  return { status: "Current", message: "Resource is current" };
}

function needsObservedGeneration(obj: KObject, generation: number | undefined): KResult | undefined {
  const observed = num(obj.status?.observedGeneration);
  if (generation !== undefined && observed === undefined) {
    return { status: "InProgress", message: "Waiting for the controller to observe the object" };
  }
  return undefined;
}

function deployment(obj: KObject, generation: number | undefined): KResult {
  const wait = needsObservedGeneration(obj, generation);
  if (wait) return wait;
  const s = obj.status ?? {};
  const spec = num(obj.spec?.replicas) ?? 1;
  const replicas = num(s.replicas) ?? 0;
  const updated = num(s.updatedReplicas) ?? 0;
  const ready = num(s.readyReplicas) ?? 0;
  const available = num(s.availableReplicas) ?? 0;
  let progressing = false;
  let isAvailable = false;
  for (const c of conditions(obj)) {
    if (c.type === "Progressing" && c.reason === "ProgressDeadlineExceeded") {
      return { status: "Failed", message: "Progress deadline exceeded" };
    }
    if (c.type === "Progressing" && c.status === "True" && c.reason === "NewReplicaSetAvailable")
      progressing = true;
    if (c.type === "Available" && c.status === "True") isAvailable = true;
  }
  const inProgress = (message: string): KResult => ({ status: "InProgress", message });
  if (spec > replicas) return inProgress(`Replicas: ${replicas}/${spec}`);
  if (spec > updated) return inProgress(`Updated: ${updated}/${spec}`);
  if (replicas > spec) return inProgress(`Pending termination: ${replicas - spec}`);
  if (updated > available) return inProgress(`Available: ${available}/${updated}`);
  if (spec > ready) return inProgress(`Ready: ${ready}/${spec}`);
  if (!progressing) return inProgress("ReplicaSet not Available");
  if (!isAvailable) return inProgress("Deployment not Available");
  return { status: "Current", message: `Deployment is available. Replicas: ${replicas}` };
}

function statefulSet(obj: KObject, generation: number | undefined): KResult {
  const strategy = obj.spec?.updateStrategy as
    | { type?: string; rollingUpdate?: { partition?: number } }
    | undefined;
  // OnDelete: the user rolls the pods, so there is nothing to wait for.
  if (strategy?.type === "OnDelete") return { status: "Current", message: "StatefulSet uses OnDelete" };
  const wait = needsObservedGeneration(obj, generation);
  if (wait) return wait;
  const s = obj.status ?? {};
  const spec = num(obj.spec?.replicas) ?? 1;
  const replicas = num(s.replicas) ?? 0;
  const ready = num(s.readyReplicas) ?? 0;
  const current = num(s.currentReplicas) ?? 0;
  const updated = num(s.updatedReplicas) ?? 0;
  const partition = num(strategy?.rollingUpdate?.partition);
  const inProgress = (message: string): KResult => ({ status: "InProgress", message });
  if (spec > replicas) return inProgress(`Replicas: ${replicas}/${spec}`);
  if (spec > ready) return inProgress(`Ready: ${ready}/${spec}`);
  if (replicas > spec) return inProgress(`Pending termination: ${replicas - spec}`);
  if (partition !== undefined) {
    if (updated < spec - partition) return inProgress(`Updated: ${updated}/${spec - partition}`);
    return { status: "Current", message: `Partitioned roll out complete. Updated: ${updated}` };
  }
  if (spec > current) return inProgress(`Current: ${current}/${spec}`);
  if (s.currentRevision !== s.updateRevision) {
    return inProgress(
      `Waiting for updated revision ${s.updateRevision} to match current ${s.currentRevision}`,
    );
  }
  return { status: "Current", message: `All replicas scheduled as expected. Replicas: ${spec}` };
}
