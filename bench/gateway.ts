// npm run bench:gateway — the gateway's fan-out: N bots in one zone receive AOI updates at the
// tick rate through the real gateway (NATS, a stand-in map server speaking the bus contract,
// per-session encoding, sequence numbers, back-pressure checks), against the floor: a bare ws
// server sending one prebuilt frame of the same size to the same N clients at the same rate.
// Starts its own NATS; the gateway, the bare server and the bots run in child processes (the
// bots in two) so each event loop is honest about its own work. Each phase is time-bounded.
//
//   RESULT gateway clients=N msgs_per_s=.. p99_ms=.. kb_per_conn=.. ratio_to_bare_ws=..
//
// msgs_per_s: AOI messages the bots received per second; p99_ms: from when the gateway took
// the map server's frame (the bare server: when it built its frame) to the bot's receive;
// kb_per_conn: growth of the server process's RSS with the connections, per connection.
// Options (environment): BENCH_CLIENTS (default "1000,5000,10000"), BENCH_SECONDS (measured
// seconds per phase, default 5), BENCH_TICK_HZ (default 20), BENCH_MOBS (entities updated in
// every client's view per tick, default 8).
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { decode as mpDecode, encode as mpEncode } from "@msgpack/msgpack";
import type { NatsConnection } from "@nats-io/transport-node";
import { WebSocket, WebSocketServer } from "ws";
import { type AoiFrame, encode as encodeBus, encodeFrame, subjects } from "../platform/bus/contract.ts";
import { AoiBatchEncoder, decode, type Entity, encode, type Message } from "../platform/protocol/messages.ts";
import { connectNats, requireStoreAccess } from "../platform/stores/access.ts";
import { sleep } from "../platform/time.ts";
import { startLocalEnv, storeCredentialEnv } from "../testkit/local/services.ts";
import { StandInMapServer } from "../testkit/map-server-standin.ts";
import { usePrivateTmp } from "../testkit/private-tmp.ts";
import { GatewayAuth } from "../workloads/auth/gateway.ts";
import { Keyset, type KeysetDocument, newKeysetDocument, staticKeys } from "../workloads/auth/keyset.ts";
import { type BotFleet, LatencyHistogram, runBots } from "../workloads/client/bots.ts";
import { consumeEvents, ensureEventStream } from "../workloads/gateway/events.ts";
import { Gateway, staticDirectory } from "../workloads/gateway/gateway.ts";
import { type Child, serve, spawnChild } from "./children.ts";

usePrivateTmp("bench"); // its temp files (and its children's) are removed at exit

const ZONE = "bench";
const MAP = "bench_fild01";
const seconds = Number(process.env.BENCH_SECONDS ?? 5);
const tickHz = Number(process.env.BENCH_TICK_HZ ?? 20);
const mobs = Number(process.env.BENCH_MOBS ?? 8);
const sizes = (process.env.BENCH_CLIENTS ?? "1000,5000,10000").split(",").map(Number);
const warmMs = 2000;
/** Connecting stops after this long; a saturated server is measured with whoever got in. */
const connectMs = Number(process.env.BENCH_CONNECT_SECONDS ?? 45) * 1000;

function log(msg: string): void {
  process.stderr.write(`[bench:gateway] ${msg}\n`);
}

// ---- child processes (bench/children.ts) --------------------------------------------------------

/** BENCH_PROFILE_DIR=<dir>: CPU profiles of the gateway and the bare server, for a look inside. */
const spawn = (role: string) =>
  spawnChild(
    new URL(import.meta.url).pathname,
    role,
    role !== "bots" ? process.env.BENCH_PROFILE_DIR : undefined,
  );

const rss = () => process.memoryUsage().rss;
/** CPU seconds a process has used (Linux /proc; 0 elsewhere). */
function cpuSeconds(pid: number): number {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return 0;
  }
}

/** The gateway, alone in its process. */
async function gatewayRole(): Promise<void> {
  let gateway: Gateway | undefined;
  let stop: (() => Promise<void>) | undefined;
  serve(async (cmd, arg) => {
    switch (cmd) {
      case "start": {
        const o = arg as { natsUrl: string; region: string; keyset: KeysetDocument };
        const auth = new GatewayAuth({ keys: staticKeys(await Keyset.parse(JSON.stringify(o.keyset))) });
        const nc = await connectNats(requireStoreAccess("nats", o.natsUrl));
        const control = await connectNats(requireStoreAccess("nats", o.natsUrl));
        const gw = new Gateway({
          nc,
          control,
          region: o.region,
          id: "gw-bench",
          verify: (t) => auth.verify(t),
          directory: staticDirectory({ [ZONE]: [MAP] }),
          limits: { maxConnections: 50_000 },
        });
        gateway = gw;
        const events = await consumeEvents(nc, o.region, "gw-bench", (b, z) => gw.onEvents(b, z));
        const port = await gw.listen(0);
        stop = async () => {
          await gw.close();
          await events.stop();
          await nc.drain();
          await control.drain();
        };
        globalThis.gc?.();
        return { port, rss: rss() };
      }
      case "mem":
        globalThis.gc?.();
        return { rss: rss(), stats: gateway?.stats };
      case "exit":
        await stop?.();
        return null;
    }
    return null;
  });
}

