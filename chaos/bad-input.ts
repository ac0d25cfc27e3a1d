// Bad input at volume. Three parts, on the local stores with auth and TLS on:
// 1. Fuzzed frames at the gateway and the coordinator, each its own process (`workloads/main.ts`),
//    from many connections at once: most connections authenticate, send schema-valid messages with
//    random contents, then one malformed frame; some send a malformed frame first. A violation is
//    a process that exits, a malformed frame that leaves its connection open, or the control
//    player (connected throughout) losing its connection or its answers.
// 2. Malformed flag documents written straight to the flag store (a pointer and a zone key that
//    are not JSON): the coordinator must stay up, keep its last good epoch and say it rejected one
//    in its report, then take the next good publish.
// 3. Oversized and deeply nested manifests sent to the API server: refused with a 4xx and a
//    message, and the API server still answers.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { request as httpsRequest } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { WebSocket } from "ws";
import { parse } from "yaml";
import { API_VERSION } from "../operator/api/index.ts";
import { zoneResource } from "../operator/controllers/context.ts";
import { connectFlagStore } from "../platform/flags/etcd.ts";
import { layout } from "../platform/flags/layout.ts";
import {
  decode,
  encode,
  MAX_CLIENT_FRAME,
  MESSAGES,
  type MessageType,
} from "../platform/protocol/messages.ts";
import { connectNats } from "../platform/stores/access.ts";
import { sleep } from "../platform/time.ts";
import { coordinatorProcess, testKeys, testZoneFlags } from "../testkit/coordinator.ts";
import { FlagPublisher, reportsOn } from "../testkit/flags.ts";
import { createNamespace, deleteNamespace, installCrds, testClient } from "../testkit/kube.ts";
import { envVars, startLocalEnv } from "../testkit/local/services.ts";
import { StandInMapServer } from "../testkit/map-server-standin.ts";
import { freePort } from "../testkit/processes.ts";
import { arbitraryMessage, arbitraryOf } from "../testkit/protocol-arbitrary.ts";
import { testServingTls } from "../testkit/tls.ts";
import { GameClient } from "../workloads/client/client.ts";
import {
  COORD_MESSAGES,
  type CoordType,
  decodeCoord,
  encodeCoord,
} from "../workloads/coordinator/messages.ts";
import { ensureEventStream } from "../workloads/gateway/events.ts";
import type { Scenario } from "./scenario.ts";

const FRAMES = Number(process.env.CHAOS_FRAMES ?? 1_000_000);
const CONNECTIONS = Number(process.env.CHAOS_CONNECTIONS ?? 64);
/** A malformed frame must close its connection within this. */
const CLOSE_WITHIN_MS = 5_000;
const MAP = "izlude";

const repoRoot = new URL("..", import.meta.url).pathname;

/** Frames that do not decode (checked): random bytes, a bad version, a truncation, an oversize. */
function malformedPool(valid: Uint8Array[], accepts: (f: Uint8Array) => boolean, max: number): Uint8Array[] {
  const out: Uint8Array[] = [new Uint8Array(0), new Uint8Array(max + 1).fill(7)];
  const rnd = fc.sample(fc.uint8Array({ minLength: 1, maxLength: 96 }), 2000);
  for (const f of rnd) out.push(f);
  for (const v of valid.slice(0, 2000)) {
    if (v.length > 2) out.push(v.subarray(0, 1 + Math.floor(Math.random() * (v.length - 1))));
    const flipped = Uint8Array.from(v);
    flipped[0] = flipped[0]! ^ 0xff;
    out.push(flipped);
  }
  return out.filter((f) => !accepts(f));
}

/** Whether `f` returns (the frame decodes) rather than throws. */
const decodes = (f: () => unknown): boolean => {
  try {
    f();
    return true;
  } catch {
    return false;
  }
};

interface Target {
  name: string;
  url: string;
  /** The first frame of an authenticated connection, for connection number i. */
  hello(i: number): Promise<Uint8Array>;
  valid: Uint8Array[];
  malformed: Uint8Array[];
}

