// NATS restarted during play. A local game stack with auth and TLS on: the gateway and the real
// map server (both in this process, each on its own NATS connections, as in
// workloads/gateway/resync.int.test.ts), the flag etcd (map ownership), Redis (hot state),
// PostgreSQL (characters) and a NATS JetStream server of the scenario's own. CHAOS_BOTS bots
// (default 50, full decode) play on one field where they all stand within view of each other:
// each chats (CHAOS_CHAT_MS, default 2000 ms), attacks the nearest poring (every 1.5 s) and walks
// a little. Meanwhile NATS is stopped CHAOS_NATS_RESTARTS times (default 3; SIGKILL and SIGTERM
// alternately) and started again on the same port with the same JetStream directory after
// CHAOS_OUTAGE_MS (default 1000 ms), CHAOS_PLAY_MS (default 15000 ms) of play between restarts.
//
// What "lost" means (workloads/gateway/events.ts, platform/bus/contract.ts): a chat or combat
// result exists for the bus once the map server's event batch is stored in the HP2P_EVENTS
// stream; each event names the sessions that must receive it (`to`). So, after play stops and
// the gateway's durable consumer has caught up, the stream is read back whole, and:
// - every (stored chat event, session in its `to`) must have reached that session's bot as a
//   chatMsg with that text (texts are unique), and every stored hit as a combat message (counted
//   per session and (attacker, target, damage, hp left)): anything missing is a lost event;
// - the map server must not have dropped an event batch it made (a failed JetStream publish):
//   those events never reach the stream, so they count as lost too;
// - after each restart every bot gets a viewReset, and then the whole view again: the map server
//   must resend the views (MapSim.resendViews, watched) after the bot's reset and the bot get a
//   frame after that within 15 s; an update of an entity the bot does not know, arriving more
//   than 1 s after that resend, is a view that was not resent;
// - no bot sees a sequence gap or reordering (platform/protocol/messages.ts: server-authoritative
//   messages are numbered 1, 2, 3, ... per session) and none is disconnected.
// - nothing is delivered twice (JetStream redelivers a batch whose ack was lost in the outage; the
//   gateway must hand it over once, workloads/gateway/events.ts).
// Counted, not a violation: chats that never reached the stream (chat_not_stored: the input is a
// core NATS publish, so one in flight to the server being killed is gone; the gateway holds what
// it gets while the bus is away, workloads/gateway/routing.ts).
//
// Figures: max_reconnect_seconds from a stop until the gateway's connection is back,
// max_resume_seconds from a stop until every bot has its view back.
//
// Short version (e2e-sized): CHAOS_BOTS=8 CHAOS_NATS_RESTARTS=1 CHAOS_PLAY_MS=5000.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { decode as busDecode, EVENT_STREAM, type EventBatch, subjects } from "../platform/bus/contract.ts";
import { newRegistry } from "../platform/http.ts";
import { createLogger } from "../platform/log.ts";
import type { ServerMessage } from "../platform/protocol/messages.ts";
import { connectNats } from "../platform/stores/access.ts";
import { sleep } from "../platform/time.ts";
import { startTestGateway, type TestGateway } from "../testkit/gateway.ts";
import { envVars, startLocalEnv, startNats, storePki } from "../testkit/local/services.ts";
import {
  createCharacters,
  type Services,
  startTestServer,
  type TestServer,
  unique,
} from "../testkit/map-server/harness.ts";
import type { Proc } from "../testkit/processes.ts";
import { testServingTls } from "../testkit/tls.ts";
import { GameClient } from "../workloads/client/client.ts";
import { staticDirectory } from "../workloads/gateway/gateway.ts";
import { openMap } from "../workloads/map-server/sim/maps.ts";
import type { Scenario } from "./scenario.ts";

const MAP = "busfield";
/** The box the bots stand and walk in: 12 cells wide, within view range (14) of each other. */
const BOX = { x0: 18, y0: 18, size: 12 };
/** After a viewReset, the whole view must be back within this. */
const RESUME_WITHIN_MS = 15_000;

interface Bot {
  i: number;
  client: GameClient;
  session: string;
  chatsSent: number;
  /** Chat texts received. */
  chats: Map<string, number>;
  /** Combat messages received, by `from>target:damage:hpLeft`. */
  hits: Map<string, number>;
  resets: number[];
  /** When the first AOI with an entering entity arrived after each reset. */
  resumed: number[];
  unknownUpdates: number;
  closed?: string;
  timers: NodeJS.Timeout[];
}

const bump = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + 1);
const hitKey = (from: number, target: number, damage: number, hpLeft: number) =>
  `${from}>${target}:${damage}:${hpLeft}`;

