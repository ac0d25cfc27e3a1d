#!/usr/bin/env node
// npm run bench:flags — the flag plane end to end: the time from a P2PPolicy write to the API
// server until the operator has received every simulated map-server replica's ack of the new
// epoch (its report on the Region's NATS), for 10, 100 and 1000 zones with 10 pods each; how long
// Zone and P2PPolicy status take to follow; and two Regions, each with its own flag store,
// toggled by one policy edit. The floor is etcd put to watch delivery for one key.
//
// The operator's flag plane runs in this process, publishing to each Region's own store (External
// stores pointing at the etcd and NATS this bench starts). The simulated pods run in BENCH_PROCS
// child processes (default 4, contiguous blocks of zones, each with BENCH_CONNECTIONS etcd
// connections and one NATS connection): this machine has 2 cores, and 4 event loops keep both
// busy with pod work while no single loop's queue stands for 10,000 pods.
//
//   RESULT flags zones=N clients=C p50_ms=.. p99_ms=.. floor_p99_ms=.. ratio=..
//   RESULT flags-status zones=N seconds=.. max_seconds=..
//   RESULT flags-regions regions=2 zones=N clients=C p50_ms=.. p99_ms=.. epochs=..
//
//   BENCH_SIZES=10,100,1000 BENCH_TOGGLES=30 BENCH_WARMUP=1 BENCH_CLIENTS=10 BENCH_REGIONS_ZONES=1000 npm run bench:flags
//   BENCH_VERBOSE=1 (per-toggle phases and CPU per component), BENCH_PROFILE_DIR=<dir> (CPU
//   profiles of the pod processes, and the operator's from each policy write to its last ack).
import { randomUUID } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { Session } from "node:inspector/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CustomObjectsApi, KubeConfig } from "@kubernetes/client-node";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Etcd3 } from "etcd3";
import { GROUP, VERSION } from "../operator/api/constants.ts";
import type { PublishResult } from "../operator/flags/publisher.ts";
import { FlagClient } from "../platform/flags/client.ts";
import { connectFlagStore } from "../platform/flags/etcd.ts";
import type { PodReport } from "../platform/flags/layout.ts";
import type { KubeClient } from "../platform/kube/kube.ts";
import { createLogger } from "../platform/log.ts";
import { connectNats, requireStoreAccess } from "../platform/stores/access.ts";
import { sleep } from "../platform/time.ts";
import { startFlagPlane, startTestEtcd, type TestFlagPlane } from "../testkit/flags.ts";
import { createNamespace, installCrds, testClient } from "../testkit/kube.ts";
import { startLocalEnv, storeCredentialEnv, storePki } from "../testkit/local/services.ts";
import { usePrivateTmp } from "../testkit/private-tmp.ts";
import { type Child, serve, spawnChild } from "./children.ts";

usePrivateTmp("bench"); // its temp files (and its children's) are removed at exit

const sizes = (process.env.BENCH_SIZES ?? "10,100,1000").split(",").map(Number);
const toggles = Number(process.env.BENCH_TOGGLES ?? 30);
// Toggles run first and not counted: the first publish after start-up pays for compiling the
// code paths (JIT) and warming connections, once in an operator's life, not per toggle. Their
// times are printed, so what is left out is seen.
const warmups = Number(process.env.BENCH_WARMUP ?? 1);
/** Whether toggle `t` (warm-ups count from -warmups) turns P2P on: the policy starts disabled. */
const enablesP2P = (t: number) => (t + warmups) % 2 === 0;
const printWarmups = (warm: number[]) => {
  if (warm.length > 0)
    console.log(`warm-up toggles (not counted): ${warm.map((x) => x.toFixed(0)).join(", ")} ms`);
};
const perZone = Number(process.env.BENCH_CLIENTS ?? 10);
const procs = Number(process.env.BENCH_PROCS ?? 4);
const connections = Number(process.env.BENCH_CONNECTIONS ?? 2);
const regionsZones = Number(process.env.BENCH_REGIONS_ZONES ?? 1000);
const verbose = process.env.BENCH_VERBOSE === "1";
const quiet = {
  error: (m: string, f?: Record<string, unknown>) => console.error(m, JSON.stringify(f ?? {})),
  warn: () => {},
  info: () => {},
};