interface Tally {
  frames: number;
  connections: number;
  closedBad: number;
  closedEarly: number;
  violations: string[];
}

/** One connection: hello (unless it opens with garbage), a burst of valid frames, one malformed frame. */
function oneConnection(t: Target, i: number, tally: Tally): Promise<void> {
  return new Promise((resolve) => {
    const ws = new WebSocket(t.url, { perMessageDeflate: false });
    let closed = false;
    let sentBad = 0;
    const pick = (pool: Uint8Array[]) => pool[Math.floor(Math.random() * pool.length)]!;
    const sendBad = () => {
      sentBad = Date.now();
      const f = pick(t.malformed);
      // A text frame is malformed too (the protocols are binary).
      if (f.length === 0 && i % 2 === 0) ws.send("not a frame");
      else ws.send(f);
      tally.frames++;
      setTimeout(() => {
        if (!closed) {
          tally.violations.push(
            `${t.name}: a malformed frame left connection ${i} open for ${CLOSE_WITHIN_MS} ms`,
          );
          ws.terminate();
        }
      }, CLOSE_WITHIN_MS).unref();
    };
    ws.on("error", () => {});
    ws.on("close", () => {
      closed = true;
      tally.connections++;
      if (sentBad) tally.closedBad++;
      else tally.closedEarly++;
      resolve();
    });
    ws.once("open", async () => {
      if (i % 4 === 0) return sendBad();
      ws.send(await t.hello(i));
      tally.frames++;
      ws.once("message", () => {
        // Within the gateway's burst allowance, so the rate limit does not end it first.
        const n = 20 + Math.floor(Math.random() * 50);
        for (let k = 0; k < n && ws.readyState === WebSocket.OPEN; k++) {
          ws.send(pick(t.valid));
          tally.frames++;
        }
        if (ws.readyState === WebSocket.OPEN) sendBad();
      });
    });
  });
}

async function fuzz(t: Target, frames: number, log: (m: string) => void): Promise<Tally> {
  const tally: Tally = { frames: 0, connections: 0, closedBad: 0, closedEarly: 0, violations: [] };
  let next = 0;
  let lastLog = Date.now();
  await Promise.all(
    Array.from({ length: CONNECTIONS }, async () => {
      while (tally.frames < frames && tally.violations.length < 20) {
        await oneConnection(t, next++, tally);
        if (Date.now() - lastLog > 10_000) {
          lastLog = Date.now();
          log(`${t.name}: ${tally.frames} frames on ${tally.connections} connections`);
        }
      }
    }),
  );
  return tally;
}

/** The gateway workload as a pod runs it, from the environment. */
async function gatewayProcess(o: {
  dir: string;
  natsUrl: string;
  region: string;
  namespace: string;
  prefix: string;
  keysetPath: string;
}): Promise<{ child: ChildProcess; url: string; exited: () => string | undefined }> {
  const [port, health, metrics] = [await freePort(), await freePort(), await freePort()];
  const child = spawn(process.execPath, [join(repoRoot, "workloads/main.ts"), "gateway"], {
    env: {
      ...process.env,
      HYBRIDP2P_NATS_URL: o.natsUrl,
      // Its maps from the flag store, as in a Region.
      HYBRIDP2P_FLAG_PREFIX: o.prefix,
      POD_NAMESPACE: o.namespace,
      HYBRIDP2P_AUTH_KEYSET_FILE: o.keysetPath,
      HYBRIDP2P_REGION: o.region,
      HYBRIDP2P_GATEWAY_PORT: String(port),
      HYBRIDP2P_HEALTH_PORT: String(health),
      HYBRIDP2P_METRICS_PORT: String(metrics),
      HYBRIDP2P_LISTEN_HOST: "127.0.0.1",
      HYBRIDP2P_SERVING_TLS_DIR: testServingTls().dir,
      HYBRIDP2P_LOG_LEVEL: "error",
      POD_NAME: "gateway-0",
    },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let err = "";
  child.stderr!.on("data", (d) => {
    err = `${err}${d}`.slice(-4000);
  });
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`gateway exited ${child.exitCode}: ${err}`);
    const ok = await fetch(`http://127.0.0.1:${health}/readyz`)
      .then((r) => r.ok)
      .catch(() => false);
    if (ok) break;
    if (i > 300) throw new Error(`gateway never became ready: ${err}`);
    await sleep(100);
  }
  return {
    child,
    url: `wss://127.0.0.1:${port}`,
    exited: () =>
      child.exitCode !== null || child.signalCode !== null
        ? `exit ${child.exitCode ?? child.signalCode}: ${err}`
        : undefined,
  };
}

