// npm run bench:p2p — the P2P coordinator: how long a mesh takes to form, and how long a zone
// takes to fall back to server mode when the coordinator dies.
//
//   RESULT p2p peers=N mesh_p99_ms=.. fallback_p99_ms=.. lost_msgs=.. relayed_pairs=.. runs=.. fallback_runs=.. max_peers=..
//
// Starts its own NATS and flags etcd. The coordinator is the real workload in its own process
// (`workloads/main.ts coordinator`, on the flag plane); the gateway (with CoordinatorWatch), a
// stand-in map server and every werift peer run in this process.
// - mesh_p99_ms: N MeshClients join at once; until every one has a data channel open to every
//   mesh mate. Meshes are capped at max_peers (a full mesh of 50 is 1225 connections, beyond
//   one 2-core machine running every peer).
// - fallback_p99_ms: N P2PClients play (walk, chat) in p2p mode with their meshes formed; the
//   coordinator gets SIGKILL; until every peer has the gateway's `mode` message out of p2p (in
//   its sequence). The zone's coordinatorTimeoutMs is 500 ms. Then the coordinator restarts and
//   Auto recovery (1 s backoff) brings the zone back before the next run.
// - lost_msgs: chat lines not heard by every peer plus sequence breaks, over all fallback runs.
// - relayed_pairs: pairs over all formation runs whose direct connection could not be made in
//   the link timeout and went to the server relay (they count as settled for mesh_p99_ms).
// Options (environment): BENCH_PEERS (default "10,30,50"), BENCH_RUNS (default 20),
// BENCH_BUDGET_S (per size and phase; runs stop early past it and the output says how many ran,
// default 240).
import { randomBytes } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect } from "@nats-io/transport-node";
import { FlagPublisher } from "../operator/flags/publisher.ts";
import { FlagClient } from "../platform/flags/client.ts";
import { connectFlagStore } from "../platform/flags/etcd.ts";
import { sleep } from "../platform/time.ts";
import { coordinatorProcess, meshClient, testKeys, testZoneFlags } from "../testkit/coordinator.ts";
import { startTestGateway } from "../testkit/gateway.ts";
import { startLocalEnv } from "../testkit/local/services.ts";
import { StandInMapServer } from "../testkit/map-server-standin.ts";
import type { MeshClient } from "../workloads/client/mesh.ts";
import { P2PClient } from "../workloads/client/p2p.ts";
import { startLoopbackStun } from "../workloads/coordinator/stun.ts";
import { CoordinatorWatch } from "../workloads/coordinator/watch.ts";
import { ensureEventStream } from "../workloads/gateway/events.ts";
import { flagDirectory, flagGate } from "../workloads/gateway/flags.ts";

const sizes = (process.env.BENCH_PEERS ?? "10,30,50").split(",").map(Number);
const runs = Number(process.env.BENCH_RUNS ?? 20);
const budgetMs = Number(process.env.BENCH_BUDGET_S ?? 240) * 1000;
const MAX_PEERS = 10;
const region = `bench${randomBytes(3).toString("hex")}`;
const namespace = "bench";
const prefix = `/benchp2p${randomBytes(3).toString("hex")}/v1/`;

function log(msg: string): void {
  process.stderr.write(`[bench:p2p] ${msg}\n`);
}

function p99(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(s.length * 0.99) - 1)] ?? Number.NaN;
}

