// npm run bench:p2p — P2P meshes at the policy's size: how long a mesh takes to form, and how
// long a zone takes to fall back to server mode when the coordinator dies.
//
//   RESULT p2p peers=N mesh_p99_ms=.. fallback_p99_ms=.. lost_msgs=.. relayed_pairs=.. runs=.. fallback_runs=.. max_peers=.. max_links=.. coord_timeout_ms=.. procs=..
//
// Starts its own NATS and flags etcd and publishes one zone whose policy asks meshes of
// BENCH_MAX_PEERS (default 40, the example policy's). The coordinator is the real workload in its
// own process (`workloads/main.ts coordinator`, on the flag plane); the gateway (with
// CoordinatorWatch) and a stand-in map server run in this process; the werift peers run in
// BENCH_PROCS peer processes (bench/p2p-peers.ts, default: the number of cores, at least 2),
// peers dealt round-robin, so a mesh's DTLS handshakes are spread over the cores instead of
// queueing on one event loop.
// - mesh_p99_ms: N mesh clients join at once; until every one has a data channel open to every
//   mate it links to (or the pair went to the server relay: relayed_pairs). Mesh j's peers stand
//   in area j (meshes of maxPeers: 100 peers make meshes of 40, 40 and 20), in groups of
//   BENCH_MAX_LINKS + 1 on separate link-grid squares, so each peer links to its group
//   (meshLinks; BENCH_MAX_LINKS=39 makes 40-peer full meshes, 780 links each).
// - fallback_p99_ms: N P2PClients play in p2p mode, told their mesh mates (walking; a legacy
//   client chats); the coordinator gets SIGKILL; until every peer has the gateway's `mode`
//   message out of p2p (in its sequence): the zone-wide, server-authoritative switch, which waits
//   for the coordinator's silence to pass coordinatorTimeoutMs.
// - client_fallback_p99_ms: until every peer is off the P2P path (its mesh gone: moves go through
//   the gateway), which a crashed coordinator's closed connections cause at once.
//   The zone's coordinatorTimeoutMs is BENCH_COORD_TIMEOUT_MS (default 400: with bounded links,
//   100 peers on two cores answer heartbeats in time; with full meshes of 40 (BENCH_MAX_LINKS=39)
//   it takes 1000; formation runs in a zone with the policy default, 1500). Then the coordinator
//   restarts and Auto recovery (1 s backoff) brings the zone back before the next run.
// - lost_msgs: chat lines not heard by every peer plus sequence breaks, over all fallback runs.
// Options (environment): BENCH_PEERS (default "10,40,100"), BENCH_RUNS (default 10),
// BENCH_BUDGET_S (per size and phase; runs stop early past it and the output says how many ran,
// default 240), BENCH_MAX_PEERS, BENCH_MAX_LINKS (default 8, the policy default), BENCH_PROCS,
// BENCH_COORD_TIMEOUT_MS, BENCH_STACK.
// - BENCH_STACK: the peers' WebRTC stack. "libdatachannel" (default): node-datachannel's native
//   RTCPeerConnection through the browser client's adapter (workloads/web/rtc.ts), as cheap per
//   handshake as a browser's. "werift": the SDK's pure-TypeScript default, about 40 ms of CPU per
//   connection end: a 40-peer mesh is 1560 of them, which on two cores is half a minute of CPU
//   that real players spread over 40 devices.
import { type ChildProcess, fork } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { FlagClient } from "../platform/flags/client.ts";
import { connectFlagStore } from "../platform/flags/etcd.ts";
import { connectNats, requireStoreAccess } from "../platform/stores/access.ts";
import { sleep } from "../platform/time.ts";
import { coordinatorProcess, testKeys, testZoneFlags } from "../testkit/coordinator.ts";
import { FlagPublisher } from "../testkit/flags.ts";
import { startTestGateway } from "../testkit/gateway.ts";
import { startLocalEnv, storeCredentialEnv } from "../testkit/local/services.ts";
import { StandInMapServer } from "../testkit/map-server-standin.ts";
import { usePrivateTmp } from "../testkit/private-tmp.ts";
import { GameClient } from "../workloads/client/client.ts";
import { DEFAULT_AREA_CELLS, LINK_GRID_CELLS, meshLinks } from "../workloads/coordinator/mesh.ts";
import { startLoopbackStun } from "../workloads/coordinator/stun.ts";
import { CoordinatorWatch } from "../workloads/coordinator/watch.ts";
import { ensureEventStream } from "../workloads/gateway/events.ts";
import { flagDirectory, flagGate } from "../workloads/gateway/flags.ts";
import type { MeshSpot, PeerRequest, PeerStatus, Stack } from "./p2p-peers.ts";