/** The floor: one frame built per tick, the same bytes sent to every client. */
async function bareRole(): Promise<void> {
  let wss: WebSocketServer | undefined;
  let timer: NodeJS.Timeout | undefined;
  serve(async (cmd) => {
    switch (cmd) {
      case "start": {
        const server = new WebSocketServer({ port: 0, host: "127.0.0.1", perMessageDeflate: false });
        wss = server;
        await new Promise((r) => server.once("listening", r));
        return { port: (server.address() as { port: number }).port, rss: rss() };
      }
      case "go": {
        const server = wss!;
        const table = benchEntities();
        timer = setInterval(() => {
          const frame = new AoiBatchEncoder(
            { map: MAP, tick: 0, t: Date.now(), mode: "server" },
            table,
          ).encode(
            0,
            [],
            table.map((_e, i) => i),
            [],
          );
          for (const ws of server.clients) if (ws.readyState === WebSocket.OPEN) ws.send(frame);
        }, 1000 / tickHz);
        return null;
      }
      case "mem":
        globalThis.gc?.();
        return { rss: rss() };
      case "exit":
        clearInterval(timer);
        for (const ws of wss?.clients ?? []) ws.terminate();
        wss?.close();
        return null;
    }
    return null;
  });
}

function benchEntities(): Entity[] {
  return Array.from({ length: mobs }, (_, i) => ({
    id: 1_000_000 + i,
    kind: "mob" as const,
    name: "poring",
    x: 10 + i,
    y: 10,
    hp: 1_000_000,
    maxHp: 1_000_000,
    alive: true,
  }));
}

interface BotReport {
  connected: number;
  failed: number;
  aoi: number;
  seqErrors: number;
  hist: [number, number][];
}

/** Bots for the gateway (SDK clients), or bare ws receivers for the floor. */
async function botsRole(): Promise<void> {
  let fleet: BotFleet | undefined;
  const bare: WebSocket[] = [];
  const latency = new LatencyHistogram();
  let bareAoi = 0;
  serve(async (cmd, arg) => {
    switch (cmd) {
      case "start": {
        const o = arg as { url: string; count: number; keyset?: KeysetDocument; prefix: string };
        if (o.keyset) {
          fleet = await runBots({
            count: o.count,
            gatewayUrl: o.url,
            maps: [MAP],
            zone: ZONE,
            keyset: o.keyset,
            moveEveryMs: 0,
            idPrefix: o.prefix,
            concurrency: 50,
            connectWithinMs: connectMs,
          });
        } else {
          const deadline = Date.now() + connectMs;
          for (let i = 0; i < o.count && Date.now() < deadline; i += 50) {
            await Promise.all(
              Array.from({ length: Math.min(50, o.count - i) }, async () => {
                const ws = new WebSocket(o.url, { perMessageDeflate: false, handshakeTimeout: 20_000 });
                ws.on("error", () => {});
                const ok = await new Promise<boolean>((r) => {
                  ws.once("open", () => r(true));
                  ws.once("close", () => r(false));
                });
                if (!ok) return;
                ws.on("message", (d: Buffer) => {
                  bareAoi++;
                  latency.record(Date.now() - d.readDoubleLE(6 + 2 + d.readUInt16LE(6) + 4));
                });
                bare.push(ws);
              }),
            );
          }
        }
        return null;
      }
      case "report": {
        const h = fleet?.latency ?? latency;
        const s = fleet?.stats();
        const hist: [number, number][] = [];
        for (let i = 0; i < h.counts.length; i++) if (h.counts[i]) hist.push([i, h.counts[i]!]);
        const r: BotReport = {
          connected: s ? s.connected : bare.filter((w) => w.readyState === WebSocket.OPEN).length,
          failed: s?.failed ?? 0,
          aoi: s ? s.aoi : bareAoi,
          seqErrors: s?.seqErrors ?? 0,
          hist,
        };
        return r;
      }
      case "reset":
        (fleet?.latency ?? latency).reset();
        return null;
      case "exit":
        await fleet?.stop();
        for (const ws of bare) ws.terminate();
        return null;
    }
    return null;
  });
}

