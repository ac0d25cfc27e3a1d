// npm run bench:operator — how fast the operator turns Zones into running children, against
// the API server's floor: a plain client creating the same objects (each Zone, its children,
// its status) with the same concurrency, in the same run on the same machine. Starts its own
// etcd + kube-apiserver and runs the operator as a separate process (`hybrid-operator run`),
// so its RSS and its write requests are its own.
//
//   RESULT operator zones=N seconds=S floor_seconds=F ratio=R rss_mb=M idle_writes_per_min=W
//
// Options (environment): BENCH_SIZES (default "100,1000"), BENCH_REGIONS (default 10),
// BENCH_CONCURRENCY (default 16), BENCH_IDLE_SECONDS (quiet period measured, default 30),
// BENCH_ROUNDS (alternating floor/operator rounds per size, best of each; default 2),
// BENCH_OPERATOR_NODE_ARGS (extra node flags for the operator process, e.g. --cpu-prof).
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { API_VERSION } from "../operator/api/index.ts";
import {
  type RegionObject,
  regionResource,
  type ZoneObject,
  zoneResource,
} from "../operator/controllers/context.ts";
import { OPERATOR_NODE_FLAGS } from "../operator/main.ts";
import { renderRegion } from "../operator/render/region.ts";
import { renderZone } from "../operator/render/zone.ts";
import type { KubeClient } from "../platform/kube/kube.ts";
import { resources } from "../platform/kube/kube.ts";
import type { KubeObject } from "../platform/kube/meta.ts";
import { sleep } from "../platform/time.ts";
import { createNamespace, installCrds, testClient, waitFor } from "../testkit/kube.ts";
import { startLocalEnv, storeCredentialEnv } from "../testkit/local/services.ts";
import { usePrivateTmp } from "../testkit/private-tmp.ts";
import { freePort } from "../testkit/processes.ts";

usePrivateTmp("bench"); // its temp files (and its children's) are removed at exit

const sizes = (process.env.BENCH_SIZES ?? "100,1000").split(",").map(Number);
const regionCount = Number(process.env.BENCH_REGIONS ?? 10);
const concurrency = Number(process.env.BENCH_CONCURRENCY ?? 16);
const idleSeconds = Number(process.env.BENCH_IDLE_SECONDS ?? 30);
const rounds = Number(process.env.BENCH_ROUNDS ?? 2);
const repoRoot = new URL("..", import.meta.url).pathname;

function log(msg: string): void {
  process.stderr.write(`[bench:operator] ${msg}\n`);
}

async function pool<T>(items: T[], n: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: n }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

const regionObj = (ns: string, name: string): KubeObject => ({
  apiVersion: API_VERSION,
  kind: "Region",
  metadata: { name, namespace: ns },
  spec: {},
});

const zoneObj = (ns: string, name: string, region: string): KubeObject => ({
  apiVersion: API_VERSION,
  kind: "Zone",
  metadata: { name, namespace: ns },
  spec: { regionRef: { name: region }, maps: [{ name: "prt_fild08", type: "Field" }] },
});

function plan(zones: number): Array<{ zone: string; region: string }> {
  return Array.from({ length: zones }, (_, i) => ({ zone: `z${i}`, region: `r${i % regionCount}` }));
}

/** Creates everything as the operator would, with a plain client: the apiserver's floor. */
async function floor(client: KubeClient, ns: string, zones: number): Promise<number> {
  await createNamespace(client, ns);
  const regions = new Map<string, RegionObject>();
  for (let r = 0; r < regionCount; r++) {
    const region = await client.apply<RegionObject>(regionObj(ns, `r${r}`));
    regions.set(region.metadata.name, region);
    await Promise.all(renderRegion(region).map((c) => client.apply(c)));
  }
  const t0 = performance.now();
  await pool(plan(zones), concurrency, async ({ zone, region }) => {
    const z = await client.apply<ZoneObject>(zoneObj(ns, zone, region));
    await Promise.all(renderZone(z, regions.get(region)!).map((c) => client.apply(c)));
    await client.patchStatus(zoneResource, ns, zone, {
      observedGeneration: z.metadata.generation,
      conditions: [
        {
          type: "Ready",
          status: "False",
          reason: "Progressing",
          message: "",
          lastTransitionTime: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
        },
      ],
    });
  });
  return (performance.now() - t0) / 1000;
}

interface Operator {
  child: ChildProcess;
  metricsPort: number;
  stop(): Promise<void>;
}

async function startOperatorProcess(kubeconfig: string, ns: string): Promise<Operator> {
  const metricsPort = await freePort();
  const node = join(repoRoot, "node_modules/.bin/node");
  const child = spawn(
    node,
    [
      ...OPERATOR_NODE_FLAGS,
      ...(process.env.BENCH_OPERATOR_NODE_ARGS?.split(" ").filter(Boolean) ?? []),
      join(repoRoot, "operator/main.ts"),
      "run",
      `--kubeconfig=${kubeconfig}`,
      `--namespace=${ns}`,
      `--metrics-bind-address=127.0.0.1:${metricsPort}`,
      "--health-probe-bind-address=0",
      "--flags-etcd-endpoints=", // the flag plane has its own benchmark (bench:flags)
      `--concurrency=${concurrency}`,
      // A resync inside the idle window: it must find nothing to do.
      `--resync-period=${Math.max(5, Math.floor(idleSeconds / 2))}`,
    ],
    { stdio: ["ignore", "ignore", "inherit"], env: { ...process.env, LOG_LEVEL: "error" } },
  );
  await waitFor(
    async () => (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).ok,
    "operator metrics endpoint",
  );
  return {
    child,
    metricsPort,
    stop: () =>
      new Promise((resolve) => {
        child.once("exit", () => resolve());
        child.kill("SIGTERM");
      }),
  };
}