usePrivateTmp("bench"); // its temp files (and its children's) are removed at exit

const sizes = (process.env.BENCH_PEERS ?? "10,40,100").split(",").map(Number);
const runs = Number(process.env.BENCH_RUNS ?? 10);
const budgetMs = Number(process.env.BENCH_BUDGET_S ?? 240) * 1000;
const MAX_PEERS = Number(process.env.BENCH_MAX_PEERS ?? 40);
/** Direct links per peer: the policy's mesh.maxLinks (default 8; MAX_PEERS - 1 for a full mesh). */
const MAX_LINKS = Number(process.env.BENCH_MAX_LINKS ?? 8);
const PROCS = Number(process.env.BENCH_PROCS ?? Math.max(2, availableParallelism()));
const COORD_TIMEOUT_MS = Number(process.env.BENCH_COORD_TIMEOUT_MS ?? 400);
const STACK = (process.env.BENCH_STACK ?? "libdatachannel") as Stack;
if (STACK !== "werift" && STACK !== "libdatachannel")
  throw new Error("BENCH_STACK is werift or libdatachannel");
const region = `bench${randomBytes(3).toString("hex")}`;
const namespace = "bench";
const prefix = `/benchp2p${randomBytes(3).toString("hex")}/v1/`;
const now = () => performance.timeOrigin + performance.now();

function log(msg: string): void {
  process.stderr.write(`[bench:p2p] ${msg}\n`);
}

function p99(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(s.length * 0.99) - 1)] ?? Number.NaN;
}

async function until(what: string, cond: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/**
 * Where the formation peers stand: mesh j's peers (maxPeers of them, the last mesh the rest) in
 * area j, so meshes are the same whatever order the peers join in; inside it, in groups of
 * maxLinks + 1 per link-grid square, squares two apart, so every peer's links are its group
 * (the link graph is then known here, and link counts do not depend on join order).
 */
function meshSpots(ids: string[]): MeshSpot[] {
  const group = Math.min(MAX_LINKS + 1, MAX_PEERS);
  return ids.map((id, g) => {
    const j = Math.floor(g / MAX_PEERS);
    const s = Math.floor((g % MAX_PEERS) / group);
    return {
      id,
      x: j * DEFAULT_AREA_CELLS + LINK_GRID_CELLS * (1 + 2 * (s % 6)),
      y: LINK_GRID_CELLS * (1 + 2 * Math.floor(s / 6)),
    };
  });
}

/** Mates (links counted from both ends) the meshes of these peers hold when whole. */
function wantedMates(spots: MeshSpot[]): number {
  let want = 0;
  for (let j = 0; j * MAX_PEERS < spots.length; j++) {
    const members = spots.slice(j * MAX_PEERS, (j + 1) * MAX_PEERS).map((s) => ({ ...s, joinedAt: 0 }));
    for (const to of meshLinks(members, MAX_LINKS).values()) want += to.length;
  }
  return want;
}

/** A peer process: requests answered in order. */
class Peers {
  private readonly child: ChildProcess;
  private readonly waiting: ((m: { ok: boolean; r?: unknown; err?: string }) => void)[] = [];

  constructor(dir: string, i: number) {
    this.child = fork(new URL("./p2p-peers.ts", import.meta.url).pathname, [], {
      stdio: ["ignore", "inherit", "inherit", "ipc"],
      env: { ...process.env, BENCH_PEER_PROC: String(i), TMPDIR: dir },
    });
    this.child.on("message", (m: { ok: boolean; r?: unknown; err?: string }) => this.waiting.shift()?.(m));
  }

  ask<T>(req: PeerRequest): Promise<T> {
    return new Promise((resolve, reject) => {
      this.waiting.push((m) => (m.ok ? resolve(m.r as T) : reject(new Error(m.err))));
      this.child.send(req);
    });
  }

  /** Waits up to 5 s for the process to leave by itself (its CPU profile, if any, is written), then kills it. */
  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const exited = new Promise((r) => this.child.once("exit", r));
      await Promise.race([exited, sleep(5000)]);
    }
    this.child.kill("SIGKILL");
  }
}

/** The processes' statuses summed: settled when each is and the mates add up. */
async function allStatus(procs: Peers[], op: "status" | "pstatus"): Promise<PeerStatus> {
  const ss = await Promise.all(procs.map((p) => p.ask<PeerStatus>({ op })));
  return {
    mates: ss.reduce((a, s) => a + s.mates, 0),
    relayed: ss.reduce((a, s) => a + s.relayed, 0),
    joined: ss.reduce((a, s) => a + s.joined, 0),
    lonely: ss.reduce((a, s) => a + s.lonely, 0),
    settled: ss.every((s) => s.settled),
  };
}