/** Wall-clock milliseconds with sub-millisecond precision, comparable across processes. */
const now = () => performance.timeOrigin + performance.now();

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}

// ---- the pod processes ----------------------------------------------------------------------

interface PodsInit {
  /** Per zone block: the etcd of the zones' Region. */
  endpoints: string;
  natsUrl: string;
  prefix: string;
  namespace: string;
  zones: string[];
  perZone: number;
  connections: number;
}

/** One toggle as a pod process saw it (absolute times, ms). */
interface PodsToggle {
  firstApplied: number;
  lastApplied: number;
  /** When the last report was handed to NATS. */
  lastSent: number;
  cpuMs: number;
}

async function podsMain(): Promise<void> {
  let clients: FlagClient[] = [];
  let conns: Etcd3[] = [];
  let nc: NatsConnection | undefined;
  let target = Number.POSITIVE_INFINITY;
  let pending = 0;
  let done: (() => void) | undefined;
  let firstApplied = 0;
  let lastApplied = 0;
  let lastSent = 0;
  const applied = new Set<FlagClient>();
  let waitAll: Promise<PodsToggle> = Promise.resolve({
    firstApplied: 0,
    lastApplied: 0,
    lastSent: 0,
    cpuMs: 0,
  });
  const handlers: Record<string, (arg: unknown) => Promise<unknown>> = {
    async init(arg) {
      const o = arg as PodsInit;
      conns = Array.from({ length: o.connections }, () =>
        connectFlagStore(requireStoreAccess("etcd", o.endpoints)),
      );
      nc = await connectNats(requireStoreAccess("nats", o.natsUrl), { name: "bench-pods" });
      for (const [zi, zone] of o.zones.entries()) {
        for (let r = 0; r < o.perZone; r++) {
          const c = new FlagClient({
            // The replicas of one zone share a connection, as pods in one process would.
            client: conns[zi % conns.length]!,
            nats: nc,
            prefix: o.prefix,
            namespace: o.namespace,
            zone,
            service: "map-server",
            pod: `${zone}-${r}`,
            log: quiet,
          });
          c.on("state", (st) => {
            if (st.epoch < target || applied.has(c)) return;
            applied.add(c);
            const t = now();
            if (firstApplied === 0) firstApplied = t;
            lastApplied = Math.max(lastApplied, t);
          });
          c.on("reported", (rep) => {
            if (rep.epoch < target) return;
            lastSent = Math.max(lastSent, now());
            if (--pending === 0) done?.();
          });
          clients.push(c);
        }
      }
      for (let i = 0; i < clients.length; i += 200)
        await Promise.all(clients.slice(i, i + 200).map((c) => c.start()));
      return clients.length;
    },
    async epoch() {
      return Math.min(...clients.map((c) => c.current().epoch));
    },
    async arm(arg) {
      target = arg as number;
      applied.clear();
      firstApplied = lastApplied = lastSent = 0;
      pending = clients.length;
      const cpu0 = process.cpuUsage();
      const all = new Promise<void>((r) => {
        done = r;
      });
      // Answered at once; the result comes with `wait`.
      waitAll = all.then(() => {
        const cpu = process.cpuUsage(cpu0);
        return { firstApplied, lastApplied, lastSent, cpuMs: (cpu.user + cpu.system) / 1000 };
      });
      return true;
    },
    async wait() {
      return await waitAll;
    },
    async close() {
      for (let i = 0; i < clients.length; i += 500)
        await Promise.all(clients.slice(i, i + 500).map((c) => c.close()));
      for (const c of conns) c.close();
      await nc?.close();
      clients = [];
      conns = [];
      return true;
    },
  };
  serve((cmd, arg) => handlers[cmd]?.(arg));
}

const spawnPods = (): Child =>
  spawnChild(new URL(import.meta.url).pathname, "pods", process.env.BENCH_PROFILE_DIR);

// ---- CPU of the other processes ---------------------------------------------------------------

/** utime + stime (ms) of every process whose command line contains `needle` and `name`. */
function cpuOf(name: string, needle: string): number {
  const tick = 1000 / 100; // USER_HZ
  let total = 0;
  for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8");
      if (!cmd.includes(needle) || !cmd.split("\0")[0]!.endsWith(name)) continue;
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      total += (Number(f[11]) + Number(f[12])) * tick;
    } catch {
      // gone meanwhile
    }
  }
  return total;
}

