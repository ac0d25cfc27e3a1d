// Writing a custom resource's status: only the fields this controller owns, only when they
// changed, through the status subresource; Events when Ready or Stalled flip (Ready to False
// only for a loss of replicas: a rollout's Reconciling is expected).

import type { KubeClient, ResourceType } from "../../platform/kube/kube.ts";
import type { KubeObject } from "../../platform/kube/meta.ts";
import type { Condition } from "../api/index.ts";
import { isSubset } from "./children.ts";
import { type DesiredCondition, findCondition, mergeConditions, REPLICAS_UNAVAILABLE } from "./conditions.ts";
import type { EventRecorder } from "./events.ts";

export interface StatusUpdate {
  /** Fields besides conditions this controller owns (merge-patched; others' fields are left alone). */
  fields: Record<string, unknown>;
  conditions: DesiredCondition[];
}

export interface WithStatus extends KubeObject {
  status?: { observedGeneration?: number; conditions?: Condition[]; [k: string]: unknown };
}

/** Returns true when a write was needed. */
export async function writeStatus(
  client: KubeClient,
  events: EventRecorder,
  rt: ResourceType,
  obj: WithStatus,
  update: StatusUpdate,
): Promise<boolean> {
  const generation = obj.metadata.generation ?? 0;
  const old = obj.status ?? {};
  const conditions = mergeConditions(old.conditions, update.conditions, generation, new Date());
  const next: Record<string, unknown> = { ...update.fields, observedGeneration: generation, conditions };
  // Compare as a subset: fields other writers added inside ours (e.g. replicas.applied) are theirs.
  const unchanged = Object.entries(next).every(([k, v]) =>
    v === undefined ? old[k] === undefined : isSubset(v, old[k]),
  );
  if (unchanged) return false;
  // A field we no longer set is removed (null deletes in a merge patch).
  const patch = Object.fromEntries(Object.entries(next).map(([k, v]) => [k, v === undefined ? null : v]));
  await client.patchStatus(rt, obj.metadata.namespace!, obj.metadata.name, patch);
  await transitionEvents(events, obj, old.conditions, conditions);
  return true;
}

async function transitionEvents(
  events: EventRecorder,
  obj: KubeObject,
  before: readonly Condition[] | undefined,
  after: readonly Condition[],
): Promise<void> {
  const flipped = (type: string, to: string) =>
    findCondition(after, type)?.status === to && findCondition(before, type)?.status !== to;
  const stalled = findCondition(after, "Stalled");
  if (stalled && flipped("Stalled", "True"))
    await events.record(obj, "Warning", stalled.reason, stalled.message);
  else if (flipped("Stalled", "False") && findCondition(before, "Stalled")) {
    await events.record(obj, "Normal", "Recovered", "no longer stalled");
  }
  const ready = findCondition(after, "Ready");
  if (ready && flipped("Ready", "True")) await events.record(obj, "Normal", "Ready", ready.message);
  // Ready lost without a spec change (pods evicted or killed): say so once, as it happens.
  else if (ready?.reason === REPLICAS_UNAVAILABLE && flipped("Ready", "False"))
    await events.record(obj, "Warning", ready.reason, ready.message);
}