/** POSTs `body` as it is (the kube client would serialize it) with the kubeconfig's identity. */
async function rawPost(
  kubeconfig: string,
  path: string,
  body: string,
): Promise<{ status: number; message: string }> {
  const kc = parse(readFileSync(kubeconfig, "utf8")) as {
    clusters: Array<{ cluster: { server: string; "certificate-authority": string } }>;
    users: Array<{ user: { "client-certificate": string; "client-key": string } }>;
  };
  const { server, "certificate-authority": ca } = kc.clusters[0]!.cluster;
  const { "client-certificate": cert, "client-key": key } = kc.users[0]!.user;
  return new Promise((resolve) => {
    const req = httpsRequest(
      new URL(path, server),
      {
        method: "POST",
        headers: { "content-type": "application/json" },
        ca: readFileSync(ca),
        cert: readFileSync(cert),
        key: readFileSync(key),
        timeout: 60_000,
      },
      (res) => {
        let text = "";
        res.on("data", (d) => {
          text += d;
        });
        res.on("end", () => {
          let message = text;
          try {
            message = String((JSON.parse(text) as { message?: string }).message ?? text);
          } catch {}
          resolve({ status: res.statusCode ?? 0, message });
        });
      },
    );
    req.on("error", (e) => resolve({ status: 0, message: String(e) }));
    req.end(body);
  });
}