/** When the map server resent whole views (it had a resync request or reconnected itself). */
const resends: number[] = [];

/** The first resend at or after `t`. */
const resendAfter = (t: number) => resends.find((s) => s >= t);

function watch(bot: Bot): void {
  const c = bot.client as unknown as { apply(m: ServerMessage): void };
  const apply = c.apply.bind(c);
  // Seen before the client applies the message (it treats an update of an entity it does not
  // hold like an entry).
  c.apply = (m: ServerMessage) => {
    const now = Date.now();
    switch (m.type) {
      case "chatMsg":
        bump(bot.chats, m.text);
        break;
      case "combat":
        bump(bot.hits, hitKey(m.from, m.target, m.damage, m.hpLeft));
        break;
      case "viewReset":
        bot.resets.push(now);
        break;
      case "aoi": {
        const reset = bot.resets.at(-1);
        const resent = reset === undefined ? undefined : resendAfter(reset);
        // The first frame after the map server resent the views after this bot's reset.
        if (reset !== undefined && bot.resumed.length < bot.resets.length && resent !== undefined)
          bot.resumed.push(now);
        // Frames built before the resend are deltas over a view the reset cleared: updates of
        // unknown entities are expected until the resent view arrives, not after.
        if (reset !== undefined && (resent === undefined || now < resent + 1000)) break;
        const entering = new Set(m.enter.map((e) => e.id));
        for (const e of m.update)
          if (!bot.client.world.has(e.id) && !entering.has(e.id)) bot.unknownUpdates++;
        break;
      }
    }
    apply(m);
  };
}

/**
 * Reads every event batch of the region back from the stream, message by message (the stream
 * holds this scenario's region only).
 */
async function readStream(nc: NatsConnection, region: string): Promise<EventBatch[]> {
  const jsm = await jetstreamManager(nc);
  const st = (await jsm.streams.info(EVENT_STREAM)).state;
  const out: EventBatch[] = [];
  const filter = subjects.eventsForRegion(region).split(".");
  for (let seq = st.first_seq; seq <= st.last_seq && st.messages > 0; seq++) {
    const m = await jsm.streams.getMessage(EVENT_STREAM, { seq }).catch(() => undefined);
    if (!m) continue;
    const parts = m.subject.split(".");
    if (parts.length === filter.length && filter.every((p, i) => p === "*" || p === parts[i]))
      out.push(busDecode<EventBatch>(m.data));
  }
  return out;
}

