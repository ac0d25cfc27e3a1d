// The chart on the local cluster that runs pods: `helm install --wait` brings up two operator
// replicas from the operator image (podman pods, in-cluster config through the node agent),
// both Ready, one of them holding the leader Lease; uninstalling stops them.
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { LEASE_NAME } from "../operator/main.ts";
import { KubeClient } from "../operator/runtime/kube.ts";
import { computeStatus, type KObject } from "../testkit/kstatus.ts";
import { binDir, startCluster } from "../testkit/local/services.ts";
import type { Proc } from "../testkit/processes.ts";

const env = inject("localEnv");
const repoRoot = new URL("..", import.meta.url).pathname;
const NS = "chart-cluster-int";
const RELEASE = "hp";
let procs: Proc[] = [];
let client: KubeClient;

const helm = (args: string[]) =>
  execFileSync(join(binDir(), "helm"), [...args, "--kubeconfig", env.kubeconfig!], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
  });

beforeAll(async () => {
  execFileSync("bash", [join(repoRoot, "hack/build-images.sh"), "operator"], { stdio: "ignore" });
  procs = (await startCluster(env, { nodeName: "chart-cluster-int", runtime: "podman" })).procs;
  const kc = new KubeConfig();
  kc.loadFromFile(env.kubeconfig!);
  client = await new KubeClient(kc).init();
}, 600_000);

afterAll(async () => {
  for (const p of procs.reverse()) await p.stop();
  await client?.request("DELETE", "/api/v1/nodes/chart-cluster-int").catch(() => {});
  client?.close();
});

describe("the chart on the local cluster", () => {
  it("runs two operator replicas, Ready, one of them the leader", async () => {
    // crds.install=false: other test files on this apiserver may own the CRDs; apply them as they do.
    execFileSync(join(binDir(), "kubectl"), [
      "--kubeconfig",
      env.kubeconfig!,
      "apply",
      "--server-side",
      "-f",
      join(repoRoot, "crds"),
    ]);
    helm([
      "install",
      RELEASE,
      join(repoRoot, "charts/hybrid-p2p"),
      "-n",
      NS,
      "--create-namespace",
      "--set",
      "crds.install=false",
      "--set",
      "replicas=2",
      "--wait",
      "--timeout",
      "150s",
    ]);
    const dep = await client.request<KObject>(
      "GET",
      `/apis/apps/v1/namespaces/${NS}/deployments/${RELEASE}-hybrid-p2p`,
    );
    expect(computeStatus(dep)).toMatchObject({ status: "Current" });
    const pods = await client.request<{ items: { metadata: { name: string } }[] }>(
      "GET",
      `/api/v1/namespaces/${NS}/pods?labelSelector=app.kubernetes.io%2Finstance%3D${RELEASE}`,
    );
    expect(pods.items).toHaveLength(2);
    const lease = await waitFor(async () => {
      const l = await client.request<{ spec?: { holderIdentity?: string } }>(
        "GET",
        `/apis/coordination.k8s.io/v1/namespaces/${NS}/leases/${LEASE_NAME}`,
      );
      return l.spec?.holderIdentity ? l : undefined;
    });
    // The identity is "<pod name>-<pid>".
    expect(pods.items.map((p) => p.metadata.name)).toContain(
      lease.spec!.holderIdentity!.replace(/-\d+$/, ""),
    );
  }, 240_000);

  it("uninstalls cleanly", async () => {
    helm(["uninstall", RELEASE, "-n", NS, "--wait", "--timeout", "60s"]);
    const pods = await waitFor(async () => {
      const l = await client.request<{ items: unknown[] }>("GET", `/api/v1/namespaces/${NS}/pods`);
      return l.items.length === 0 ? l : undefined;
    });
    expect(pods.items).toEqual([]);
  }, 120_000);
});

async function waitFor<T>(probe: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 250));
  }
}