/** Peak resident set of a process, from /proc (Linux). */
function rssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? /VmRSS:\s+(\d+)/.exec(status)?.[1]);
  return kb / 1024;
}

async function writes(op: Operator): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${op.metricsPort}/metrics`)).text();
  return text
    .split("\n")
    .filter((l) => l.startsWith("hybridp2p_kube_api_writes_total{") && !l.includes('resource="leases"'))
    .reduce((sum, l) => sum + Number(l.split(" ").pop()), 0);
}

async function allConverged(client: KubeClient, ns: string, zones: number): Promise<boolean> {
  // Zones first: the children are listed only once every status is current (light polling).
  const zs = await client.list<ZoneObject & { status?: { observedGeneration?: number } }>(zoneResource, ns);
  if (zs.items.length < zones) return false;
  if (!zs.items.every((z) => z.status?.observedGeneration === z.metadata.generation)) return false;
  const [sts, svc, pdb, np] = await Promise.all([
    client.list(resources.statefulSet, ns),
    client.list(resources.service, ns),
    client.list(resources.pdb, ns),
    client.list(resources.networkPolicy, ns),
  ]);
  const names = (l: { items: KubeObject[] }) => new Set(l.items.map((o) => o.metadata.name));
  const [s1, s2, s3, s4] = [names(sts), names(svc), names(pdb), names(np)];
  return zs.items.every((z) => {
    const n = `${z.metadata.name}-map-server`;
    return s1.has(n) && s2.has(n) && s3.has(n) && s4.has(n);
  });
}

async function operatorRun(client: KubeClient, kubeconfig: string, ns: string, zones: number) {
  await createNamespace(client, ns);
  const op = await startOperatorProcess(kubeconfig, ns);
  try {
    for (let r = 0; r < regionCount; r++) await client.apply(regionObj(ns, `r${r}`));
    await waitFor(
      async () => {
        const list = await client.list<RegionObject>(regionResource, ns);
        return (
          list.items.length === regionCount &&
          list.items.every((r) => r.status?.observedGeneration === r.metadata.generation)
        );
      },
      "regions reconciled",
      120_000,
    );
    const t0 = performance.now();
    await pool(plan(zones), concurrency, async ({ zone, region }) => {
      await client.apply(zoneObj(ns, zone, region));
    });
    await waitFor(() => allConverged(client, ns, zones), "every zone converged", 600_000);
    const seconds = (performance.now() - t0) / 1000;
    // Quiet when idle: let trailing events settle, then count writes over the idle window.
    await sleep(3000);
    const w0 = await writes(op);
    await sleep(idleSeconds * 1000);
    const idle = ((await writes(op)) - w0) * (60 / idleSeconds);
    const text = await (await fetch(`http://127.0.0.1:${op.metricsPort}/metrics`)).text();
    for (const l of text.split("\n")) {
      if (
        /^(hybridp2p_(reconcile_total|kube_api_writes_total|reconcile_duration_seconds_(sum|count))|process_resident_memory_bytes|nodejs_heap_size_(used|total)_bytes|nodejs_external_memory_bytes)/.test(
          l,
        )
      )
        log(l);
    }
    return { seconds, rss: rssMb(op.child.pid!), idle };
  } finally {
    await op.stop();
  }
}

async function main(): Promise<void> {
  log("starting etcd + kube-apiserver");
  const { env, stop } = await startLocalEnv({ services: ["kube"], log });
  // The stores run with auth and TLS: this process and its children take their credentials.
  Object.assign(process.env, storeCredentialEnv(env));
  try {
    const client = await testClient(env.kubeconfig!);
    await installCrds(client);
    for (const n of sizes) {
      // Alternating rounds, best of each: other load on the machine hits both sides alike.
      let floorSeconds = Number.POSITIVE_INFINITY;
      let r = { seconds: Number.POSITIVE_INFINITY, rss: 0, idle: 0 };
      for (let round = 0; round < rounds; round++) {
        log(`floor: ${n} zones (round ${round + 1})`);
        floorSeconds = Math.min(floorSeconds, await floor(client, `bench-floor-${n}-${round}`, n));
        log(`operator: ${n} zones (round ${round + 1})`);
        const run = await operatorRun(client, env.kubeconfig!, `bench-op-${n}-${round}`, n);
        r = {
          seconds: Math.min(r.seconds, run.seconds),
          rss: Math.max(r.rss, run.rss),
          idle: Math.max(r.idle, run.idle),
        };
        log(
          `round ${round + 1}: operator ${run.seconds.toFixed(2)} s, floor so far ${floorSeconds.toFixed(2)} s`,
        );
      }
      const ratio = r.seconds / floorSeconds;
      console.log(
        `RESULT operator zones=${n} seconds=${r.seconds.toFixed(2)} floor_seconds=${floorSeconds.toFixed(2)} ratio=${ratio.toFixed(2)} rss_mb=${r.rss.toFixed(0)} idle_writes_per_min=${r.idle.toFixed(0)}`,
      );
    }
    client.close();
  } finally {
    await stop();
  }
}

await main();
