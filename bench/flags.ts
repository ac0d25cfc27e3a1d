#!/usr/bin/env node
// npm run bench:flags — the flag plane end to end: the time from a P2PPolicy write to the API
// server until every simulated map-server replica has reported the new epoch (its report put
// acknowledged by etcd), for 10, 100 and 1000 zones with 10 flag clients each, plus the floor:
// etcd put to watch delivery for one key. Starts its own kube-apiserver and flags etcd.
//   BENCH_SIZES=10,100,1000 BENCH_TOGGLES=30 BENCH_CLIENTS=10 npm run bench:flags
import { randomUUID } from "node:crypto";
import { CustomObjectsApi, KubeConfig, PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import type { Etcd3 } from "etcd3";
import { GROUP, VERSION } from "../operator/api/constants.ts";
import { FlagClient } from "../platform/flags/client.ts";
import { connectFlagStore } from "../platform/flags/etcd.ts";
import { createLogger } from "../platform/log.ts";
import { sleep } from "../platform/time.ts";
import { startFlagPlane } from "../testkit/flags.ts";
import { createNamespace, installCrds, testClient } from "../testkit/kube.ts";
import { startLocalEnv } from "../testkit/local/services.ts";

const sizes = (process.env.BENCH_SIZES ?? "10,100,1000").split(",").map(Number);
const toggles = Number(process.env.BENCH_TOGGLES ?? 30);
const perZone = Number(process.env.BENCH_CLIENTS ?? 10);
const connections = Number(process.env.BENCH_CONNECTIONS ?? 8);
const quiet = {
  error: (m: string, f?: Record<string, unknown>) => console.error(m, JSON.stringify(f ?? {})),
  warn: () => {},
  info: () => {},
};

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
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

async function main(): Promise<void> {
  const env = await startLocalEnv({
    services: ["kube", "flags-etcd"],
    log: (m) => console.error(`[local] ${m}`),
  });
  // Interrupted: stop the services this run started before leaving.
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.once(sig, () => {
      void env.stop().finally(() => process.exit(130));
    });
  }
  try {
    const kc = new KubeConfig();
    kc.loadFromFile(env.env.kubeconfig!);
    const api = kc.makeApiClient(CustomObjectsApi);
    const client = await testClient(env.env.kubeconfig!);
    await installCrds(client);
    const conns = Array.from({ length: connections }, () => connectFlagStore(env.env.etcdEndpoints!));
    const opEtcd = connectFlagStore(env.env.etcdEndpoints!);
    const floorSamples = await floor(opEtcd, Math.max(toggles, 100));
    const floorP99 = pct(floorSamples, 99);
    console.error(
      `floor: etcd put -> watch delivery p50=${pct(floorSamples, 50).toFixed(2)} ms p99=${floorP99.toFixed(2)} ms`,
    );

    for (const zonesN of sizes) {
      const ns = `bench-flags-${zonesN}`;
      const prefix = `/bench-${randomUUID()}/`;
      await createNamespace(client, ns);
      const create = (plural: string, body: object) =>
        api.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural, body });
      await create("regions", {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: "Region",
        metadata: { name: "r1", namespace: ns },
        spec: {},
      });
      const names = Array.from({ length: zonesN }, (_, i) => `z${String(i).padStart(4, "0")}`);
      for (let i = 0; i < names.length; i += 50) {
        await Promise.all(
          names.slice(i, i + 50).map((name) =>
            create("zones", {
              apiVersion: `${GROUP}/${VERSION}`,
              kind: "Zone",
              metadata: { name, namespace: ns, labels: { tier: "field" } },
              spec: {
                regionRef: { name: "r1" },
                maps: [{ name, type: "Field" }],
                mapServer: { replicas: perZone },
              },
            }),
          ),
        );
      }
      await create("p2ppolicies", {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: "P2PPolicy",
        metadata: { name: "fields", namespace: ns },
        spec: { zoneSelector: { matchLabels: { tier: "field" } }, enabled: false },
      });
      let publishedAt = 0;
      let appliedAt = 0;
      const plane = await startFlagPlane({
        kubeconfig: env.env.kubeconfig!,
        etcd: opEtcd,
        identity: "bench-op",
        prefix,
        namespace: ns,
        log: createLogger("bench-flags", { level: "error" }),
        onPublish: (r) => {
          if (r.published) publishedAt = performance.now();
        },
      });
      const clients: FlagClient[] = [];
      let reportedAt = new Map<FlagClient, number>();
      let target = Number.POSITIVE_INFINITY;
      let done: (() => void) | undefined;
      let pending = 0;
      for (const [zi, zone] of names.entries()) {
        for (let r = 0; r < perZone; r++) {
          const c = new FlagClient({
            // The replicas of one zone share a connection, as pods in one process would.
            client: conns[zi % conns.length]!,
            prefix,
            namespace: ns,
            zone,
            service: "map-server",
            pod: `${zone}-${r}`,
            reportTtlSeconds: 60,
            log: quiet,
          });
          c.on("state", (st) => {
            if (st.epoch >= target) appliedAt = Math.max(appliedAt, performance.now());
          });
          c.on("reported", (rep) => {
            if (rep.epoch >= target && !reportedAt.has(c)) {
              reportedAt.set(c, performance.now());
              if (--pending === 0) done?.();
            }
          });
          clients.push(c);
        }
      }
      for (let i = 0; i < clients.length; i += 200)
        await Promise.all(clients.slice(i, i + 200).map((c) => c.start()));
      // Wait for the initial publish to land everywhere.
      for (;;) {
        const e = plane.lastPublish()?.epoch ?? 0;
        if (e > 0 && clients.every((c) => c.current().epoch >= e)) break;
        await sleep(50);
      }
      const samples: number[] = [];
      const phases: string[] = [];
      for (let t = 0; t < toggles; t++) {
        const before = plane.lastPublish()!.epoch;
        reportedAt = new Map();
        appliedAt = 0;
        pending = clients.length;
        target = before + 1;
        const all = new Promise<void>((r) => {
          done = r;
        });
        const t0 = performance.now();
        await api.patchNamespacedCustomObject(
          {
            group: GROUP,
            version: VERSION,
            namespace: ns,
            plural: "p2ppolicies",
            name: "fields",
            body: { spec: { enabled: t % 2 === 0 } },
          },
          setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
        );
        await all;
        samples.push(Math.max(...reportedAt.values()) - t0);
        phases.push(
          `${(publishedAt - t0).toFixed(0)}/${(appliedAt - t0).toFixed(0)}/${samples.at(-1)!.toFixed(0)}`,
        );
      }
      const p50 = pct(samples, 50);
      const p99 = pct(samples, 99);
      console.log(
        `RESULT flags zones=${zonesN} clients=${clients.length} p50_ms=${p50.toFixed(1)} p99_ms=${p99.toFixed(1)} floor_p99_ms=${floorP99.toFixed(2)} ratio=${(p99 / floorP99).toFixed(1)}`,
      );
      if (process.env.BENCH_VERBOSE) console.error(`published/applied/reported ms: ${phases.join(" ")}`);
      for (let i = 0; i < clients.length; i += 500)
        await Promise.all(clients.slice(i, i + 500).map((c) => c.close()));
      await plane.stop();
    }
    for (const c of conns) c.close();
    opEtcd.close();
  } finally {
    await env.stop();
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