// ---- the run ---------------------------------------------------------------------------------

interface Measured {
  msgsPerS: number;
  /** Messages per CPU-second of the server process: its cost, whatever else loads the machine. */
  perCoreS: number;
  p99: number;
  kbPerConn: number;
  connected: number;
  seqErrors: number;
}

/**
 * The AOI source for the gateway: the stand-in answered the joins; this publishes, every tick,
 * the frame a map server would (contract encoding, packed entity table) with every session
 * seeing the same walking mobs. The views are encoded once and spliced in, so the source keeps
 * the tick rate on a busy machine and the gateway's side is what is measured.
 */
function feed(nc: NatsConnection, region: string, standin: StandInMapServer): () => void {
  const sessions = standin.exportSessions();
  const subject = subjects.aoi({ region, zone: ZONE, map: MAP }, "gw-bench");
  const all = Array.from({ length: mobs }, (_, i) => i);
  const view = (session: string, first: boolean) => ({
    session,
    self: 0,
    enter: first ? all : [],
    update: first ? [] : all,
    leave: [],
  });
  const frame = (tick: number, views: unknown[]) => {
    const ents = benchEntities().map((e) => ({ ...e, x: 10 + ((tick / 16) % 200) }));
    return { v: 1 as const, map: MAP, tick, mode: "server" as const, fence: standin.fence, ents, views };
  };
  // `views` is the frame's last key: its encoding ends with an empty array (0x90), replaced by
  // the views encoded once.
  const cached = encodeBus(sessions.map((x) => view(x.session, false)));
  let tick = 0;
  nc.publish(
    subject,
    encodeFrame(
      frame(
        tick,
        sessions.map((x) => view(x.session, true)),
      ) as AoiFrame,
    ),
  );
  const timer = setInterval(() => {
    const head = encodeFrame(frame(++tick, []) as AoiFrame);
    const out = new Uint8Array(head.length - 1 + cached.length);
    out.set(head.subarray(0, head.length - 1));
    out.set(cached, head.length - 1);
    nc.publish(subject, out);
  }, 1000 / tickHz);
  return () => clearInterval(timer);
}

/** Connects n bots (updates not flowing yet, so connecting is not the bottleneck), then `go`. */
async function measure(
  server: Child,
  url: string,
  n: number,
  keyset: KeysetDocument | undefined,
  go: () => Promise<unknown>,
): Promise<Measured> {
  const base = await server.call<{ rss: number }>("mem");
  const halves = [Math.ceil(n / 2), Math.floor(n / 2)];
  const bots = halves.map(() => spawn("bots"));
  try {
    const t0 = Date.now();
    await Promise.all(
      bots.map((b, i) =>
        b.call("start", {
          url,
          count: halves[i],
          keyset,
          prefix: `b${i}-${randomBytes(3).toString("hex")}-`,
        }),
      ),
    );
    log(`  ${n} connected in ${Date.now() - t0} ms`);
    await go();
    await sleep(warmMs);
    await Promise.all(bots.map((b) => b.call("reset")));
    const before = await Promise.all(bots.map((b) => b.call<BotReport>("report")));
    const pids = { server: server.proc.pid!, bots: bots.map((b) => b.proc.pid!), main: process.pid };
    const cpu = () => ({
      server: cpuSeconds(pids.server),
      bots: pids.bots.reduce((a, p) => a + cpuSeconds(p), 0),
      main: cpuSeconds(pids.main),
    });
    const cpu0 = cpu();
    const start = Date.now();
    await sleep(seconds * 1000);
    const after = await Promise.all(bots.map((b) => b.call<BotReport>("report")));
    const elapsed = (Date.now() - start) / 1000;
    const cpu1 = cpu();
    const share = (k: keyof typeof cpu0) => `${Math.round((100 * (cpu1[k] - cpu0[k])) / elapsed)}%`;
    log(
      `  cpu (of one core): server ${share("server")}, bots ${share("bots")}, main+map stand-in ${share("main")}`,
    );
    const mem = await server.call<{ rss: number }>("mem");
    const hist = new LatencyHistogram();
    for (const r of after) for (const [i, c] of r.hist) hist.counts[i]! += c;
    hist.total = after.reduce((a, r) => a + r.hist.reduce((x, [, c]) => x + c, 0), 0);
    const aoi = after.reduce((a, r) => a + r.aoi, 0) - before.reduce((a, r) => a + r.aoi, 0);
    return {
      msgsPerS: aoi / elapsed,
      perCoreS: aoi / Math.max(0.01, cpu1.server - cpu0.server),
      p99: hist.quantile(0.99),
      kbPerConn: Math.max(0, mem.rss - base.rss) / 1024 / n,
      connected: after.reduce((a, r) => a + r.connected, 0),
      seqErrors: after.reduce((a, r) => a + r.seqErrors, 0),
    };
  } finally {
    await Promise.all(bots.map((b) => b.exit()));
  }
}

