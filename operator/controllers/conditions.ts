// metav1.Conditions the way kstatus and Argo CD read them: Ready, Reconciling and Stalled
// always present and mutually consistent, Degraded where a controller has something to say.
// lastTransitionTime moves only when a condition's status changes, so an unchanged state
// yields an identical status and no write.
import type { Condition } from "../api/index.ts";

export type Phase =
  | { phase: "Ready"; reason: string; message: string }
  | { phase: "Reconciling"; reason: string; message: string }
  | { phase: "Stalled"; reason: string; message: string };

/** Ready's reason when workloads that were available lost replicas (reconcile.ts waitingPhase). */
export const REPLICAS_UNAVAILABLE = "ReplicasUnavailable";

export type DesiredCondition = Omit<Condition, "lastTransitionTime" | "observedGeneration">;

export function phaseConditions(p: Phase): DesiredCondition[] {
  const is = (phase: Phase["phase"]) => (p.phase === phase ? "True" : "False");
  return [
    { type: "Ready", status: is("Ready"), reason: p.reason, message: p.message },
    {
      type: "Reconciling",
      status: is("Reconciling"),
      reason: p.reason,
      message: p.phase === "Reconciling" ? p.message : "",
    },
    {
      type: "Stalled",
      status: is("Stalled"),
      reason: p.reason,
      message: p.phase === "Stalled" ? p.message : "",
    },
  ];
}

/** Merges desired conditions into the current ones, keeping transition times of unchanged statuses
 * and conditions of other types (another writer's) untouched. */
export function mergeConditions(
  current: readonly Condition[] | undefined,
  desired: readonly DesiredCondition[],
  generation: number,
  now: Date,
): Condition[] {
  const out: Condition[] = [];
  const byType = new Map((current ?? []).map((c) => [c.type, c]));
  for (const d of desired) {
    const old = byType.get(d.type);
    byType.delete(d.type);
    out.push({
      ...d,
      observedGeneration: generation,
      lastTransitionTime: old && old.status === d.status ? old.lastTransitionTime : metaTime(now),
    });
  }
  return [...out, ...byType.values()];
}

/** metav1.Time has second precision: a finer value would never compare equal after a round trip. */
export function metaTime(d: Date): string {
  return d.toISOString().replace(/\.\d+Z$/, "Z");
}

export function findCondition(conds: readonly Condition[] | undefined, type: string): Condition | undefined {
  return conds?.find((c) => c.type === type);
}
