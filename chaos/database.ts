// PostgreSQL restarts during play: one real map server (workloads/map-server, in process, on the
// local stores with auth and TLS) with CHAOS_PLAYERS players (default 20) fighting mobs for
// experience and zeny, logging out and back in now and then, while PostgreSQL is killed
// (SIGKILL: a crash, recovery on the next start) and started again on the same port and data
// directory CHAOS_PG_RESTARTS times (default 3), each time down for CHAOS_PG_DOWN_MS (3000).
// The map server saves characters every CHAOS_SAVE_WINDOW_MS (default 3000; the product's
// HYBRIDP2P_PERSIST_INTERVAL, 30 s by default: its documented save window), on leave and on
// shutdown. The scenario's database sessions commit durably (synchronous_commit=on, as in
// production; the local PostgreSQL's default is off for speed): with CHAOS_PG_DURABLE=0 a leave
// acknowledged tens of milliseconds before a SIGKILL is lost in recovery, and the login check
// below reports it.
//
// Ground truth is kept on the test side: every `loot` event the server emits (experience and
// zeny, per character, with the time it arrived). The map server has no inventory: loot is
// experience and zeny, so those are the "items" that must not be duplicated.
//
// Checked after the restarts and a clean stop of the map server (which persists everyone):
// - no character's persisted experience or zeny exceeds what it was given (nothing duplicated),
//   and no character row is duplicated;
// - each time a character logs in again, the database holds what it had when it logged out
//   (a leave saves the character; nothing is earned between the two);
// - each character lost at most what it earned in the save window (plus 500 ms of slack for
//   the save itself) before each fault, summed over the faults. What was earned while the
//   database was down must not be lost: the server holds it and saves it when it can.
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import {
  type AoiFrame,
  decode,
  type EntityState,
  type EventBatch,
  type MapAddress,
  subjects,
} from "../platform/bus/contract.ts";
import { connectNats } from "../platform/stores/access.ts";
import { sleep } from "../platform/time.ts";
import { envVars, startLocalEnv } from "../testkit/local/services.ts";
import {
  createCharacters,
  FakeGateway,
  readCharacter,
  servicesFrom,
  startTestServer,
  type TestServer,
  unique,
} from "../testkit/map-server/harness.ts";
import { createPool } from "../workloads/db/pool.ts";
import { openMap } from "../workloads/map-server/sim/maps.ts";
import type { Scenario } from "./scenario.ts";

const REGION = "chaos";
const MAP = "chaosdb";
const SLACK_MS = 500;

/** Cumulative experience and zeny of one character as the server emitted them, over time. */
class Truth {
  readonly points: Array<{ t: number; exp: number; zeny: number }> = [{ t: 0, exp: 0, zeny: 0 }];

  add(t: number, exp: number, zeny: number): void {
    const last = this.points.at(-1)!;
    this.points.push({ t, exp: last.exp + exp, zeny: last.zeny + zeny });
  }

  get total() {
    return this.points.at(-1)!;
  }

  /** What it had at time `t`. */
  at(t: number) {
    let v = this.points[0]!;
    for (const p of this.points) {
      if (p.t > t) break;
      v = p;
    }
    return v;
  }
}

interface Bot {
  index: number;
  characterId: string;
  gw: FakeGateway;
  session?: string;
  self?: number;
  seq: number;
  logins: number;
  /** Progress found missing at earlier logins. */
  lost: { exp: number; zeny: number };
  /** The last logout: when its reply came, and whether it said the character was saved. */
  left?: { at: number; ok: boolean };
}