export const bus: Scenario = async (log) => {
  // Read here, not at import: the e2e suite's short run sets them.
  const BOTS = Number(process.env.CHAOS_BOTS ?? 50);
  const RESTARTS = Number(process.env.CHAOS_NATS_RESTARTS ?? 3);
  const PLAY_MS = Number(process.env.CHAOS_PLAY_MS ?? 15_000);
  const OUTAGE_MS = Number(process.env.CHAOS_OUTAGE_MS ?? 1000);
  const CHAT_MS = Number(process.env.CHAOS_CHAT_MS ?? 2000);
  const t0 = Date.now();
  const running = await startLocalEnv({ services: ["flags-etcd", "redis", "postgres"], log });
  const env = running.env;
  // The bus: a NATS of the scenario's own, with the environment's PKI, to stop and start again.
  const natsDir = join(env.stateDir, "bus");
  mkdirSync(join(natsDir, "logs"), { recursive: true });
  const pki = storePki(join(env.stateDir, "store-pki"));
  let nats: Proc | undefined;
  const started = await startNats(natsDir, undefined, pki);
  nats = started.proc;
  env.nats = started.access;
  env.natsUrl = started.url;
  const port = Number(new URL(started.url).port);
  log(`NATS at ${started.url} (log: ${natsDir}/logs/nats.log; HYBRIDP2P_KEEP_STATE=1 keeps it)`);
  // In-process workloads take the stores' credentials from the environment, as pods do.
  Object.assign(process.env, envVars(env));
  testServingTls(); // this process trusts the test CA, as a player with the Region's CA file

  const violations: string[] = [];
  const bots: Bot[] = [];
  let gw: TestGateway | undefined;
  let ms: TestServer | undefined;
  let reader: NatsConnection | undefined;
  const stopBots = () => {
    for (const b of bots) for (const t of b.timers) clearInterval(t);
  };
  try {
    const svc: Services = {
      natsUrl: env.natsUrl,
      etcdEndpoints: env.etcdEndpoints!,
      redisUrl: env.redisUrl!,
      databaseUrl: env.databaseUrl!,
      nats: env.nats,
      etcd: env.etcd!,
      redis: env.redis!,
      postgres: env.postgres!,
    };
    const zone = unique("bz");
    gw = await startTestGateway({ natsUrl: svc.natsUrl, directory: staticDirectory({ [zone]: [MAP] }) });
    const eventWarnings: string[] = [];
    const otherWarnings: string[] = [];
    const registry = newRegistry();
    const mobsAt: Array<[number, number]> = [];
    for (let k = 0; k < 16; k++) mobsAt.push([BOX.x0 + (k % 4) * 4, BOX.y0 + Math.floor(k / 4) * 4]);
    ms = await startTestServer(svc, {
      region: gw.region,
      zone,
      pod: "bus-ms-0",
      maps: [MAP],
      prefix: `/${unique("chaosbus")}/v1/`,
      redisPrefix: `${unique("chaosbus")}:`,
      threads: 1,
      maxPlayers: BOTS + 10,
      registry,
      log: createLogger("map-server", {
        level: "warn",
        sink: (line) => (/event/.test(line) ? eventWarnings : otherWarnings).push(line),
      }),
      mapDef: () => openMap(MAP, 48, 48, { mobs: [{ type: 0, count: mobsAt.length, at: mobsAt }] }),
    });
    for (let i = 0; !(await ms.owns(MAP)); i++) {
      if (i > 300) throw new Error("the map server never took the map");
      await sleep(100);
    }
    // When the map server resends whole views (a private detail, read for the check only).
    const held = (ms.server as unknown as { held: Map<string, { sim: { resendViews(g: string): void } }> })
      .held;
    const sim = held.get(MAP)!.sim;
    const resend = sim.resendViews.bind(sim);
    sim.resendViews = (g: string) => {
      resends.push(Date.now());
      resend(g);
    };
    resends.length = 0;
    // An account holds a few characters (slots): ten per account.
    const chars: string[] = [];
    for (let i = 0; i < BOTS; i += 10)
      chars.push(
        ...(await createCharacters(
          svc.databaseUrl,
          Array.from({ length: Math.min(10, BOTS - i) }, (_, k) => ({
            name: `cb${i + k}_${unique("")}`.slice(0, 20),
            hp: 2000,
            str: 1,
            map: MAP,
            x: BOX.x0 + Math.floor(Math.random() * BOX.size),
            y: BOX.y0 + Math.floor(Math.random() * BOX.size),
          })),
        )),
      );

    // ---- the bots ---------------------------------------------------------------------------
    const tConnect = Date.now();
    for (let i = 0; i < BOTS; i += 10)
      await Promise.all(
        chars.slice(i, i + 10).map(async (id, k) => {
          const client = await GameClient.connect({
            url: gw!.url,
            token: await gw!.token(id, MAP, `cb${i + k}`),
            decodeMode: "full",
          });
          const bot: Bot = {
            i: i + k,
            client,
            session: client.session,
            chatsSent: 0,
            chats: new Map(),
            hits: new Map(),
            resets: [],
            resumed: [],
            unknownUpdates: 0,
            timers: [],
          };
          watch(bot);
          void client.closed.then((c) => {
            bot.closed = `${c.code} ${c.reason}`;
          });
          bots.push(bot);
        }),
      );
    log(`${bots.length} bots connected in ${((Date.now() - tConnect) / 1000).toFixed(1)} s`);
    for (const b of bots) {
      const jitter = () => Math.random() * 500;
      b.timers.push(
        setInterval(() => {
          b.chatsSent++;
          b.client.chat(`c${b.i}.${b.chatsSent}`);
        }, CHAT_MS + jitter()),
        setInterval(() => {
          const self = b.client.world.get(b.client.entity);
          let best: { id: number; d: number } | undefined;
          for (const e of b.client.world.values()) {
            if (e.kind !== "mob" || !e.alive) continue;
            const d = self ? Math.max(Math.abs(e.x - self.x), Math.abs(e.y - self.y)) : 0;
            if (!best || d < best.d) best = { id: e.id, d };
          }
          if (best) b.client.attack(best.id);
        }, 1500 + jitter()),
        setInterval(
          () =>
            b.client.move(
              BOX.x0 + Math.floor(Math.random() * BOX.size),
              BOX.y0 + Math.floor(Math.random() * BOX.size),
            ),
          5000 + jitter() * 4,
        ),
      );
    }

    // ---- the restarts -------------------------------------------------------------------------
    let maxReconnect = 0;
    let maxResume = 0;
    await sleep(PLAY_MS);
    for (let k = 0; k < RESTARTS; k++) {
      const resyncs = gw.gateway.stats.resyncs;
      const resetsBefore = bots.map((b) => b.resets.length);
      const tStop = Date.now();
      if (k % 2 === 0) {
        const child = nats.child;
        const exited = new Promise((r) => child.once("exit", r));
        child.kill("SIGKILL");
        await exited;
        await nats.stop();
      } else await nats.stop();
      nats = undefined;
      await sleep(OUTAGE_MS);
      nats = (await startNats(natsDir, port, pki)).proc;
      log(
        `restart ${k + 1}: NATS ${k % 2 === 0 ? "killed" : "stopped"}, back after ${Date.now() - tStop} ms`,
      );
      const end = Date.now() + 60_000;
      let reconnected = 0;
      for (;;) {
        if (!reconnected && gw.gateway.stats.resyncs > resyncs) reconnected = Date.now();
        const live = bots.filter((b) => !b.closed);
        const back = live.filter(
          (b, n) =>
            b.resets.length > resetsBefore[bots.indexOf(b)]! && b.resumed.length >= b.resets.length && n >= 0,
        );
        if (reconnected && back.length === live.length) break;
        if (Date.now() > end) {
          violations.push(
            `restart ${k + 1}: ${reconnected ? `${live.length - back.length} bots without their view back` : "the gateway never reconnected"} 60 s after the stop`,
          );
          break;
        }
        await sleep(50);
      }
      const rel = (t: number) => ((t - tStop) / 1000).toFixed(2);
      log(
        `restart ${k + 1}: view resends at ${
          resends
            .filter((t) => t >= tStop)
            .map(rel)
            .join(", ") || "none"
        } s; bot 0 reset at ${
          bots[0]?.resets
            .filter((t) => t >= tStop)
            .map(rel)
            .join(", ") || "never"
        } s`,
      );
      const reconnectS = reconnected ? (reconnected - tStop) / 1000 : Number.NaN;
      const resumeS = (Date.now() - tStop) / 1000;
      maxReconnect = Math.max(maxReconnect, reconnectS);
      maxResume = Math.max(maxResume, resumeS);
      log(
        `restart ${k + 1}: gateway reconnected after ${reconnectS.toFixed(1)} s, every view back after ${resumeS.toFixed(1)} s`,
      );
      await sleep(PLAY_MS);
    }

    // ---- drain and compare --------------------------------------------------------------------
    stopBots();
    reader = await connectNats(started.access);
    const jsm = await jetstreamManager(reader);
    const durable = `gw_${gw.region}_gw-0`.replace(/[^A-Za-z0-9_-]/g, "_");
    let drained = false;
    for (let i = 0; i < 300 && !drained; i++) {
      await sleep(100);
      const ci = await jsm.consumers.info(EVENT_STREAM, durable).catch(() => undefined);
      drained = i >= 20 && ci !== undefined && ci.num_pending === 0 && ci.num_ack_pending === 0;
    }
    if (!drained)
      violations.push("the gateway's event consumer did not catch up within 30 s of the end of play");
    await sleep(500);
    const batches = await readStream(reader, gw.region);
    const bySession = new Map(bots.map((b) => [b.session, b]));
    let chatStored = 0;
    let chatExpected = 0;
    let chatDelivered = 0;
    let chatDuplicates = 0;
    let hitsStored = 0;
    let hitExpected = 0;
    const hitWanted = new Map<Bot, Map<string, number>>();
    const lostExamples: string[] = [];
    const fences = new Set<string>();
    for (const batch of batches) {
      fences.add(batch.fence);
      for (const ev of batch.events) {
        if (ev.k === "chat") {
          chatStored++;
          for (const sid of ev.to) {
            const b = bySession.get(sid);
            if (!b) continue;
            chatExpected++;
            const n = b.chats.get(ev.text) ?? 0;
            if (n > 0) chatDelivered++;
            else if (lostExamples.length < 5)
              lostExamples.push(`chat "${ev.text}" (tick ${batch.tick}) to bot ${b.i}`);
            if (n > 1) chatDuplicates += n - 1;
          }
        } else if (ev.k === "hit") {
          hitsStored++;
          for (const sid of ev.to) {
            const b = bySession.get(sid);
            if (!b) continue;
            hitExpected++;
            const m = hitWanted.get(b) ?? new Map<string, number>();
            hitWanted.set(b, m);
            bump(m, hitKey(ev.from, ev.target, ev.damage, ev.hpLeft));
          }
        }
      }
    }
    let hitLost = 0;
    let hitDelivered = 0;
    let hitDuplicates = 0;
    for (const [b, want] of hitWanted)
      for (const [k, n] of want) {
        const got = b.hits.get(k) ?? 0;
        hitDelivered += Math.min(n, got);
        hitDuplicates += Math.max(0, got - n);
        if (got < n) {
          hitLost += n - got;
          if (lostExamples.length < 10) lostExamples.push(`hit ${k} to bot ${b.i} (${got} of ${n})`);
        }
      }
    const chatLost = chatExpected - chatDelivered;
    const chatSent = bots.reduce((n, b) => n + b.chatsSent, 0);
    if (chatLost > 0) violations.push(`${chatLost} chat deliveries lost, e.g. ${lostExamples.join("; ")}`);
    if (hitLost > 0) violations.push(`${hitLost} combat deliveries lost, e.g. ${lostExamples.join("; ")}`);
    if (chatDuplicates + hitDuplicates > 0)
      violations.push(
        `${chatDuplicates} chat and ${hitDuplicates} combat deliveries made twice (a redelivered batch handed over again)`,
      );
    if (hitsStored === 0) violations.push("no combat happened (the check of combat events checked nothing)");
    const failures = (
      await registry.getSingleMetric("hybridp2p_map_event_publish_failures_total")?.get()
    )?.values.reduce((n, v) => n + v.value, 0);
    if (failures) violations.push(`the map server dropped ${failures} event batches it could not store`);
    if (eventWarnings.length > 0)
      violations.push(
        `map server: ${eventWarnings.length} warnings, e.g. ${eventWarnings.slice(0, 3).join("; ")}`,
      );
    if (otherWarnings.length > 0)
      log(`map server: ${otherWarnings.length} other warnings, e.g. ${otherWarnings.slice(0, 3).join("; ")}`);
    if (fences.size > 1) log(`note: ${fences.size} owner fences in the stream (the map changed hands)`);
    const seqGaps = bots.reduce((n, b) => n + b.client.seqErrors.length, 0);
    if (seqGaps > 0)
      violations.push(
        `${seqGaps} sequence breaks, e.g. ${bots
          .flatMap((b) => b.client.seqErrors.map((e) => `bot ${b.i}: ${e}`))
          .slice(0, 3)
          .join("; ")}`,
      );
    const closed = bots.filter((b) => b.closed);
    if (closed.length > 0)
      violations.push(`${closed.length} bots disconnected, e.g. bot ${closed[0]!.i}: ${closed[0]!.closed}`);
    const unknown = bots.reduce((n, b) => n + b.unknownUpdates, 0);
    if (unknown > 0)
      violations.push(`${unknown} updates of entities a bot's view did not hold (views not resent)`);
    const resumeMs = bots.flatMap((b) => b.resets.map((t, n) => (b.resumed[n] ?? Number.NaN) - t));
    const slow = resumeMs.filter((ms) => !(ms <= RESUME_WITHIN_MS));
    if (slow.length > 0) violations.push(`${slow.length} view resets not followed by the view within 15 s`);
    const notReset = bots.filter((b) => !b.closed && b.resets.length < RESTARTS);
    if (notReset.length > 0)
      violations.push(
        `${notReset.length} bots got fewer viewResets than restarts (bot ${notReset[0]!.i}: ${notReset[0]!.resets.length})`,
      );
    log(
      `stream: ${batches.length} batches, ${chatStored} chats, ${hitsStored} hits; sent ${chatSent} chats (${chatSent - chatStored} never stored); ${chatDuplicates} duplicate chat deliveries; ${hitDelivered} of ${hitExpected} combat deliveries`,
    );
    return {
      runs: RESTARTS,
      violations,
      figures: {
        bots: BOTS,
        restarts: RESTARTS,
        chat_sent: chatSent,
        chat_stored: chatStored,
        chat_not_stored: chatSent - chatStored,
        chat_delivered: chatDelivered,
        chat_lost: chatLost,
        chat_duplicates: chatDuplicates,
        combat_events: hitsStored,
        combat_delivered: hitDelivered,
        combat_lost: hitLost,
        combat_duplicates: hitDuplicates,
        seq_gaps: seqGaps,
        max_reconnect_seconds: maxReconnect.toFixed(1),
        max_resume_seconds: maxResume.toFixed(1),
        seconds: ((Date.now() - t0) / 1000).toFixed(0),
      },
    };
  } finally {
    stopBots();
    await Promise.all(bots.map((b) => b.client.close().catch(() => undefined)));
    await reader?.drain().catch(() => undefined);
    await gw?.stop().catch(() => undefined);
    await ms?.close().catch(() => undefined);
    await nats?.stop();
    await running.stop();
  }
};