export const badInput: Scenario = async (log) => {
  const running = await startLocalEnv({ services: ["kube", "flags-etcd", "nats"], log });
  const env = running.env;
  // Child processes and the test kit reach the stores with the local administrator's credentials.
  Object.assign(process.env, envVars(env));
  testServingTls(); // this process trusts the test CA, as a player with the Region's CA file
  const dir = mkdtempSync(join(tmpdir(), "chaos-bad-input-"));
  const violations: string[] = [];
  const figures: Record<string, string | number> = {};
  const stops: Array<() => Promise<unknown> | unknown> = [];
  try {
    const id = Math.random().toString(36).slice(2, 8);
    const region = `chaos${id}`;
    const namespace = `chaos-${id}`;
    const prefix = `/chaos${id}/v1/`;
    const keys = await testKeys();
    const keysetPath = join(dir, "keyset.json");
    writeFileSync(keysetPath, JSON.stringify(keys.keyset));

    // The flag store: one P2P zone holding the map.
    const etcd = connectFlagStore(env.etcd!);
    stops.push(() => etcd.close());
    const publisher = new FlagPublisher({ client: etcd, identity: "chaos", prefix });
    await publisher.acquire();
    const zoneDoc = testZoneFlags({ namespace, zone: "z", region, maps: [MAP] });
    const good = await publisher.publish({ zones: [zoneDoc], policies: [] });

    const nc = await connectNats(env.nats!);
    stops.push(() => nc.drain());
    await ensureEventStream(nc);
    const standin = new StandInMapServer({ nc, region, zone: "z", maps: [MAP], mode: "p2p" });
    standin.start();
    stops.push(() => standin.stop());

    const gw = await gatewayProcess({
      dir,
      natsUrl: env.natsUrl!,
      region,
      namespace,
      prefix,
      keysetPath,
    });
    stops.push(() => gw.child.kill("SIGKILL"));
    const coord = await coordinatorProcess({
      dir,
      natsUrl: env.natsUrl!,
      etcdEndpoints: env.etcdEndpoints!,
      prefix,
      region,
      namespace,
      keyset: keys.keyset,
      env: { HYBRIDP2P_COORDINATOR_LOCATE: "false", HYBRIDP2P_COORDINATOR_CHECK_SESSIONS: "false" },
    });
    await coord.start();
    stops.push(() => coord.stop());

    // The control player: connected from the first frame to the last.
    // (The gateway learns the map's owner from the map server's announcements: retry until it has.)
    let control: GameClient | undefined;
    for (let i = 0; control === undefined; i++) {
      control = await GameClient.connect({ url: gw.url, token: await keys.token("control", MAP) }).catch(
        (e) => {
          if (i > 100) throw e;
          return sleep(100).then(() => undefined);
        },
      );
    }
    let controlClosed = false;
    void control.closed.then(() => {
      controlClosed = true;
    });

    // ---- 1. fuzzed frames --------------------------------------------------------------------
    const gwTypes = (Object.keys(MESSAGES) as MessageType[]).filter(
      (t) => MESSAGES[t].dir === "c2s" && t !== "hello",
    );
    const gwValid = gwTypes.flatMap((t) => fc.sample(arbitraryMessage(t), 300).map((m) => encode(m)));
    const coordTypes = (Object.keys(COORD_MESSAGES) as CoordType[]).filter(
      (t) => COORD_MESSAGES[t].dir === "c2s" && t !== "join",
    );
    const coordValid = coordTypes.flatMap((t) =>
      fc
        .sample(arbitraryOf(COORD_MESSAGES[t].body.desc), 300)
        .map((b) => encodeCoord({ type: t, ...(b as object) } as never)),
    );
    const gateway: Target = {
      name: "gateway",
      url: gw.url,
      hello: async (i) => encode({ type: "hello", token: await keys.token(`f${i}`, MAP), kind: "legacy" }),
      valid: gwValid,
      malformed: malformedPool(gwValid, (f) => decodes(() => decode(f, "c2s")), MAX_CLIENT_FRAME),
    };
    const coordinator: Target = {
      name: "coordinator",
      url: coord.url,
      hello: async (i) =>
        encodeCoord({
          type: "join",
          token: await keys.token(`f${i}`, MAP),
          session: `s-f${i}`,
          entity: 100_000 + i,
          x: 10,
          y: 10,
        }),
      valid: coordValid,
      malformed: malformedPool(coordValid, (f) => decodes(() => decodeCoord(f, "c2s")), 32 * 1024),
    };
    const t0 = Date.now();
    let runs = 0;
    for (const t of [gateway, coordinator]) {
      const tally = await fuzz(t, Math.ceil(FRAMES / 2), log);
      runs += tally.connections;
      violations.push(...tally.violations);
      figures[`${t.name}_frames`] = tally.frames;
      figures[`${t.name}_connections`] = tally.connections;
      figures[`${t.name}_closed_bad`] = tally.closedBad;
      log(
        `${t.name}: ${tally.frames} frames, ${tally.connections} connections (${tally.closedBad} closed after their malformed frame, ${tally.closedEarly} before it)`,
      );
    }
    figures.fuzz_seconds = ((Date.now() - t0) / 1000).toFixed(1);
    const gwExit = gw.exited();
    if (gwExit) violations.push(`gateway process ended: ${gwExit}`);
    const coordProc = coord.proc;
    if (coordProc?.child.exitCode !== null && coordProc?.child.exitCode !== undefined)
      violations.push(`coordinator process ended: exit ${coordProc.child.exitCode}`);
    if (controlClosed) violations.push("the control player's connection was closed");
    else {
      const rtt = await Promise.race([control.ping(), sleep(5000).then(() => -1)]);
      if (rtt < 0) violations.push("the control player got no answer after the fuzz");
      else figures.control_rtt_ms = rtt.toFixed(1);
    }
    await control.close();

    // ---- 2. malformed flag documents --------------------------------------------------------
    const l = layout(prefix);
    const reports = await reportsOn(nc, prefix, namespace);
    stops.push(() => reports.close());
    const coordReport = () =>
      reports.zoneReports(namespace, undefined).find((r) => r.service === "coordinator");
    const until = async (what: string, ok: () => boolean, ms = 15_000) => {
      const end = Date.now() + ms;
      while (!ok()) {
        if (Date.now() > end) {
          violations.push(`flag documents: ${what} (report: ${JSON.stringify(coordReport())})`);
          return false;
        }
        await sleep(100);
      }
      return true;
    };
    await until("the coordinator reports the good epoch", () => coordReport()?.epoch === good.epoch);
    await etcd.put(l.pointer).value("{not json");
    await etcd.put(l.zoneKey(namespace, "z")).value('{"epoch": "many"');
    const kept = await until(
      "the coordinator keeps its last good epoch and says it rejected a document",
      () => coordReport()?.rejectedEpoch !== undefined && coordReport()?.epoch === good.epoch,
    );
    // The next policy change (the publisher rewrites the store only on one).
    const next = await publisher.publish({
      zones: [{ ...zoneDoc, mesh: { ...zoneDoc.mesh, maxPeers: 31 } }],
      policies: [],
    });
    const recovered = await until(
      "the coordinator takes the next good publish",
      () => coordReport()?.epoch === next.epoch && coordReport()?.rejectedEpoch === undefined,
    );
    if (coordProc?.child.exitCode !== null && coordProc?.child.exitCode !== undefined)
      violations.push(`coordinator process ended after malformed flags: exit ${coordProc.child.exitCode}`);
    figures.flag_docs_rejected_then_recovered = kept && recovered ? "yes" : "no";
    runs += 2;

    // ---- 3. oversized and deeply nested manifests --------------------------------------------
    const kube = await testClient(env.kubeconfig!);
    stops.push(() => kube.close());
    await installCrds(kube);
    await createNamespace(kube, namespace);
    stops.push(() => deleteNamespace(kube, namespace));
    const zone = (spec: unknown) => ({
      apiVersion: API_VERSION,
      kind: "Zone",
      metadata: { name: "huge", namespace },
      spec,
    });
    const cases: Array<[string, string]> = [
      [
        "a 4 MiB manifest",
        JSON.stringify(
          zone({ regionRef: { name: "r" }, maps: [{ name: "x".repeat(4 << 20), type: "Field" }] }),
        ),
      ],
      [
        // Written as text: JSON.stringify itself cannot nest this deep.
        "a manifest nested 20000 deep",
        JSON.stringify(zone({ regionRef: { name: "r" }, maps: [], extra: "@" })).replace(
          '"@"',
          `${'{"a":'.repeat(20_000)}1${"}".repeat(20_000)}`,
        ),
      ],
      [
        "10000 maps",
        JSON.stringify(
          zone({
            regionRef: { name: "r" },
            maps: Array.from({ length: 10_000 }, (_, i) => ({ name: `m${i}`, type: "Field" })),
          }),
        ),
      ],
    ];
    const refusals: string[] = [];
    for (const [what, body] of cases) {
      runs++;
      const { status, message } = await rawPost(
        env.kubeconfig!,
        `/apis/${API_VERSION}/namespaces/${namespace}/zones`,
        body,
      );
      log(`${what}: ${status}: ${message.slice(0, 160)}`);
      if (status >= 200 && status < 300) violations.push(`manifests: ${what} was accepted`);
      else if (status < 400 || status >= 500 || message.length === 0)
        violations.push(`manifests: ${what} got ${status}: ${message.slice(0, 200)}`);
      else refusals.push(`${what}: ${status}`);
    }
    const alive = await kube.list(zoneResource, namespace).then(
      () => true,
      () => false,
    );
    if (!alive) violations.push("manifests: the API server stopped answering");
    figures.manifests_refused = refusals.length;
    return { runs, violations, figures };
  } finally {
    for (const s of stops.reverse()) await Promise.resolve(s()).catch(() => undefined);
    await running.stop();
  }
};