async function floor(etcd: Etcd3, n: number): Promise<number[]> {
  const key = `/bench-floor/${randomUUID()}`;
  const w = await etcd.watch().key(key).create();
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const got = new Promise<void>((r) => w.once("put", () => r()));
    const t0 = performance.now();
    await etcd.put(key).value(String(i));
    await got;
    out.push(performance.now() - t0);
  }
  await w.cancel();
  return out;
}

/** With BENCH_PROFILE_DIR: the operator's CPU profile over a window (this process: the flag plane). */
const operatorProfile = (() => {
  const dir = process.env.BENCH_PROFILE_DIR;
  if (!dir) return undefined;
  const session = new Session();
  session.connect();
  return {
    async start() {
      await session.post("Profiler.enable");
      await session.post("Profiler.start");
    },
    async stop(name: string) {
      const { profile } = await session.post("Profiler.stop");
      writeFileSync(join(dir, `${name}.cpuprofile`), JSON.stringify(profile));
    },
  };
})();

/** Acks (reports of at least the target epoch) as they reach the operator, per pod. */
class AckCounter {
  private target = Number.POSITIVE_INFINITY;
  /** Pods that acked, by namespace: a pod's name is unique in its namespace, and keying by the
   * parsed strings spares building an id per report (it showed in the operator's profile). */
  private acked = new Map<string, Set<string>>();
  private count = 0;
  private want = 0;
  private done: (() => void) | undefined;
  last = 0;

  onReport = (r: PodReport): void => {
    if (r.epoch < this.target || r.zone === undefined) return;
    let pods = this.acked.get(r.namespace);
    if (pods === undefined) {
      pods = new Set();
      this.acked.set(r.namespace, pods);
    }
    if (pods.has(r.pod)) return;
    pods.add(r.pod);
    this.count++;
    this.last = now();
    if (this.count === this.want) this.done?.();
  };

  /** Resolves once `want` pods have acked `target` (or a later epoch). */
  arm(target: number, want: number): Promise<void> {
    this.target = target;
    this.acked = new Map();
    this.count = 0;
    this.want = want;
    this.last = 0;
    return new Promise((r) => {
      this.done = r;
    });
  }
}

interface Setup {
  api: CustomObjectsApi;
  /** Kept-alive connections (the policy writes, the status polls). */
  kube: KubeClient;
  kubeconfig: string;
  stateDir: string;
  natsUrl: string;
  children: Child[];
  floorP99: number;
}

const region = (ns: string, name: string, etcd: string, nats: string) => ({
  apiVersion: `${GROUP}/${VERSION}`,
  kind: "Region",
  metadata: { name, namespace: ns },
  // Its own stores, as External ones the bench reaches: the flag plane publishes and listens there.
  spec: {
    dataStores: {
      etcd: { mode: "External", external: { endpoints: [etcd] } },
      nats: { mode: "External", external: { endpoints: [nats] } },
    },
  },
});

/** Creates the namespace, Regions (each on its etcd), zones and a policy (P2P off). */
async function world(
  s: Setup,
  ns: string,
  regions: { name: string; etcd: string; zones: string[] }[],
): Promise<(plural: string, body: object) => Promise<unknown>> {
  const client = await testClient(s.kubeconfig);
  await createNamespace(client, ns);
  client.close();
  const create = (plural: string, body: object) =>
    s.api.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural, body });
  for (const r of regions) {
    await create("regions", region(ns, r.name, r.etcd, s.natsUrl));
    for (let i = 0; i < r.zones.length; i += 50) {
      await Promise.all(
        r.zones.slice(i, i + 50).map((name) =>
          create("zones", {
            apiVersion: `${GROUP}/${VERSION}`,
            kind: "Zone",
            metadata: { name, namespace: ns, labels: { tier: "field" } },
            spec: {
              regionRef: { name: r.name },
              maps: [{ name, type: "Field" }],
              mapServer: { replicas: perZone },
            },
          }),
        ),
      );
    }
  }
  await create("p2ppolicies", {
    apiVersion: `${GROUP}/${VERSION}`,
    kind: "P2PPolicy",
    metadata: { name: "fields", namespace: ns },
    spec: { zoneSelector: { matchLabels: { tier: "field" } }, enabled: false },
  });
  return create;
}

