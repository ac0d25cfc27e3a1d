// The world the flag-plane scenarios (operator-kill, flag-store) run over: one Region on the
// local flag etcd and NATS (External stores), `count` field Zones, and a P2PPolicy over them.
import { API_VERSION } from "../operator/api/index.ts";
import type { KubeClient } from "../platform/kube/kube.ts";
import type { KubeObject } from "../platform/kube/meta.ts";
import type { LocalEnv } from "../testkit/local/services.ts";

export const REGION = "chaos";
export const POLICY = "fields";

/** Creates the Region and the Zones (25 at a time); returns the zones' names. */
export async function createChaosRegion(
  kube: KubeClient,
  env: LocalEnv,
  namespace: string,
  count: number,
): Promise<string[]> {
  await kube.create({
    apiVersion: API_VERSION,
    kind: "Region",
    metadata: { name: REGION, namespace },
    spec: {
      dataStores: {
        etcd: { mode: "External", external: { endpoints: [env.etcdEndpoints!] } },
        nats: { mode: "External", external: { endpoints: [env.natsUrl!] } },
      },
    },
  } as KubeObject);
  const names = Array.from({ length: count }, (_, i) => `z${String(i).padStart(4, "0")}`);
  for (let i = 0; i < names.length; i += 25)
    await Promise.all(
      names.slice(i, i + 25).map((name) =>
        kube.create({
          apiVersion: API_VERSION,
          kind: "Zone",
          metadata: { name, namespace, labels: { tier: "field" } },
          spec: { regionRef: { name: REGION }, maps: [{ name, type: "Field" }], mapServer: { replicas: 1 } },
        } as KubeObject),
      ),
    );
  return names;
}

/** Creates the policy over every chaos zone. */
export function createChaosPolicy(
  kube: KubeClient,
  namespace: string,
  spec: { enabled: boolean; recovery?: Record<string, unknown> },
): Promise<unknown> {
  return kube.create({
    apiVersion: API_VERSION,
    kind: "P2PPolicy",
    metadata: { name: POLICY, namespace },
    spec: { zoneSelector: { matchLabels: { tier: "field" } }, ...spec },
  } as KubeObject);
}

/** Merge-patches the policy's spec (what `kubectl patch` would do). */
export function patchChaosPolicy(
  kube: KubeClient,
  namespace: string,
  spec: Record<string, unknown>,
): Promise<unknown> {
  return kube.request("PATCH", `/apis/${API_VERSION}/namespaces/${namespace}/p2ppolicies/${POLICY}`, {
    body: { spec },
    contentType: "application/merge-patch+json",
  });
}
