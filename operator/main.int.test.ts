// `hybrid-operator run` as a process: flags parsed by commander, ready once its caches sync,
// and on SIGTERM a graceful exit (code 0) that releases the leader Lease for the next instance.
import { spawn } from "node:child_process";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { type KubeClient, resources } from "../platform/kube/kube.ts";
import type { KubeObject } from "../platform/kube/meta.ts";
import { sleep } from "../platform/time.ts";
import { createNamespace, installCrds, testClient, waitFor } from "../testkit/kube.ts";
import { freePort } from "../testkit/processes.ts";
import { LEASE_NAME } from "./main.ts";

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
    const op = await operatorProcess("proc-op", []);
    try {
      await op.ready();
      expect((await fetch(`http://127.0.0.1:${op.health}/healthz`)).status).toBe(200);
      await op.leading();
      expect(await holder()).toMatch(/^proc-op-/);
      // Every log line is one JSON object.
      for (const line of op.logs.join("").split("\n").filter(Boolean))
        expect(() => JSON.parse(line)).not.toThrow();
    } finally {
      op.child.kill("SIGTERM");
    }
    expect(await op.exited).toBe(0);
    expect(await holder()).toBeUndefined(); // released
    expect(op.logs.join("")).toContain('"msg":"shutting down"');
  });

  it("starts and serves before its shared flag NATS answers, and still stops cleanly", async () => {
    const natsUrl = `nats://127.0.0.1:${await freePort()}`; // nothing listens there
    const op = await operatorProcess("no-nats-op", [`--flags-nats-url=${natsUrl}`]);
    try {
      await op.ready();
      await waitFor(
        async () => op.logs.join("").includes(`waiting for nats at ${natsUrl}:`),
        "a logged wait for NATS",
      );
      expect(op.child.exitCode).toBeNull();
      expect((await fetch(`http://127.0.0.1:${op.health}/healthz`)).status).toBe(200);
    } finally {
      op.child.kill("SIGTERM");
    }
    expect(await op.exited).toBe(0);
  });

  // Fail-over between processes. The follower's retry period is a minute, so only the watch on
  // the Lease can explain a hand-over within seconds of a graceful stop.
  it("hands over at once when the leader stops gracefully, before the follower's next retry", async () => {
    const slow = [
      "--leader-elect-retry-period=60s",
      "--leader-elect-renew-deadline=75s",
      "--leader-elect-lease-duration=90s",
    ];
    const a = await operatorProcess("handover-a", slow);
    await a.leading();
    const b = await operatorProcess("handover-b", slow);
    await b.ready();
    await sleep(1000); // b has tried once and found the lease held: its next try is a minute away
    expect(await holder()).toMatch(/^handover-a-/);
    const stopped = Date.now();
    a.child.kill("SIGTERM");
    expect(await a.exited).toBe(0);
    await waitFor(
      async () => (await holder())?.startsWith("handover-b-"),
      "handover-b holds the lease",
      20_000,
    );
    expect(Date.now() - stopped).toBeLessThan(30_000); // half the retry period: the watch, not the retry
    b.child.kill("SIGTERM");
    expect(await b.exited).toBe(0);
  });

  it("replaces a killed leader once its lease runs out (short timings)", async () => {
    const fast = [
      "--leader-elect-retry-period=500ms",
      "--leader-elect-renew-deadline=2s",
      "--leader-elect-lease-duration=3s",
    ];
    const a = await operatorProcess("killed-a", fast);
    await a.leading();
    const b = await operatorProcess("killed-b", fast);
    await b.ready();
    a.child.kill("SIGKILL"); // no release: b must wait out the lease
    await a.exited;
    await waitFor(
      async () => (await holder())?.startsWith("killed-b-"),
      "killed-b holds the lease",
      3000 + 5000,
    );
    b.child.kill("SIGTERM");
    expect(await b.exited).toBe(0);
  });
});

async function holder(): Promise<string | undefined> {
  const lease = await client.get<KubeObject & { spec?: { holderIdentity?: string } }>(
    resources.lease,
    ns,
    LEASE_NAME,
  );
  return lease?.spec?.holderIdentity || undefined;
}

/** `hybrid-operator run --leader-elect` as a child process, with its probes on free ports. */
async function operatorProcess(name: string, args: string[]) {
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
      ...args,
    ],
    { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, POD_NAME: name } },
  );
  const logs: string[] = [];
  child.stdout.on("data", (d: Buffer) => logs.push(d.toString()));
  child.stderr.on("data", (d: Buffer) => logs.push(d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const metricText = () => fetch(`http://127.0.0.1:${metrics}/metrics`).then((r) => r.text());
  return {
    child,
    exited,
    logs,
    health,
    ready: () => waitFor(async () => (await fetch(`http://127.0.0.1:${health}/readyz`)).ok, `${name} ready`),
    leading: () => waitFor(async () => (await metricText()).includes("hybridp2p_leader 1"), `${name} leads`),
  };
}
