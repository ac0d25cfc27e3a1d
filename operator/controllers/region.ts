// Region reconcile: check the Secrets the Region names, make the ones it needs generated (once),
// apply the children, apply the managed etcd's roles once it answers, report status.

import type { ReconcileResult } from "../../platform/kube/controller.ts";
import { splitKey } from "../../platform/kube/informer.ts";
import { ApiError, resources } from "../../platform/kube/kube.ts";
import type { KubeObject } from "../../platform/kube/meta.ts";
import { COMPONENTS } from "../render/constants.ts";
import { componentName, renderRegion } from "../render/region.ts";
import type { StoreSecrets } from "../render/stores.ts";
import { isExternal, referencedSecrets, storeServiceName, storeSpec } from "../render/stores.ts";
import { type DesiredCondition, type Phase, phaseConditions } from "./conditions.ts";
import { type Context, type RegionObject, regionResource } from "./context.ts";
import { applyChildren, notReady, waitingPhase } from "./reconcile.ts";
import {
  createConfigSecrets,
  ensureRegionSecrets,
  type RegionSecrets,
  storeSecrets,
  UnusableSecretError,
} from "./secrets.ts";
import { writeStatus } from "./status.ts";

/** How soon a Region whose managed etcd has no roles yet looks again. */
export const ETCD_AUTH_RETRY_MS = 5_000;

/** How often a Region stalled on a missing Secret looks again (Secrets are not watched:
 * watching every Secret of the cluster would cost more than this poll). */
export const SECRET_POLL_MS = 5_000;

export async function reconcileRegion(ctx: Context, key: string): Promise<ReconcileResult | undefined> {
  const { namespace, name } = splitKey(key);
  const region = ctx.regions.get(namespace, name);
  if (!region || region.metadata.deletionTimestamp) return undefined; // children go with it (owner references)

  const missing: string[] = [];
  for (const s of referencedSecrets(region)) {
    if (!(await ctx.client.get(resources.secret, namespace, s.name)))
      missing.push(`Secret "${s.name}" (${s.store})`);
  }
  if (missing.length > 0) {
    const message = `${missing.join(", ")} not found in namespace "${namespace}"`;
    await writeStatus(ctx.client, ctx.events, regionResource, region, {
      fields: {},
      conditions: phaseConditions({ phase: "Stalled", reason: "SecretNotFound", message }),
    });
    return { requeueAfterMs: SECRET_POLL_MS };
  }

  let secrets: RegionSecrets;
  try {
    secrets = await ensureRegionSecrets(ctx.secrets, region);
  } catch (e) {
    // A Secret the operator would have to change, or may not create (RBAC): only a person can help.
    if (!(e instanceof UnusableSecretError || (e instanceof ApiError && [403, 422].includes(e.status))))
      throw e;
    await writeStatus(ctx.client, ctx.events, regionResource, region, {
      fields: {},
      conditions: phaseConditions({
        phase: "Stalled",
        reason: "SecretUnusable",
        message: e.message.slice(0, 1024),
      }),
    });
    return { requeueAfterMs: SECRET_POLL_MS };
  }
  if (secrets.created.length > 0) {
    // Names only: the values are never logged.
    ctx.log.info("generated secrets", { region: key, secrets: secrets.created });
    await ctx.events.record(
      region,
      "Normal",
      "SecretsGenerated",
      `generated ${secrets.created.join(", ")}`.slice(0, 1024),
    );
  }

  const all = rendered(region, storeSecrets(region, secrets));
  // Configuration Secrets are created once under a content-named name, never applied (the
  // operator may not update Secrets); everything else is applied and kept in step.
  await createConfigSecrets(
    ctx.secrets,
    all.filter((o) => o.kind === "Secret"),
  );
  const desired = all.filter((o) => o.kind !== "Secret");
  const drift = region.status?.observedGeneration === region.metadata.generation;
  const { written, rejected } = await applyChildren(ctx, region, desired, drift);
  const waiting = notReady(ctx, desired, written);
  let retryAfterMs: number | undefined;
  if (!isExternal(storeSpec(region, "etcd"))) {
    const etcd = ctx.live({
      apiVersion: "apps/v1",
      kind: "StatefulSet",
      metadata: { name: storeServiceName(region.metadata.name, "etcd"), namespace },
    });
    try {
      if (!(await ctx.etcdAuth.ensure(region, etcd, secrets, ctx.storeEndpoint(region, "etcd"))))
        waiting.push("etcd roles (etcd not ready)");
    } catch (e) {
      waiting.push(`etcd roles (${String((e as Error).message ?? e).slice(0, 200)})`);
      retryAfterMs = ETCD_AUTH_RETRY_MS;
    }
  }
  const phase: Phase =
    rejected ??
    (waiting.length > 0
      ? waitingPhase(region, waiting, written)
      : { phase: "Ready", reason: "Available", message: "all workloads and data stores are available" });

  const zones = zoneCounts(ctx, region);
  const store = ctx.flagStoreHealth?.(key);
  const inFallback = zones.fallback > 0 ? `${zones.fallback} of ${zones.total} zones in fallback` : "";
  const conditions: DesiredCondition[] = [
    ...phaseConditions(phase),
    store?.ok === false
      ? {
          type: "Degraded",
          status: "True",
          reason: "FlagStoreUnavailable",
          // The zones keep their last flags (and fall back after the workloads' grace period).
          message:
            `${store.message}; P2P toggles do not reach this Region${inFallback ? `; ${inFallback}` : ""}`.slice(
              0,
              1024,
            ),
        }
      : zones.fallback > 0
        ? { type: "Degraded", status: "True", reason: "ZonesInFallback", message: inFallback }
        : { type: "Degraded", status: "False", reason: "NoZoneInFallback", message: "" },
  ];
  await writeStatus(ctx.client, ctx.events, regionResource, region, {
    fields: { zones, gatewayEndpoint: gatewayEndpoint(ctx, region) },
    conditions,
  });
  return retryAfterMs === undefined ? undefined : { requeueAfterMs: retryAfterMs };
}