/**
 * Why the wire protocol has its own encoding: a typical AOI message (8 entities) in it and in
 * MessagePack (the same object), by size and by encode and validating-decode time.
 */
function compareEncodings(): void {
  const msg: Message = {
    type: "aoi",
    seq: 12345,
    map: MAP,
    tick: 999,
    t: Date.now(),
    mode: "server",
    enter: [],
    update: benchEntities(),
    leave: [],
    corrections: [],
  };
  const time = (f: () => unknown) => {
    const n = 20_000;
    for (let i = 0; i < 2000; i++) f();
    const t0 = performance.now();
    for (let i = 0; i < n; i++) f();
    return ((performance.now() - t0) * 1e6) / n;
  };
  const own = encode(msg);
  const mp = mpEncode(msg);
  const ownEnc = time(() => encode(msg));
  const mpEnc = time(() => mpEncode(msg));
  const ownDec = time(() => decode(own, "s2c"));
  const mpDec = time(() => mpDecode(mp));
  log(
    `protocol: AOI with 8 entities is ${own.length} B (MessagePack ${mp.length} B); encode ${Math.round(ownEnc)} ns (MessagePack ${Math.round(mpEnc)} ns); validating decode ${Math.round(ownDec)} ns (MessagePack decode alone ${Math.round(mpDec)} ns)`,
  );
}

async function main(): Promise<void> {
  compareEncodings();
  log(
    `starting NATS; clients ${sizes.join(", ")}, ${tickHz} Hz, ${mobs} entities per view, ${seconds} s each`,
  );
  const env = await startLocalEnv({ services: ["nats"] });
  // The stores run with auth and TLS: this process and its children take their credentials.
  Object.assign(process.env, storeCredentialEnv(env.env));
  const natsUrl = env.env.natsUrl!;
  try {
    const keyset = await newKeysetDocument("bench");
    const admin = await connectNats(requireStoreAccess("nats", natsUrl));
    await ensureEventStream(admin);
    for (const n of sizes) {
      const region = `bench${randomBytes(3).toString("hex")}`;
      // The gateway, fed by a stand-in map server whose every client sees the same moving mobs.
      const gw = spawn("gateway");
      const { port } = await gw.call<{ port: number }>("start", { natsUrl, region, keyset });
      const standin = new StandInMapServer({
        nc: admin,
        region,
        zone: ZONE,
        maps: [MAP],
        tickHz,
        mobs,
        moving: mobs,
        playersVisible: false,
        events: false,
        ticking: false,
      });
      standin.start();
      let stopFeed = () => {};
      let g: Measured;
      try {
        g = await measure(gw, `ws://127.0.0.1:${port}`, n, keyset, async () => {
          stopFeed = feed(admin, region, standin);
        });
      } finally {
        stopFeed();
        await standin.stop();
        await gw.exit();
      }
      log(
        `  gateway: ${Math.round(g.msgsPerS)} msgs/s (ideal ${n * tickHz}), ${Math.round(g.perCoreS)} per CPU-second, p99 ${g.p99} ms, ${g.connected} connected, ${g.seqErrors} sequence errors`,
      );
      const bare = spawn("bare");
      const b = await bare.call<{ port: number }>("start");
      let f: Measured;
      try {
        f = await measure(bare, `ws://127.0.0.1:${b.port}`, n, undefined, () => bare.call("go"));
      } finally {
        await bare.exit();
      }
      log(
        `  bare ws: ${Math.round(f.msgsPerS)} msgs/s, ${Math.round(f.perCoreS)} per CPU-second, p99 ${f.p99} ms; per-CPU-second ratio ${(g.perCoreS / f.perCoreS).toFixed(2)}`,
      );
      console.log(
        `RESULT gateway clients=${n} msgs_per_s=${Math.round(g.msgsPerS)} p99_ms=${g.p99.toFixed(1)} kb_per_conn=${g.kbPerConn.toFixed(1)} ratio_to_bare_ws=${(g.msgsPerS / f.msgsPerS).toFixed(2)}`,
      );
    }
    await admin.drain();
  } finally {
    await env.stop();
  }
}

const role = process.argv[2];
if (role === "gateway") await gatewayRole();
else if (role === "bare") await bareRole();
else if (role === "bots") await botsRole();
else await main();
