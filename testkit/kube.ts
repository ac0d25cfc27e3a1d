// Helpers for integration tests against the local kube-apiserver: a client, CRD install,
// a namespace per test file, and waiting for conditions (never for wall-clock thresholds).
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { KubeConfig } from "@kubernetes/client-node";
import { parseAllDocuments } from "yaml";
import { KubeClient, resources } from "../platform/kube/kube.ts";
import type { KubeObject } from "../platform/kube/meta.ts";
import { pollUntil } from "../platform/time.ts";

const repoRoot = new URL("..", import.meta.url).pathname;

export async function testClient(kubeconfig: string): Promise<KubeClient> {
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  return new KubeClient(kc).init();
}

interface Crd extends KubeObject {
  status?: { conditions?: Array<{ type: string; status: string }> };
}

/** Server-side applies crds/*.yaml and waits until every CRD is Established. */
export async function installCrds(client: KubeClient): Promise<void> {
  const dir = join(repoRoot, "crds");
  const names: string[] = [];
  for (const file of readdirSync(dir).filter((f) => f.endsWith(".yaml"))) {
    for (const doc of parseAllDocuments(readFileSync(join(dir, file), "utf8"))) {
      const obj = doc.toJS() as KubeObject | null;
      if (!obj) continue;
      await client.apply(obj);
      names.push(obj.metadata.name);
    }
  }
  await waitFor(async () => {
    for (const name of names) {
      const crd = await client.get<Crd>(resources.crd, undefined, name);
      if (!crd?.status?.conditions?.some((c) => c.type === "Established" && c.status === "True"))
        return false;
    }
    return true;
  }, "CRDs established");
}

export async function createNamespace(client: KubeClient, name: string): Promise<void> {
  await client.apply({ apiVersion: "v1", kind: "Namespace", metadata: { name } });
}

/**
 * Deletes a test namespace and the workloads in it. The workloads go first and explicitly: the
 * integration apiserver is shared by test files run one after another, and a namespace that
 * still holds workloads lingers in Terminating (there are no controllers to remove their pods).
 */
export async function deleteNamespace(client: KubeClient, name: string): Promise<void> {
  for (const path of [
    `/apis/apps/v1/namespaces/${name}/deployments`,
    `/apis/apps/v1/namespaces/${name}/statefulsets`,
    `/apis/apps/v1/namespaces/${name}/replicasets`,
    `/api/v1/namespaces/${name}/pods`,
  ])
    await client.request("DELETE", path).catch(() => {});
  await client.request("DELETE", `/api/v1/namespaces/${name}`).catch(() => {});
}

/** Polls until `fn` returns a truthy value and returns it; fails with `what` after the timeout. */
export function waitFor<T>(
  fn: () => Promise<T> | T,
  what: string,
  timeoutMs = 30_000,
): Promise<NonNullable<T>> {
  return pollUntil(what, async () => (await fn()) || undefined, timeoutMs, 100) as Promise<NonNullable<T>>;
}