function zoneCounts(ctx: Context, region: RegionObject) {
  const counts = { total: 0, p2p: 0, server: 0, fallback: 0, mixed: 0 };
  for (const z of ctx.zones.list(region.metadata.namespace)) {
    if (z.spec.regionRef.name !== region.metadata.name) continue;
    counts.total++;
    const mode = z.status?.mode;
    if (mode === "P2P") counts.p2p++;
    else if (mode === "Server") counts.server++;
    else if (mode === "Fallback") counts.fallback++;
    else if (mode === "Mixed") counts.mixed++;
  }
  return counts;
}

/** Where clients connect: the load balancer's address once it has one, else the Service's DNS name. */
function gatewayEndpoint(ctx: Context, region: RegionObject): string | undefined {
  const name = componentName(region.metadata.name, COMPONENTS[0]);
  const svc = ctx.live({
    apiVersion: "v1",
    kind: "Service",
    metadata: { name, namespace: region.metadata.namespace },
  });
  if (!svc) return undefined;
  const spec = svc.spec as { ports?: Array<{ port: number }> };
  const port = spec.ports?.[0]?.port;
  const ingress = (svc.status as { loadBalancer?: { ingress?: Array<{ ip?: string; hostname?: string }> } })
    ?.loadBalancer?.ingress?.[0];
  const host = ingress?.ip ?? ingress?.hostname ?? `${name}.${region.metadata.namespace}.svc`;
  return port === undefined ? undefined : `${host}:${port}`;
}

// Render once per Region version and generated credentials (see the Zone controller's cache).
const renders = new WeakMap<RegionObject, { secrets: string; children: KubeObject[] }>();
function rendered(region: RegionObject, secrets: StoreSecrets): KubeObject[] {
  const key = JSON.stringify(secrets);
  let r = renders.get(region);
  if (r?.secrets !== key) {
    r = { secrets: key, children: renderRegion(region, secrets) };
    renders.set(region, r);
  }
  return r.children;
}