/** Spreads zones over the pod processes (contiguous blocks) and starts their pods. */
async function startPods(
  s: Setup,
  ns: string,
  prefix: string,
  blocks: { etcd: string; zones: string[] }[],
): Promise<{ used: Child[]; clients: number }> {
  const parts: { etcd: string; zones: string[] }[] = [];
  const per = Math.ceil(blocks.reduce((n, b) => n + b.zones.length, 0) / s.children.length);
  for (const b of blocks)
    for (let i = 0; i < b.zones.length; i += per)
      parts.push({ etcd: b.etcd, zones: b.zones.slice(i, i + per) });
  const used = s.children.slice(0, parts.length);
  const counts = await Promise.all(
    used.map((c, i) =>
      c.call<number>("init", {
        endpoints: parts[i]!.etcd,
        natsUrl: s.natsUrl,
        prefix,
        namespace: ns,
        zones: parts[i]!.zones,
        perZone,
        connections,
      } satisfies PodsInit),
    ),
  );
  return { used, clients: counts.reduce((a, b) => a + b, 0) };
}

/** The policy write, as a controller or GitOps agent makes it: on a kept-alive connection. */
async function togglePolicy(s: Setup, ns: string, enabled: boolean): Promise<number> {
  const res = await s.kube.request<{ metadata: { generation: number } }>(
    "PATCH",
    `/apis/${GROUP}/${VERSION}/namespaces/${ns}/p2ppolicies/fields`,
    { body: { spec: { enabled } }, contentType: "application/merge-patch+json" },
  );
  return res.metadata.generation;
}

interface Obj {
  metadata: { name: string; generation?: number };
  spec?: { mapServer?: { replicas?: number } };
  status?: {
    mode?: string;
    replicas?: { applied?: number };
    observedGeneration?: number;
    conditions?: { type: string; status: string }[];
  };
}

/** Seconds from `t0` until the policy is Ready at `generation` and every Zone shows `mode` with all replicas applied. */
async function statusConverged(
  s: Setup,
  ns: string,
  generation: number,
  mode: string,
  t0: number,
): Promise<number> {
  const get = (plural: string, name?: string) =>
    s.kube.request<unknown>(
      "GET",
      `/apis/${GROUP}/${VERSION}/namespaces/${ns}/${plural}${name ? `/${name}` : ""}`,
    );
  for (;;) {
    const p = (await get("p2ppolicies", "fields")) as Obj;
    const ready = p.status?.conditions?.find((c) => c.type === "Ready")?.status === "True";
    if (ready && p.status?.observedGeneration === generation) break;
    if (now() - t0 > 120_000) throw new Error("policy status did not follow");
    await sleep(100);
  }
  for (;;) {
    const zones = ((await get("zones")) as { items: Obj[] }).items;
    if (
      zones.every(
        (z) => z.status?.mode === mode && z.status.replicas?.applied === (z.spec?.mapServer?.replicas ?? 1),
      )
    )
      return (now() - t0) / 1000;
    if (now() - t0 > 120_000) throw new Error("zone status did not follow");
    await sleep(200);
  }
}

async function waitEpoch(used: Child[], epoch: () => number): Promise<void> {
  for (;;) {
    const e = epoch();
    const at = await Promise.all(used.map((c) => c.call<number>("epoch")));
    if (e > 0 && at.every((x) => x >= e)) return;
    await sleep(50);
  }
}

