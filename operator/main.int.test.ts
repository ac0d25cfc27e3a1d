// `hybrid-operator run` as a process: flags parsed by commander, ready once its caches sync,
// and on SIGTERM a graceful exit (code 0) that releases the leader Lease for the next instance.
import { spawn } from "node:child_process";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createNamespace, installCrds, testClient, waitFor } from "../testkit/kube.ts";
import { freePort } from "../testkit/processes.ts";
import type { KubeObject } from "./api/meta.ts";
import { LEASE_NAME } from "./main.ts";
import { type KubeClient, resources } from "./runtime/kube.ts";

const env = inject("localEnv");
const ns = "main-int";
const repoRoot = new URL("..", import.meta.url).pathname;
let client: KubeClient;

beforeAll(async () => {
  client = await testClient(env.kubeconfig!);
  await installCrds(client);
  await createNamespace(client, ns);
});

afterAll(() => client?.close());

describe("hybrid-operator run", () => {
  it("serves probes and metrics, leads, and on SIGTERM exits 0 after releasing the lease", async () => {
    const [health, metrics] = [await freePort(), await freePort()];
    const child = spawn(
      join(repoRoot, "node_modules/.bin/node"),
      [
        join(repoRoot, "operator/main.ts"),
        "run",
        `--kubeconfig=${env.kubeconfig}`,
        `--namespace=${ns}`,
        "--leader-elect",
        `--health-probe-bind-address=127.0.0.1:${health}`,
        `--metrics-bind-address=127.0.0.1:${metrics}`,
        "--flags-etcd-endpoints=",
      ],
      { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, POD_NAME: "proc-op" } },
    );
    const logs: string[] = [];
    child.stdout.on("data", (d: Buffer) => logs.push(d.toString()));
    child.stderr.on("data", (d: Buffer) => logs.push(d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    try {
      await waitFor(async () => (await fetch(`http://127.0.0.1:${health}/readyz`)).ok, "readyz");
      expect((await fetch(`http://127.0.0.1:${health}/healthz`)).status).toBe(200);
      await waitFor(
        async () =>
          (await (await fetch(`http://127.0.0.1:${metrics}/metrics`)).text()).includes("hybridp2p_leader 1"),
        "leading",
      );
      const held = await client.get<KubeObject & { spec: { holderIdentity?: string } }>(
        resources.lease,
        ns,
        LEASE_NAME,
      );
      expect(held?.spec.holderIdentity).toMatch(/^proc-op-/);
      // Every log line is one JSON object.
      for (const line of logs.join("").split("\n").filter(Boolean))
        expect(() => JSON.parse(line)).not.toThrow();
    } finally {
      child.kill("SIGTERM");
    }
    expect(await exited).toBe(0);
    const released = await client.get<KubeObject & { spec: { holderIdentity?: string } }>(
      resources.lease,
      ns,
      LEASE_NAME,
    );
    expect(released?.spec.holderIdentity ?? "").toBe("");
    expect(logs.join("")).toContain('"msg":"shutting down"');
  });
});
