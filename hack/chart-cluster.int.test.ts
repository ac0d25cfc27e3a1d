// The chart on the local cluster that runs pods: `helm install --wait` brings up two operator
// replicas from the operator image (pods on the local node, in-cluster config through the
// kubernetes Service), both Ready, one of them holding the leader Lease; uninstalling stops them.
// The cluster is this file's own: a real node needs an API server that pods can reach.
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LEASE_NAME } from "../operator/main.ts";
import { KubeClient } from "../platform/kube/kube.ts";
import { computeStatus, type KObject } from "../testkit/kstatus.ts";
import {
  binDir,
  buildImages,
  type LocalEnv,
  type Running,
  startLocalEnv,
} from "../testkit/local/services.ts";

const repoRoot = new URL("..", import.meta.url).pathname;
const NS = "chart-cluster-int";
const RELEASE = "hp";
let running: Running | undefined;
let env: LocalEnv;
let client: KubeClient;

const helm = (args: string[]) =>
  execFileSync(join(binDir(), "helm"), [...args, "--kubeconfig", env.kubeconfig!], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
  });

beforeAll(async () => {
  running = await startLocalEnv({
    services: ["kube", "cluster"],
    images: buildImages(["build-images.sh", "operator"]),
  });
  env = running.env;
  const kc = new KubeConfig();
  kc.loadFromFile(env.kubeconfig!);
  client = await new KubeClient(kc).init();
}, 600_000);

afterAll(async () => {
  client?.close();
  await running?.stop();
}, 120_000);

describe("the chart on the local cluster", () => {
  it("runs two operator replicas, Ready, one of them the leader", async () => {
    helm([
      "install",
      RELEASE,
      join(repoRoot, "charts/hybrid-p2p"),
      "-n",
      NS,
      "--create-namespace",
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
      `/api/v1/namespaces/${NS}/pods?labelSelector=${encodeURIComponent(`app.kubernetes.io/name=hybrid-operator,app.kubernetes.io/instance=${RELEASE}`)}`, // the operator's, not the orchestrator's
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