/** One size: N zones in one Region, toggled `toggles` times. */
async function benchSize(s: Setup, zonesN: number, etcdEndpoint: string): Promise<void> {
  const ns = `bench-flags-${zonesN}`;
  const prefix = `/bench-${randomUUID()}/`;
  const names = Array.from({ length: zonesN }, (_, i) => `z${String(i).padStart(4, "0")}`);
  await world(s, ns, [{ name: "r1", etcd: etcdEndpoint, zones: names }]);
  const acks = new AckCounter();
  let published: (PublishResult & { at: number }) | undefined;
  const plane = await startFlagPlane({
    kubeconfig: s.kubeconfig,
    identity: "bench-op",
    prefix,
    namespace: ns,
    log: createLogger("bench-flags", { level: "error" }),
    onPublish: (r) => {
      if (r.published) published = { ...r, at: now() };
    },
    onReport: acks.onReport,
  });
  const { used, clients } = await startPods(s, ns, prefix, [{ etcd: etcdEndpoint, zones: names }]);
  await waitEpoch(used, () => plane.lastPublish()?.epoch ?? 0);
  const samples: number[] = [];
  const statusS: number[] = [];
  const phases: string[] = [];
  const warm: number[] = [];
  for (let t = -warmups; t < toggles; t++) {
    const counted = t >= 0;
    const before = plane.lastPublish()!.epoch;
    await Promise.all(used.map((c) => c.call("arm", before + 1)));
    const podsDone = Promise.all(used.map((c) => c.call<PodsToggle>("wait")));
    const acked = acks.arm(before + 1, clients);
    const cpu0 = {
      op: process.cpuUsage(),
      etcd: cpuOf("etcd", s.stateDir),
      kube: cpuOf("kube-apiserver", s.stateDir),
      nats: cpuOf("nats-server", s.stateDir),
    };
    await operatorProfile?.start();
    const t0 = now();
    const enable = enablesP2P(t);
    const generation = await togglePolicy(s, ns, enable);
    const tPatched = now();
    await acked;
    const end = acks.last;
    await operatorProfile?.stop(`operator-${zonesN}-${t}`);
    (counted ? samples : warm).push(end - t0);
    const r = await podsDone;
    const cpu = {
      op: process.cpuUsage(cpu0.op),
      etcd: cpuOf("etcd", s.stateDir) - cpu0.etcd,
      kube: cpuOf("kube-apiserver", s.stateDir) - cpu0.kube,
      nats: cpuOf("nats-server", s.stateDir) - cpu0.nats,
    };
    // Status follows the acks (coalesced per zone); the next toggle waits for it.
    const statusSeconds = await statusConverged(s, ns, generation, enable ? "P2P" : "Server", t0);
    if (counted) statusS.push(statusSeconds);
    if (verbose) {
      const p = published!;
      const ms = (x: number) => (x - t0).toFixed(0);
      const tm = p.timings;
      phases.push(
        [
          `patch ${ms(tPatched)}`,
          `published ${ms(p.at)} (compile ${tm?.compileMs?.toFixed(0)}, docs ${tm?.documentsMs.toFixed(0)}, write ${tm?.writeMs.toFixed(0)} in ${p.chunks} txns, flip ${tm?.flipMs.toFixed(0)})`,
          `applied ${ms(Math.min(...r.map((x) => x.firstApplied)))}..${ms(Math.max(...r.map((x) => x.lastApplied)))}`,
          `sent ${ms(Math.max(...r.map((x) => x.lastSent)))}`,
          `acked ${ms(end)}`,
          `status ${statusSeconds.toFixed(2)} s${counted ? "" : " (warm-up)"}`,
          `cpu ms to acked: operator ${((cpu.op.user + cpu.op.system) / 1000).toFixed(0)} etcd ${cpu.etcd.toFixed(0)} kube-apiserver ${cpu.kube.toFixed(0)} nats ${cpu.nats.toFixed(0)} pods ${r.map((x) => x.cpuMs.toFixed(0)).join("+")}`,
        ].join(" | "),
      );
    }
  }
  const p99 = pct(samples, 99);
  printWarmups(warm);
  console.log(
    `RESULT flags zones=${zonesN} clients=${clients} p50_ms=${pct(samples, 50).toFixed(1)} p99_ms=${p99.toFixed(1)} floor_p99_ms=${s.floorP99.toFixed(2)} ratio=${(p99 / s.floorP99).toFixed(1)}`,
  );
  console.log(
    `RESULT flags-status zones=${zonesN} seconds=${pct(statusS, 50).toFixed(2)} max_seconds=${Math.max(...statusS).toFixed(2)}`,
  );
  if (verbose) for (const line of phases) console.error(`  ${line}`);
  await Promise.all(used.map((c) => c.call("close")));
  await plane.stop();
}

