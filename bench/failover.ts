// npm run bench:failover — how long the operator is without a leader when the leading instance
// stops gracefully (SIGTERM: it releases the Lease, the follower's watch sees it) or is killed
// (SIGKILL: the follower waits out the lease duration), with the default leader-election timings
// and with short ones. Two `hybrid-operator run --leader-elect` processes against its own etcd +
// kube-apiserver; time from the signal to the follower holding the Lease. The floor is one Lease
// write-and-read on the same API server: no hand-over can be faster.
//
//   RESULT failover timings=T stop=graceful|kill runs=N p50_s=.. max_s=.. floor_ms=..
//
// Options (environment): BENCH_RUNS (per scenario, default 3).
import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { LEASE_NAME } from "../operator/main.ts";
import type { KubeClient } from "../platform/kube/kube.ts";
import { resources } from "../platform/kube/kube.ts";
import type { KubeObject } from "../platform/kube/meta.ts";
import { pollUntil } from "../platform/time.ts";
import { createNamespace, installCrds, testClient } from "../testkit/kube.ts";
import { startLocalEnv, storeCredentialEnv } from "../testkit/local/services.ts";
import { usePrivateTmp } from "../testkit/private-tmp.ts";
import { freePort } from "../testkit/processes.ts";

usePrivateTmp("bench"); // its temp files (and its children's) are removed at exit

const runs = Number(process.env.BENCH_RUNS ?? 3);
const repoRoot = new URL("..", import.meta.url).pathname;
const ns = "failover-bench";
const TIMINGS = {
  default: [] as string[],
  short: [
    "--leader-elect-lease-duration=3s",
    "--leader-elect-renew-deadline=2s",
    "--leader-elect-retry-period=500ms",
  ],
};

type Lease = KubeObject & { spec?: { holderIdentity?: string } };
const log = (msg: string) => process.stderr.write(`[bench:failover] ${msg}\n`);

function operator(kubeconfig: string, name: string, args: string[], metricsPort: number): ChildProcess {
  return spawn(
    join(repoRoot, "node_modules/.bin/node"),
    [
      join(repoRoot, "operator/main.ts"),
      "run",
      `--kubeconfig=${kubeconfig}`,
      `--namespace=${ns}`,
      "--leader-elect",
      "--health-probe-bind-address=0",
      `--metrics-bind-address=127.0.0.1:${metricsPort}`,
      "--flags-etcd-endpoints=",
      ...args,
    ],
    { stdio: "ignore", env: { ...process.env, POD_NAME: name } },
  );
}

const holder = async (client: KubeClient) =>
  (await client.get<Lease>(resources.lease, ns, LEASE_NAME))?.spec?.holderIdentity ?? "";

const exited = (p: ChildProcess) =>
  p.exitCode !== null || p.signalCode !== null
    ? Promise.resolve()
    : new Promise<void>((resolve) => p.once("exit", () => resolve()));

/** Seconds from signalling the leader to the follower holding the Lease. */
async function failover(client: KubeClient, kubeconfig: string, args: string[], signal: NodeJS.Signals) {
  const [ma, mb] = [await freePort(), await freePort()];
  const a = operator(kubeconfig, "bench-a", args, ma);
  let b: ChildProcess | undefined;
  try {
    await pollUntil("bench-a leads", async () => (await holder(client)).startsWith("bench-a-"), 60_000, 20);
    b = operator(kubeconfig, "bench-b", args, mb);
    // b is up (its metrics answer) and has seen the Lease held: it follows.
    await pollUntil(
      "bench-b follows",
      async () => (await fetch(`http://127.0.0.1:${mb}/metrics`)).ok,
      60_000,
      50,
    );
    const t0 = performance.now();
    a.kill(signal);
    await pollUntil("bench-b leads", async () => (await holder(client)).startsWith("bench-b-"), 120_000, 10);
    return (performance.now() - t0) / 1000;
  } finally {
    a.kill("SIGKILL");
    b?.kill("SIGTERM");
    await Promise.all([exited(a), b ? exited(b) : undefined]);
  }
}

async function floorMs(client: KubeClient): Promise<number> {
  const samples: number[] = [];
  for (let i = 0; i < 20; i++) {
    const t0 = performance.now();
    const lease = await client.get<Lease>(resources.lease, ns, LEASE_NAME);
    await client.replace({ ...lease!, spec: { ...lease!.spec, holderIdentity: "" } });
    await client.get<Lease>(resources.lease, ns, LEASE_NAME);
    samples.push(performance.now() - t0);
  }
  return samples.sort((x, y) => x - y)[10]!;
}

const percentile = (xs: number[], p: number) =>
  [...xs].sort((x, y) => x - y)[Math.floor((xs.length - 1) * p)]!;

const { env, stop } = await startLocalEnv({ services: ["kube"], log });

// The stores run with auth and TLS: this process and its children take their credentials.

Object.assign(process.env, storeCredentialEnv(env));
try {
  const client = await testClient(env.kubeconfig!);
  await installCrds(client); // the operator syncs its caches of Regions and Zones before it campaigns
  await createNamespace(client, ns);
  await client.create({
    apiVersion: "coordination.k8s.io/v1",
    kind: "Lease",
    metadata: { name: LEASE_NAME, namespace: ns },
    spec: {},
  });
  const floor = await floorMs(client);
  for (const [timings, args] of Object.entries(TIMINGS)) {
    for (const [stopKind, signal] of [
      ["graceful", "SIGTERM"],
      ["kill", "SIGKILL"],
    ] as const) {
      const seconds: number[] = [];
      for (let i = 0; i < runs; i++) {
        seconds.push(await failover(client, env.kubeconfig!, args, signal));
        log(`${timings} ${stopKind} run ${i + 1}/${runs}: ${seconds.at(-1)!.toFixed(2)} s`);
      }
      console.log(
        `RESULT failover timings=${timings} stop=${stopKind} runs=${runs} p50_s=${percentile(seconds, 0.5).toFixed(2)} max_s=${Math.max(...seconds).toFixed(2)} floor_ms=${floor.toFixed(1)}`,
      );
    }
  }
  client.close();
} finally {
  await stop();
}