export const database: Scenario = async (log) => {
  // Read here, not at import: a short run sets them.
  const PLAYERS = Number(process.env.CHAOS_PLAYERS ?? 20);
  const RESTARTS = Number(process.env.CHAOS_PG_RESTARTS ?? 3);
  const DOWN_MS = Number(process.env.CHAOS_PG_DOWN_MS ?? 3000);
  const SAVE_WINDOW_MS = Number(process.env.CHAOS_SAVE_WINDOW_MS ?? 3000);
  /** A player logs out and back in about this often (a leave saves the character). */
  const RELOG_MS = Number(process.env.CHAOS_RELOG_MS ?? 5000);
  const DURABLE = process.env.CHAOS_PG_DURABLE !== "0";

  const running = await startLocalEnv({ services: ["flags-etcd", "nats", "redis", "postgres"], log });
  const env = running.env;
  const pg = running.postgres!;
  // The fake gateways and the test's own clients use the local administrator's credentials.
  Object.assign(process.env, envVars(env));
  const svc = servicesFrom(env);
  const violations: string[] = [];
  const addr: MapAddress = { region: REGION, zone: unique("z"), map: MAP };
  let ts: TestServer | undefined;
  let events: Subscription | undefined;
  let evNc: NatsConnection | undefined;
  const gateways: FakeGateway[] = [];
  let playing = true;
  try {
    // The local PostgreSQL runs with synchronous_commit=off (fast tests): a commit acknowledged
    // just before a SIGKILL could be lost in recovery, which no application can make up for.
    // Production databases commit durably, so this one does too for the scenario's sessions.
    // CHAOS_PG_DURABLE=0 keeps the local default (and shows what a non-durable database loses).
    const admin = createPool(env.postgres!, { max: 1 });
    try {
      if (DURABLE) await admin.query("ALTER DATABASE hybridp2p SET synchronous_commit = on");
    } finally {
      await admin.end();
    }
    // ---- the world: one map with four mobs per player, the characters in PostgreSQL -----------
    const mapDef = () => openMap(MAP, 48, 48, { mobs: [{ type: 1, count: 4 * PLAYERS }] });
    const specs = Array.from({ length: PLAYERS }, (_, i) => ({
      name: unique(`db${i}_`),
      str: 30,
      hp: 2000,
      map: MAP,
      x: 4 + ((i * 7) % 40),
      y: 4 + ((i * 13) % 40),
    }));
    const ids: string[] = [];
    // An account holds at most 15 characters (slots 0 to 14).
    for (let i = 0; i < specs.length; i += 15)
      ids.push(...(await createCharacters(svc.databaseUrl, specs.slice(i, i + 15))));
    ts = await startTestServer(svc, {
      region: REGION,
      zone: addr.zone,
      pod: "chaos-db-0",
      maps: [MAP],
      prefix: `/${unique("chaosdb")}/v1/`,
      redisPrefix: `${unique("chaosdb")}:`,
      mapDef,
      persistMs: SAVE_WINDOW_MS,
      worldEvents: false,
    });
    for (let g = 0; g < 2; g++)
      gateways.push(await FakeGateway.open(svc.natsUrl, REGION, `gw-db-${g}`, env.nats));

    // ---- ground truth: the loot events the server emits ---------------------------------------
    const truth = new Map(ids.map((id) => [id, new Truth()]));
    const ents = new Map<number, EntityState>(); // what the players saw, by entity id
    let lootEvents = 0;
    evNc = await connectNats(env.nats!, { name: "chaos-db-events" });
    events = evNc.subscribe(subjects.events(addr), {
      callback: (err, msg) => {
        if (err) return;
        const t = Date.now();
        for (const e of decode<EventBatch>(msg.data).events) {
          if (e.k === "loot") {
            truth.get(e.characterId)?.add(t, e.exp, e.zeny);
            lootEvents++;
          }
          // Deaths and respawns out of a player's view too: no chasing a dead mob.
          const ent = e.k === "death" || e.k === "respawn" ? ents.get(e.entity) : undefined;
          if (ent && e.k === "death") ent.alive = false;
          if (ent && e.k === "respawn") Object.assign(ent, { alive: true, x: e.x, y: e.y });
        }
      },
    });
    await evNc.flush();

    // ---- players: chase the nearest living mob, attack it, log out and in now and then ---------
    let framesSeen = 0;
    const readFrames = () => {
      for (const gw of gateways) {
        for (const f of gw.frames.splice(0) as AoiFrame[]) {
          framesSeen++;
          for (const e of f.ents) ents.set(e.id, e);
        }
      }
    };
    let relogs = 0;
    let leavesRefused = 0;
    let joinsRefused = 0;
    let relogsLost = 0;
    const kills: number[] = [];
    const bots: Bot[] = ids.map((characterId, index) => ({
      index,
      characterId,
      gw: gateways[index % gateways.length]!,
      seq: 0,
      logins: 0,
      lost: { exp: 0, zeny: 0 },
    }));
    const act = async (b: Bot) => {
      if (!b.session) {
        const session = unique(`s${b.index}-`);
        let r: Awaited<ReturnType<FakeGateway["join"]>>;
        try {
          r = await b.gw.join(addr, session, b.characterId, false, 3000);
        } catch {
          joinsRefused++; // the database is away: try again
          return;
        }
        b.session = session;
        b.self = r.entity;
        if (b.logins++ === 0) return; // the first login
        // Logged in again: the database must hold everything it had when it logged out (it
        // earned nothing since; a periodic save since the login can only add to it).
        const total = truth.get(b.characterId)!.total;
        // Less what earlier logins already found missing (counted once).
        const had = { exp: total.exp - b.lost.exp, zeny: total.zeny - b.lost.zeny };
        try {
          const row = await readCharacter(svc.databaseUrl, b.characterId);
          if (Number(row.base_exp) < had.exp || Number(row.zeny) < had.zeny) {
            relogsLost++;
            b.lost.exp += Math.max(0, had.exp - Number(row.base_exp));
            b.lost.zeny += Math.max(0, had.zeny - Number(row.zeny));
            const kill = kills.map((t) => (b.left?.at ?? 0) - t).sort((x, y) => Math.abs(x) - Math.abs(y))[0];
            violations.push(
              `player ${b.index} (character ${b.characterId}) logged in again with exp ${row.base_exp} zeny ${row.zeny} in the database; it logged out with ${had.exp} exp and ${had.zeny} zeny (leave ${b.left?.ok ? "ok" : "refused"}, ${kill === undefined ? "no PostgreSQL kill yet" : kill < 0 ? `${-kill} ms before the nearest PostgreSQL kill` : `${kill} ms after the nearest PostgreSQL kill`})`,
            );
          }
        } catch (err) {
          log(`player ${b.index}: could not read its character after the login: ${String(err)}`);
        }
        return;
      }
      if (Math.random() < 400 / RELOG_MS) {
        const session = b.session;
        b.session = undefined;
        relogs++;
        b.left = { at: Date.now(), ok: false };
        try {
          const r = await b.gw.leave(addr, session);
          b.left = { at: Date.now(), ok: r.ok };
          if (!r.ok) leavesRefused++;
        } catch {
          leavesRefused++;
        }
        return;
      }
      const me = ents.get(b.self!);
      if (!me) return;
      let best: EntityState | undefined;
      let bestD = Number.POSITIVE_INFINITY;
      for (const e of ents.values()) {
        if (e.kind !== "mob" || !e.alive) continue;
        const d = Math.max(Math.abs(e.x - me.x), Math.abs(e.y - me.y));
        if (d < bestD) {
          bestD = d;
          best = e;
        }
      }
      if (!best) return;
      const inputs = [];
      if (bestD > 1.2)
        inputs.push({
          s: b.session,
          seq: ++b.seq,
          k: "move" as const,
          x: Math.floor(best.x),
          y: Math.floor(best.y),
        });
      inputs.push({ s: b.session, seq: ++b.seq, k: "attack" as const, target: best.id });
      await b.gw.send(addr, inputs);
    };
    const botLoops = bots.map(async (b) => {
      await sleep(Math.random() * 400);
      while (playing) {
        readFrames();
        await act(b).catch((err) => log(`player ${b.index}: ${String(err)}`));
        await sleep(400);
      }
    });

    // ---- the faults ----------------------------------------------------------------------------
    await sleep(3000);
    const faults: Array<{ down: number; up: number }> = [];
    for (let r = 0; r < RESTARTS; r++) {
      await sleep(2000 + Math.random() * 2000);
      const down = Date.now();
      kills.push(down);
      await pg.kill();
      await sleep(DOWN_MS);
      await pg.start();
      const up = Date.now();
      faults.push({ down, up });
      log(
        `restart ${r + 1}/${RESTARTS}: PostgreSQL down ${up - down} ms; ${lootEvents} loot events, ${relogs} relogs (${leavesRefused} leaves refused, ${joinsRefused} joins refused) so far`,
      );
    }
    // Play on for two save windows after the last restart, then a clean stop.
    await sleep(Math.max(3000, 2 * SAVE_WINDOW_MS));
    playing = false;
    await Promise.all(botLoops);
    await ts.close();
    ts = undefined;
    await sleep(500); // the last ticks' events on their way
    await evNc.drain();
    events = undefined;
    evNc = undefined;

    // ---- the check -----------------------------------------------------------------------------
    let expGained = 0;
    let expPersisted = 0;
    let maxExpLost = 0;
    let duplicated = 0;
    for (const [i, id] of ids.entries()) {
      const gt = truth.get(id)!;
      const row = await readCharacter(svc.databaseUrl, id);
      const exp = Number(row.base_exp);
      const zeny = Number(row.zeny);
      const { exp: gtExp, zeny: gtZeny } = gt.total;
      expGained += gtExp;
      expPersisted += exp;
      if (exp > gtExp || zeny > gtZeny) {
        duplicated++;
        violations.push(
          `player ${i} (character ${id}): persisted exp ${exp} zeny ${zeny}, more than the ${gtExp} exp and ${gtZeny} zeny it was given`,
        );
      }
      let allowExp = 0;
      let allowZeny = 0;
      for (const f of faults) {
        const before = gt.at(f.down - SAVE_WINDOW_MS - SLACK_MS);
        const atFault = gt.at(f.down);
        allowExp += atFault.exp - before.exp;
        allowZeny += atFault.zeny - before.zeny;
      }
      const lostExp = gtExp - exp;
      const lostZeny = gtZeny - zeny;
      maxExpLost = Math.max(maxExpLost, lostExp);
      if (lostExp > allowExp || lostZeny > allowZeny)
        violations.push(
          `player ${i} (character ${id}): lost ${lostExp} exp and ${lostZeny} zeny of ${gtExp} and ${gtZeny}; at most ${allowExp} exp and ${allowZeny} zeny were earned in the ${SAVE_WINDOW_MS} ms save windows before the faults`,
        );
    }
    // No character row twice (the schema's unique index should make this impossible).
    const pool = createPool(env.postgres!, { max: 1 });
    try {
      const r = await pool.query<{ n: string }>(
        "SELECT count(*) - count(DISTINCT lower(name)) AS n FROM characters WHERE id = ANY($1::bigint[])",
        [ids],
      );
      const sync = (await pool.query<{ synchronous_commit: string }>("SHOW synchronous_commit")).rows[0];
      log(`the scenario's sessions ran with synchronous_commit=${sync?.synchronous_commit}`);
      const rows = Number(r.rows[0]!.n);
      if (rows > 0) {
        duplicated += rows;
        violations.push(`${rows} duplicated character rows`);
      }
    } finally {
      await pool.end();
    }
    if (expGained === 0) violations.push("no experience gained at all: the players did not play");
    log(
      `${lootEvents} loot events, ${framesSeen} frames, ${relogs} relogs (${leavesRefused} leaves refused, ${joinsRefused} joins refused)`,
    );
    return {
      runs: faults.length,
      violations,
      figures: {
        players: PLAYERS,
        restarts: faults.length,
        relogs,
        leaves_refused: leavesRefused,
        relogs_lost: relogsLost,
        exp_gained: expGained,
        exp_persisted: expPersisted,
        max_exp_lost: maxExpLost,
        duplicated_items: duplicated,
        save_window_ms: SAVE_WINDOW_MS,
      },
    };
  } finally {
    playing = false;
    events?.unsubscribe();
    await evNc?.close().catch(() => undefined);
    await ts?.close().catch(() => undefined);
    await Promise.all(gateways.map((g) => g.close()));
    await running.stop();
  }
};