async function until(what: string, cond: () => boolean, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/**
 * Settled: every peer has an open channel to each mesh mate, or the pair was put on the server
 * relay (its direct connection could not be made; counted), and the meshes hold all n peers.
 */
function meshed(
  ps: { mates: string[]; connectedPeers: string[]; relayedPeers: string[] }[],
  n: number,
): boolean {
  let want = 0;
  for (let left = n; left > 0; left -= MAX_PEERS) {
    const k = Math.min(MAX_PEERS, left);
    want += k * (k - 1);
  }
  let mates = 0;
  for (const p of ps) {
    if (p.connectedPeers.length + p.relayedPeers.length !== p.mates.length) return false;
    mates += p.mates.length;
  }
  return mates === want;
}

const relayedPairs = (ps: { relayedPeers: string[] }[]) =>
  ps.reduce((a, p) => a + p.relayedPeers.length, 0) / 2;

const env = await startLocalEnv({ services: ["nats", "flags-etcd"], log });
const dir = mkdtempSync(join(tmpdir(), "bench-p2p-"));
const etcd = connectFlagStore(env.env.etcdEndpoints!);
const stun = await startLoopbackStun();
const keys = await testKeys();
const cleanup: (() => Promise<unknown>)[] = [];
try {
  // Two zones: "mesh" for formation (bare mesh clients), "play" for fallback (game clients).
  // Latency and jitter thresholds are out of reach: every peer runs in this one process, whose
  // event loop lag under tens of DTLS handshakes would read as mesh latency.
  const zone = (name: string, map: string) =>
    testZoneFlags({
      namespace,
      zone: name,
      region,
      maps: [map],
      maxPeers: MAX_PEERS,
      coordinatorTimeoutMs: 500,
      recovery: { mode: "Auto", initialSeconds: 1, maxSeconds: 1 },
      thresholds: {
        latencyMs: { warn: 60_000, critical: 60_000, max: 60_000 },
        jitterMs: { warn: 60_000, critical: 60_000 },
      },
    });
  const publisher = new FlagPublisher({ client: etcd, identity: "bench-p2p", prefix });
  await publisher.acquire();
  await publisher.publish({
    zones: [zone("mesh", "mesh_fild01"), zone("play", "play_fild01")],
    policies: [],
  });

  const coord = await coordinatorProcess({
    dir,
    natsUrl: env.env.natsUrl!,
    etcdEndpoints: env.env.etcdEndpoints!,
    prefix,
    region,
    namespace,
    keyset: keys.keyset,
    // The mesh-formation runs join bare mesh clients, with no gateway session to locate.
    env: { HYBRIDP2P_COORDINATOR_LOCATE: "false" },
  });
  cleanup.push(() => coord.stop());
  await coord.start();

  const mapNc = await connect({ servers: env.env.natsUrl! });
  cleanup.push(() => mapNc.drain());
  await ensureEventStream(mapNc);
  const standin = new StandInMapServer({
    nc: mapNc,
    region,
    zone: "play",
    maps: ["play_fild01"],
    mode: "p2p",
  });
  standin.start();
  cleanup.push(() => standin.stop());
  const gwFlags = new FlagClient({ client: etcd, prefix, namespace, service: "gateway", pod: "gw-0" });
  await gwFlags.start();
  cleanup.push(() => gwFlags.close());
  const watchNc = await connect({ servers: env.env.natsUrl! });
  cleanup.push(() => watchNc.drain());
  let refresh = () => {};
  const watch = new CoordinatorWatch({ nc: watchNc, region, flags: gwFlags, onChange: () => refresh() });
  const gw = await startTestGateway({
    natsUrl: env.env.natsUrl!,
    region,
    keyset: keys.keyset,
    directory: flagDirectory(gwFlags),
    options: { p2pGate: watch.gate(flagGate(gwFlags)), limits: { maxConnections: 1000 } },
  });
  cleanup.push(() => gw.stop());
  refresh = () => gw.gateway.refreshModes();
  gwFlags.on("state", refresh);
  gwFlags.on("snapshot", refresh);
  watch.start();
  cleanup.push(async () => watch.stop());

  let round = 0;
  for (const n of sizes) {
    // ---- mesh formation ----
    const meshMs: number[] = [];
    let relayedInMesh = 0;
    const meshStart = Date.now();
    for (let r = 0; r < runs && Date.now() - meshStart < budgetMs; r++) {
      round++;
      const cs: MeshClient[] = [];
      for (let i = 0; i < n; i++)
        cs.push(
          await meshClient(keys, [coord.url], `m${round}x${i}`, "mesh_fild01", 10 + (i % 20), 10, {
            ice: stun.ice,
            linkTimeoutMs: 60_000,
          }),
        );
      const t0 = performance.now();
      for (const c of cs) {
        c.start();
        await until("joined", () => c.status === "p2p", 10_000);
      }
      await until(`${n} peers meshed`, () => meshed(cs, n), 120_000);
      meshMs.push(performance.now() - t0);
      relayedInMesh += relayedPairs(cs);
      for (const c of cs) c.stop();
      await sleep(300); // let the closed connections go before the next run
    }
    log(`peers=${n}: mesh formation ${meshMs.map((x) => x.toFixed(0)).join(" ")} ms`);

    // ---- fallback ----
    const peers: P2PClient[] = [];
    for (let i = 0; i < n; i++) {
      const token = await gw.token(`g${n}x${i}`, "play_fild01");
      peers.push(await P2PClient.connect({ url: gw.url, token, coordinators: [coord.url], ice: stun.ice }));
    }
    const sent: string[] = [];
    const heard = new Map<P2PClient, Set<string>>(peers.map((p) => [p, new Set()]));
    const fellAt = new Map<P2PClient, number>();
    for (const p of peers)
      p.onMessage((m) => {
        if (m.type === "chatMsg") heard.get(p)!.add(m.text);
        if (m.type === "mode" && m.mode !== "p2p" && !fellAt.has(p)) fellAt.set(p, performance.now());
      });
    let playing = true;
    let tick = 0;
    const play = (async () => {
      while (playing) {
        tick++;
        const p = peers[tick % n]!;
        p.move(20 + (tick % 30), 20 + (tick % 7));
        if (tick % 2 === 0) {
          const text = `n${n} t${tick}`;
          sent.push(text);
          p.chat(text);
        }
        await sleep(Math.max(5, 100 / n));
      }
    })();
    const fallbackMs: number[] = [];
    const fbStart = Date.now();
    for (let r = 0; r < runs && Date.now() - fbStart < budgetMs; r++) {
      await until(
        "every peer in p2p with its mesh",
        () =>
          peers.every((p) => !p.serverMode) &&
          meshed(
            peers.map((p) => ({
              mates: p.mesh?.mates ?? [],
              connectedPeers: p.connectedPeers,
              relayedPeers: p.mesh?.relayedPeers ?? [],
            })),
            n,
          ),
        120_000,
      );
      fellAt.clear();
      const t0 = performance.now();
      coord.kill();
      await until("every peer in server mode", () => fellAt.size === n, 30_000);
      fallbackMs.push(Math.max(...fellAt.values()) - t0);
      await coord.start();
    }
    playing = false;
    await play;
    const complete = () => peers.every((p) => sent.every((t) => heard.get(p)!.has(t)));
    await until("chat delivered", complete, 10_000).catch(() => undefined);
    let lost = 0;
    for (const p of peers) {
      lost += sent.filter((t) => !heard.get(p)!.has(t)).length + p.seqErrors.length;
    }
    log(
      `peers=${n}: fallback ${fallbackMs.map((x) => x.toFixed(0)).join(" ")} ms; ${sent.length} chat lines`,
    );
    await Promise.all(peers.map((p) => p.close()));
    console.log(
      `RESULT p2p peers=${n} mesh_p99_ms=${p99(meshMs).toFixed(0)} fallback_p99_ms=${p99(fallbackMs).toFixed(0)} lost_msgs=${lost} relayed_pairs=${relayedInMesh} runs=${meshMs.length} fallback_runs=${fallbackMs.length} max_peers=${MAX_PEERS}`,
    );
    if (meshMs.length < runs || fallbackMs.length < runs)
      console.log(
        `# peers=${n}: fewer than ${runs} runs fit the ${budgetMs / 1000} s budget per phase on this machine`,
      );
  }
} finally {
  for (const c of cleanup.reverse()) await c().catch(() => undefined);
  etcd.close();
  await stun.close();
  await env.stop();
}
process.exit(0);