/** Deals ids round-robin over the processes. */
function deal<T>(ids: T[], n: number): T[][] {
  const out: T[][] = Array.from({ length: n }, () => []);
  for (const [i, id] of ids.entries()) out[i % n]!.push(id);
  return out;
}

const env = await startLocalEnv({ services: ["nats", "flags-etcd"], log });

// The stores run with auth and TLS: this process and its children take their credentials.

Object.assign(process.env, storeCredentialEnv(env.env));
const dir = mkdtempSync(join(tmpdir(), "bench-p2p-"));
const etcd = connectFlagStore(requireStoreAccess("etcd", env.env.etcdEndpoints!));
const stun = await startLoopbackStun();
const stunPort = Number(/:(\d+)$/.exec(String((stun.ice.iceServers as { urls: string }[])[0]!.urls))![1]);
const keys = await testKeys();
const procs: Peers[] = [];
const cleanup: (() => Promise<unknown>)[] = [];
try {
  // Two zones: "mesh" for formation (bare mesh clients), "play" for fallback (game clients).
  // Latency, jitter and loss thresholds are out of reach: a machine running every peer and the
  // coordinator at once has event loop lags that would read as mesh latency and loss.
  const zone = (name: string, map: string, coordinatorTimeoutMs: number) =>
    testZoneFlags({
      namespace,
      zone: name,
      region,
      maps: [map],
      maxPeers: MAX_PEERS,
      maxLinks: MAX_LINKS,
      coordinatorTimeoutMs,
      recovery: { mode: "Auto", initialSeconds: 1, maxSeconds: 1 },
      thresholds: {
        latencyMs: { warn: 60_000, critical: 60_000, max: 60_000 },
        jitterMs: { warn: 60_000, critical: 60_000 },
        // Probes ride unordered channels without retransmits: on a loaded machine some are lost,
        // and a zone judged lossy mid-run would close every link (fallback) and measure that.
        lossPercent: { warn: 100, critical: 100, max: 100 },
      },
    });
  const publisher = new FlagPublisher({ client: etcd, identity: "bench-p2p", prefix });
  await publisher.acquire();
  await publisher.publish({
    // Formation keeps the policy's default timeout: peer processes busy with dozens of DTLS
    // handshakes at once answer heartbeats late, and a short timeout would drop them mid-mesh.
    zones: [zone("mesh", "mesh_fild01", 1500), zone("play", "play_fild01", COORD_TIMEOUT_MS)],
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

  const mapNc = await connectNats(requireStoreAccess("nats", env.env.natsUrl!));
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
  const watchNc = await connectNats(requireStoreAccess("nats", env.env.natsUrl!));
  cleanup.push(() => watchNc.drain());
  let refresh = () => {};
  const watch = new CoordinatorWatch({ nc: watchNc, region, flags: gwFlags, onChange: () => refresh() });
  const gw = await startTestGateway({
    natsUrl: env.env.natsUrl!,
    region,
    keyset: keys.keyset,
    directory: flagDirectory(gwFlags),
    options: {
      p2pGate: watch.gate(flagGate(gwFlags)),
      clientConfig: { zoneFlags: (z) => gwFlags.zoneFlags(z), epoch: () => gwFlags.snapshot().epoch },
      limits: { maxConnections: 1000 },
    },
  });
  cleanup.push(() => gw.stop());
  refresh = () => gw.gateway.refreshModes();
  gwFlags.on("state", refresh);
  gwFlags.on("snapshot", refresh);
  watch.start();
  cleanup.push(async () => watch.stop());

  for (let i = 0; i < PROCS; i++) procs.push(new Peers(dir, i));
  await Promise.all(procs.map((p) => p.ask({ op: "init", keyset: keys.keyset, stunPort, stack: STACK })));
  log(`${PROCS} peer processes on ${STACK}, meshes of at most ${MAX_PEERS}`);

  let round = 0;
  for (const n of sizes) {
    // ---- mesh formation ----
    const meshMs: number[] = [];
    let relayedInMesh = 0;
    const meshStart = Date.now();
    for (let r = 0; r < runs && Date.now() - meshStart < budgetMs; r++) {
      round++;
      const spots = meshSpots(Array.from({ length: n }, (_, i) => `m${round}x${i}`));
      const want = wantedMates(spots);
      const shares = deal(spots, PROCS);
      await Promise.all(
        procs.map((p, i) =>
          p.ask({ op: "mesh", peers: shares[i]!, map: "mesh_fild01", coordUrl: coord.url }),
        ),
      );
      const t0 = now();
      await Promise.all(procs.map((p) => p.ask({ op: "go" })));
      let last: PeerStatus | undefined;
      await until(
        `${n} peers meshed`,
        async () => {
          last = await allStatus(procs, "status");
          return last.settled && last.mates === want;
        },
        300_000,
      ).catch((err) => {
        throw new Error(`${(err as Error).message}: ${JSON.stringify(last)} of ${want} mates`);
      });
      meshMs.push(now() - t0);
      relayedInMesh += last!.relayed / 2;
      await Promise.all(procs.map((p) => p.ask({ op: "stop" })));
      await sleep(500); // let the closed connections go before the next run
    }
    log(`peers=${n}: mesh formation ${meshMs.map((x) => x.toFixed(0)).join(" ")} ms`);

    // ---- fallback ----
    const ids = Array.from({ length: n }, (_, i) => `g${n}x${i}`);
    const shares = deal(ids, PROCS);
    await Promise.all(
      procs.map((p, i) =>
        p.ask({ op: "play", ids: shares[i]!, map: "play_fild01", gwUrl: gw.url, coordUrl: coord.url }),
      ),
    );
    // A legacy player chats all along: every P2P peer must hear every line, across the switches.
    const talker = await GameClient.connect({
      url: gw.url,
      token: await gw.token(`talker${n}`, "play_fild01"),
    });
    const sent: string[] = [];
    let playing = true;
    const chat = (async () => {
      for (let tick = 0; playing; tick++) {
        const text = `n${n} t${tick}`;
        sent.push(text);
        talker.chat(text);
        await sleep(100);
      }
    })();
    const fallbackMs: number[] = [];
    const clientMs: number[] = [];
    const fbStart = Date.now();
    for (let r = 0; r < runs && Date.now() - fbStart < budgetMs; r++) {
      // Every peer in p2p mode and in a mesh (links may still be opening: the switch to server
      // mode does not depend on them, and a restarted coordinator re-forms every mesh). The
      // players walk, so their links follow them; one mate each says the mesh has them.
      let ps: PeerStatus | undefined;
      await until(
        "every peer in p2p with a mate",
        async () => {
          ps = await allStatus(procs, "pstatus");
          return ps.joined === n && ps.lonely === 0;
        },
        300_000,
      ).catch((err) => {
        throw new Error(`${(err as Error).message}: ${JSON.stringify(ps)} of ${n} peers`);
      });
      await Promise.all(procs.map((p) => p.ask({ op: "arm" })));
      const t0 = now();
      coord.kill();
      let fell: { count: number; last: number; left: number }[] = [];
      await until(
        "every peer in server mode",
        async () => {
          fell = await Promise.all(
            procs.map((p) => p.ask<{ count: number; last: number; left: number }>({ op: "fell" })),
          );
          return fell.reduce((a, f) => a + f.count, 0) === n;
        },
        30_000,
      );
      fallbackMs.push(Math.max(...fell.map((f) => f.last)) - t0);
      clientMs.push(Math.max(...fell.map((f) => f.left)) - t0);
      await coord.start();
    }
    playing = false;
    await chat;
    await talker.close();
    const lost = (
      await Promise.all(procs.map((p) => p.ask<{ lost: number }>({ op: "finish", sent })))
    ).reduce((a, x) => a + x.lost, 0);
    log(
      `peers=${n}: fallback ${fallbackMs.map((x) => x.toFixed(0)).join(" ")} ms (players off the P2P path: ${clientMs.map((x) => x.toFixed(0)).join(" ")} ms); ${sent.length} chat lines`,
    );
    console.log(
      `RESULT p2p peers=${n} mesh_p99_ms=${p99(meshMs).toFixed(0)} fallback_p99_ms=${p99(fallbackMs).toFixed(0)} client_fallback_p99_ms=${p99(clientMs).toFixed(0)} lost_msgs=${lost} relayed_pairs=${relayedInMesh} runs=${meshMs.length} fallback_runs=${fallbackMs.length} max_peers=${MAX_PEERS} max_links=${MAX_LINKS} coord_timeout_ms=${COORD_TIMEOUT_MS} procs=${PROCS} stack=${STACK}`,
    );
    if (meshMs.length < runs || fallbackMs.length < runs)
      console.log(
        `# peers=${n}: fewer than ${runs} runs fit the ${budgetMs / 1000} s budget per phase on this machine`,
      );
  }
} finally {
  await Promise.all(procs.map((p) => p.ask({ op: "exit" }).catch(() => undefined)));
  await Promise.all(procs.map((p) => p.stop()));
  for (const c of cleanup.reverse()) await c().catch(() => undefined);
  etcd.close();
  await stun.close();
  await env.stop();
}
process.exit(0);
