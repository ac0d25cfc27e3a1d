// Steps both reconcilers share: applying the rendered children and judging their readiness.

import { ApiError, resourceFor } from "../../platform/kube/kube.ts";
import type { KubeObject } from "../../platform/kube/meta.ts";
import type { Condition } from "../api/index.ts";
import type { ChildOutcome } from "./children.ts";
import { findCondition, type Phase, REPLICAS_UNAVAILABLE } from "./conditions.ts";
import type { Context } from "./context.ts";

export interface ApplyResult {
  /** Children written this round (their cached status is stale until the watch catches up). */
  written: Set<string>;
  /** Set when the apiserver rejected a child: retrying cannot help until the spec changes. */
  rejected?: Phase;
}

const childId = (o: KubeObject) => `${o.kind}/${o.metadata.name}`;

/** Applies every child that differs from its live state, and deletes the children the owner
 * controls that are no longer rendered (a Region that turns its RO endpoints off, a Zone that
 * drops its PodDisruptionBudget): owner references only collect children when the owner goes.
 * `drift` is true when the owner's spec did not change since the last reconcile, so a
 * difference means someone edited or deleted a child. */
export async function applyChildren(
  ctx: Context,
  owner: KubeObject,
  desired: KubeObject[],
  drift: boolean,
): Promise<ApplyResult> {
  const written = new Set<string>();
  const restored: string[] = [];
  let rejected: Phase | undefined;
  await Promise.all(
    desired.map(async (d) => {
      let outcome: ChildOutcome;
      try {
        outcome = await ctx.applier.apply(d, ctx.live);
      } catch (e) {
        // 400/403/404/422: bad object or missing permission; anything else is transient and retried.
        if (e instanceof ApiError && [400, 403, 404, 422].includes(e.status)) {
          rejected = { phase: "Stalled", reason: "ApplyRejected", message: `${childId(d)}: ${e.message}` };
          return;
        }
        throw e;
      }
      if (outcome === "unchanged") return;
      written.add(childId(d));
      if (drift) restored.push(`${childId(d)} (${outcome === "created" ? "re-created" : "reverted"})`);
    }),
  );
  if (rejected === undefined) await pruneChildren(ctx, owner, desired);
  if (restored.length > 0) {
    ctx.log.info("restored drifted children", {
      owner: `${owner.metadata.namespace}/${owner.metadata.name}`,
      children: restored,
    });
    await ctx.events.record(owner, "Normal", "DriftCorrected", `restored ${restored.sort().join(", ")}`);
  }
  return { written, rejected };
}

/** Deletes what `owner` controls (per the child caches) beyond `desired`. */
async function pruneChildren(ctx: Context, owner: KubeObject, desired: KubeObject[]): Promise<void> {
  const want = new Set(desired.map(childId));
  const stale = ctx.owned(owner).filter((o) => !want.has(childId(o)));
  if (stale.length === 0) return;
  await Promise.all(
    stale.map(async (o) => {
      await ctx.client.delete(resourceFor(o.apiVersion, o.kind), o.metadata.namespace, o.metadata.name);
      ctx.applier.forget(o);
    }),
  );
  const names = stale.map(childId).sort();
  ctx.log.info("deleted children no longer rendered", {
    owner: `${owner.metadata.namespace}/${owner.metadata.name}`,
    children: names,
  });
  await ctx.events.record(owner, "Normal", "Pruned", `deleted ${names.join(", ")} (no longer rendered)`);
}

interface WorkloadStatus {
  replicas?: number;
  readyReplicas?: number;
  availableReplicas?: number;
  observedGeneration?: number;
}

/** Deployments and StatefulSets that are not yet fully available, as "name (ready/wanted)". */
export function notReady(ctx: Context, desired: KubeObject[], written: Set<string>): string[] {
  const out: string[] = [];
  for (const d of desired) {
    if (d.kind !== "Deployment" && d.kind !== "StatefulSet") continue;
    const want = (d.spec as { replicas?: number }).replicas ?? 1;
    const live = ctx.live(d);
    const st = (live?.status ?? {}) as WorkloadStatus;
    const have = (d.kind === "Deployment" ? st.availableReplicas : st.readyReplicas) ?? 0;
    const current = live !== undefined && (st.observedGeneration ?? 0) >= (live.metadata.generation ?? 1);
    if (written.has(childId(d)) || !current || have < want) out.push(`${d.metadata.name} (${have}/${want})`);
  }
  return out;
}

/**
 * The phase while some workloads are not available: a loss (pods gone from workloads that were
 * all available at this generation, e.g. a pod evicted or killed) reads differently from a rollout
 * in progress, so the Zone's or Region's status says what happened. It stays a loss until the
 * workloads are back or the spec changes.
 */
export function waitingPhase(
  obj: { metadata: { generation?: number }; status?: { conditions?: Condition[] } },
  waiting: string[],
  written: Set<string>,
): Phase {
  const ready = findCondition(obj.status?.conditions, "Ready");
  const sameGeneration = ready?.observedGeneration === obj.metadata.generation;
  const lost =
    written.size === 0 &&
    sameGeneration &&
    (ready?.status === "True" || ready?.reason === REPLICAS_UNAVAILABLE);
  return lost
    ? {
        phase: "Reconciling",
        reason: REPLICAS_UNAVAILABLE,
        message: `replicas lost, waiting for ${waiting.join(", ")}`,
      }
    : { phase: "Reconciling", reason: "Progressing", message: `waiting for ${waiting.join(", ")}` };
}