/** Two Regions in one namespace, each with its own flag store, toggled by one policy edit. */
async function benchRegions(s: Setup, stores: [string, string]): Promise<void> {
  const ns = "bench-flags-regions";
  const prefix = `/bench-${randomUUID()}/`;
  const half = Math.ceil(regionsZones / 2);
  const regions = (["east", "west"] as const).map((name, i) => ({
    name,
    etcd: stores[i]!,
    zones: Array.from({ length: half }, (_, z) => `${name}-${String(z).padStart(4, "0")}`),
  }));
  await world(s, ns, regions);
  const acks = new AckCounter();
  const plane: TestFlagPlane = await startFlagPlane({
    kubeconfig: s.kubeconfig,
    identity: "bench-op",
    prefix,
    namespace: ns,
    log: createLogger("bench-flags", { level: "error" }),
    onReport: acks.onReport,
  });
  const { used, clients } = await startPods(s, ns, prefix, regions);
  const epochOf = (r: string) => plane.lastPublish(`${ns}/${r}`)?.epoch ?? 0;
  await waitEpoch(used, () => Math.min(epochOf("east"), epochOf("west")));
  const samples: number[] = [];
  const warm: number[] = [];
  for (let t = -warmups; t < toggles; t++) {
    // Each store counts its own epochs; both are at the same one here (same history), so one target.
    const target = Math.max(epochOf("east"), epochOf("west")) + 1;
    await Promise.all(used.map((c) => c.call("arm", target)));
    const podsDone = Promise.all(used.map((c) => c.call<PodsToggle>("wait")));
    const acked = acks.arm(target, clients);
    const t0 = now();
    const enable = enablesP2P(t);
    const generation = await togglePolicy(s, ns, enable);
    await acked;
    (t >= 0 ? samples : warm).push(acks.last - t0);
    await podsDone;
    await statusConverged(s, ns, generation, enable ? "P2P" : "Server", t0);
  }
  printWarmups(warm);
  console.log(
    `RESULT flags-regions regions=2 zones=${half * 2} clients=${clients} p50_ms=${pct(samples, 50).toFixed(1)} p99_ms=${pct(samples, 99).toFixed(1)} epochs=east:${epochOf("east")},west:${epochOf("west")}`,
  );
  await Promise.all(used.map((c) => c.call("close")));
  await plane.stop();
}

async function main(): Promise<void> {
  const env = await startLocalEnv({
    services: ["kube", "flags-etcd", "nats"],
    log: (m) => console.error(`[local] ${m}`),
  });
  // The stores run with auth and TLS: this process and its children take their credentials.
  Object.assign(process.env, storeCredentialEnv(env.env));
  // Interrupted: stop the services this run started before leaving.
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.once(sig, () => {
      void env.stop().finally(() => process.exit(130));
    });
  }
  const children = Array.from({ length: procs }, () => spawnPods());
  const dir = mkdtempSync(join(tmpdir(), "bench-flags-"));
  try {
    const kc = new KubeConfig();
    kc.loadFromFile(env.env.kubeconfig!);
    const client = await testClient(env.env.kubeconfig!);
    await installCrds(client);
    client.close();
    const opEtcd = connectFlagStore(requireStoreAccess("etcd", env.env.etcdEndpoints!));
    const floorSamples = await floor(opEtcd, Math.max(toggles, 100));
    opEtcd.close();
    const floorP99 = pct(floorSamples, 99);
    console.error(
      `floor: etcd put -> watch delivery p50=${pct(floorSamples, 50).toFixed(2)} ms p99=${floorP99.toFixed(2)} ms`,
    );
    const s: Setup = {
      api: kc.makeApiClient(CustomObjectsApi),
      kube: await testClient(env.env.kubeconfig!),
      kubeconfig: env.env.kubeconfig!,
      stateDir: env.env.stateDir,
      natsUrl: env.env.natsUrl!,
      children,
      floorP99,
    };
    for (const zonesN of sizes) await benchSize(s, zonesN, env.env.etcdEndpoints!);
    if (regionsZones > 0) {
      // The second Region's store: an etcd of its own.
      const west = await startTestEtcd(dir, "west-etcd", storePki(join(env.env.stateDir, "store-pki")));
      try {
        await benchRegions(s, [env.env.etcdEndpoints!, west.endpoint]);
      } finally {
        await west.stop();
      }
    }
  } finally {
    await Promise.all(children.map((c) => c.exit()));
    await env.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === "pods") {
  void podsMain();
} else {
  main().then(
    () => process.exit(0),
    (err) => {
      console.error(err);
      process.exit(1);
    },
  );
}
