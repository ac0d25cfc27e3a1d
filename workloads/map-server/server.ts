// The map server: owns maps through etcd, simulates them on the worker pool at a fixed tick
// rate, takes client input from NATS, publishes AOI frames (core NATS) and zone events
// (JetStream), keeps hot session state in Redis and persists characters to PostgreSQL.
//
// Sim state changes only between ticks: joins and leaves wait for the running tick (`idle()`),
// inputs just queue. Nothing is published or persisted for a map unless `ownership.holds(map)`
// at that moment (see ownership.ts for why that excludes two owners).
import { type JetStreamClient, jetstream } from "@nats-io/jetstream";
import type { Msg, NatsConnection, Subscription } from "@nats-io/transport-node";
import type { Etcd3 } from "etcd3";
import type { Redis } from "ioredis";
import type pg from "pg";
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import {
  decode,
  type EventBatch,
  encode,
  eventMessageId,
  type InputBatch,
  type JoinReply,
  type JoinRequest,
  type LeaveReply,
  type LeaveRequest,
  type MapAddress,
  type MapMode,
  type OwnerNotice,
  subjects,
  type ViewResync,
} from "../../platform/bus/contract.ts";
import { ensureEventStream } from "../../platform/bus/stream.ts";
import type { Logger } from "../../platform/log.ts";
import type { ModeSource } from "./modes.ts";
import { EventOutbox } from "./outbox.ts";
import { MapOwnership } from "./ownership.ts";
import { WorkerPool } from "./pool.ts";
import { generateMap, hashString, type MapDef } from "./sim/maps.ts";
import { MapSim, type PlayerInfo, type Session, type TickResult } from "./sim/world.ts";
import { type CharacterSave, CharacterStore, type HotSession, HotStore } from "./store.ts";
import { WorldEvents } from "./world-events.ts";

/** Entity slots a map keeps free for world-event mobs (bosses, invasions). */
export const WORLD_EVENT_SLOTS = 512;

export interface MapServerOptions {
  region: string;
  zone: string;
  pod: string;
  maps: string[];
  threads: number;
  tickHz: number;
  maxPlayers: number;
  seed?: number;
  nc: NatsConnection;
  etcd: Etcd3;
  redis: Redis;
  pg: pg.Pool;
  modes: ModeSource;
  log: Logger;
  registry: Registry;
  /** Flag-plane prefix in etcd. */
  prefix?: string;
  redisPrefix?: string;
  /** Do not tick on a timer; the caller calls step() (tests). */
  manualTick?: boolean;
  /** Hot state to Redis every this many ticks. Default: once a second. */
  hotSaveTicks?: number;
  /** Characters to PostgreSQL this often. Default 30 s. */
  persistMs?: number;
  ownershipTtlSeconds?: number;
  mapDef?: (map: string) => MapDef;
  /** Apply world events (WorldEvent resources, platform/bus/world.ts). Default true. */
  worldEvents?: boolean;
  /** The live reports' period (tests). */
  worldReportMs?: number;
  /**
   * The simulation cannot go on (a worker thread died). The process should exit: its lease then
   * expires and another pod takes the maps. Default: log only.
   */
  onFatal?: (err: Error) => void;
}

interface Held {
  sim: MapSim;
  addr: MapAddress;
  subs: Subscription[];
  /** Gateways that asked for their sessions' whole views again (applied between ticks). */
  resync: Set<string>;
  /** Its event batches on their way into JetStream (retried in order through bus outages). */
  outbox: EventOutbox;
}

export class MapServer {
  readonly opts: MapServerOptions;
  readonly ownership: MapOwnership;
  private readonly pool: WorkerPool;
  private readonly hot: HotStore;
  private readonly chars: CharacterStore;
  private readonly js: JetStreamClient;
  private readonly held = new Map<string, Held>();
  private readonly attaching = new Map<string, Promise<void>>();
  private readonly background = new Set<Promise<unknown>>();
  /**
   * Characters that left while PostgreSQL could not take their save, by character id: kept
   * here and saved again with every periodic persist, before the character joins again, and on
   * shutdown, so an outage of the database loses no progress.
   */
  private readonly unsaved = new Map<string, CharacterSave>();
  private ticking: Promise<unknown> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private ticks = 0;
  private lastPersist = Date.now();
  private readonly m: ReturnType<typeof metrics>;
  readonly world: WorldEvents | undefined;

  constructor(opts: MapServerOptions) {
    this.opts = opts;
    this.ownership = new MapOwnership({
      client: opts.etcd,
      prefix: opts.prefix,
      region: opts.region,
      zone: opts.zone,
      maps: opts.maps,
      pod: opts.pod,
      ttlSeconds: opts.ownershipTtlSeconds,
      log: opts.log,
    });
    this.pool = new WorkerPool(opts.threads);
    this.hot = new HotStore(opts.redis, opts.redisPrefix);
    this.chars = new CharacterStore(opts.pg);
    this.js = jetstream(opts.nc);
    this.m = metrics(opts.registry);
    this.m.budget.set(1 / opts.tickHz);
    if (opts.worldEvents !== false)
      this.world = new WorldEvents({
        nc: opts.nc,
        redis: opts.redis,
        region: opts.region,
        zone: opts.zone,
        pod: opts.pod,
        redisPrefix: opts.redisPrefix ?? "hp2p:",
        log: opts.log,
        registry: opts.registry,
        maps: () => [...this.held].map(([map, h]) => [map, h.sim] as [string, MapSim]),
        reportIntervalMs: opts.worldReportMs,
      });
  }

  async start(): Promise<void> {
    await ensureEventStream(this.opts.nc);
    await this.world?.start();
    // Frames and resync requests may have been lost while the bus was away (the gateway asks
    // again when its own connection comes back; this covers a request made before ours did).
    void (async () => {
      for await (const st of this.opts.nc.status()) {
        if (this.stopped) break;
        if (st.type === "reconnect")
          for (const h of this.held.values())
            for (const s of h.sim.sessions.values()) h.resync.add(s.gateway);
      }
    })();
    this.ownership.on("acquired", (map, fence) => {
      const p = this.attach(map, fence)
        .then((ok) => {
          // A map this pod cannot run (Redis away, ...) goes back, so another pod or a later try takes it.
          if (!ok && this.ownership.holds(map)) return this.ownership.release(map);
        })
        .catch((err) => {
          this.opts.log.warn("could not start a map, giving it back", { map, err });
          return this.ownership.release(map);
        })
        .finally(() => this.attaching.delete(map));
      this.attaching.set(map, p);
      this.track(p);
    });
    this.ownership.on("lost", (map, reason) => this.detach(map, reason));
    this.ownership.on("surplus", (map) => this.track(this.handOver(map)));
    await this.ownership.start();
    if (!this.opts.manualTick) this.schedule();
  }

  /** Maps this pod simulates right now. */
  maps(): string[] {
    return [...this.held.keys()].sort();
  }

  sim(map: string): MapSim | undefined {
    return this.held.get(map)?.sim;
  }

  /** Resolves once every acquired map is attached (tests). */
  async settled(): Promise<void> {
    while (this.attaching.size > 0) await Promise.all(this.attaching.values());
  }

  // ---- maps -----------------------------------------------------------------------------------

  private addr(map: string): MapAddress {
    return { region: this.opts.region, zone: this.opts.zone, map };
  }

  /** Starts simulating a map this pod just acquired; false when it must not run it. */
  private async attach(map: string, fence: string): Promise<boolean> {
    const { region, zone, log } = this.opts;
    if (this.held.has(map)) return true;
    if (!(await this.hot.claim(region, zone, map, fence))) {
      log.warn("hot state already claimed by a newer owner", { map, fence });
      return false;
    }
    const def = (this.opts.mapDef ?? ((n: string) => generateMap(n)))(map);
    const mobs = def.mobs.reduce((n, s) => n + s.count, 0);
    const sim = new MapSim(def, {
      capacity: this.opts.maxPlayers + mobs + (this.opts.worldEvents === false ? 0 : WORLD_EVENT_SLOTS),
      playerSlots: this.opts.maxPlayers,
      tickHz: this.opts.tickHz,
      seed: ((this.opts.seed ?? 1) ^ hashString(map)) >>> 0,
    });
    sim.fence = fence;
    sim.setMode(this.opts.modes.mode(map));
    const restored = await this.hot.load(region, zone, map);
    await this.idle();
    if (this.held.has(map)) return true;
    if (!this.ownership.holds(map) || this.stopped) return false;
    try {
      sim.restore(restored);
    } catch (err) {
      log.warn("could not restore every session", { map, err });
    }
    this.pool.attach(map, sim);
    const addr = this.addr(map);
    const held: Held = {
      sim,
      addr,
      subs: [],
      resync: new Set(),
      outbox: new EventOutbox({
        publish: (subject, data, msgID) => this.js.publish(subject, data, { msgID }),
        holds: () => this.held.get(map) === held && this.ownership.holds(map),
        failed: (item, err) =>
          this.opts.log.debug("event batch not stored yet, retrying", { map, tick: item.tick, err }),
        dropped: (item, reason) => {
          this.m.eventFailures.inc();
          this.opts.log.warn("event batch not stored", { map, tick: item.tick, reason });
        },
      }),
    };
    this.held.set(map, held);
    const nc = this.opts.nc;
    held.subs.push(
      nc.subscribe(subjects.input(addr), {
        callback: (err, msg) => {
          if (!err) this.onInput(held, msg);
        },
      }),
      nc.subscribe(subjects.join(addr), {
        callback: (err, msg) => {
          if (!err) this.track(this.onJoin(held, msg));
        },
      }),
      nc.subscribe(subjects.leave(addr), {
        callback: (err, msg) => {
          if (!err) this.track(this.onLeave(held, msg));
        },
      }),
      nc.subscribe(subjects.resync(addr), {
        callback: (err, msg) => {
          if (err) return;
          try {
            held.resync.add(decode<ViewResync>(msg.data).gateway);
          } catch {
            this.opts.log.warn("undecodable resync request", { map });
          }
        },
      }),
    );
    this.notice(held);
    this.m.owned.set(this.held.size);
    log.info("map attached", { map, fence, restoredSessions: restored.length, mode: sim.mode });
    return true;
  }

  /** Graceful handover of one map (rebalancing): save its state, stop it, then free the key. */
  private async handOver(map: string): Promise<void> {
    await this.attaching.get(map);
    await this.idle();
    const h = this.held.get(map);
    if (h && this.ownership.holds(map)) {
      const sessions = [...h.sim.sessions.values()].map((s) => this.hotSession(h.sim, s));
      this.detach(map, "handed over to balance the zone");
      await this.hot
        .save(this.opts.region, this.opts.zone, map, h.sim.fence, sessions)
        .catch((err) => this.opts.log.warn("hot state not saved before handover", { map, err }));
    }
    await this.ownership.release(map);
  }

  /** Stops simulating a map at once: no more input, ticks or publishing for it. */
  private detach(map: string, reason: string): void {
    const h = this.held.get(map);
    if (!h) return;
    for (const s of h.subs) s.unsubscribe();
    this.held.delete(map);
    this.world?.forget(map);
    this.pool.detach(map);
    this.m.owned.set(this.held.size);
    for (const g of [this.m.players, this.m.entities, this.m.fanout]) g.remove(map);
    this.opts.log.warn("map released", { map, reason });
  }

  private notice(h: Held): void {
    const n: OwnerNotice = {
      v: 1,
      map: h.addr.map,
      owner: this.opts.pod,
      fence: h.sim.fence,
      mode: h.sim.mode,
      tickHz: this.opts.tickHz,
    };
    this.opts.nc.publish(subjects.owner(h.addr), encode(n));
    for (const mode of ["server", "p2p", "fallback"] as const)
      this.m.mode.set({ map: h.addr.map, mode }, mode === h.sim.mode ? 1 : 0);
  }

  // ---- bus handlers ---------------------------------------------------------------------------

  private onInput(h: Held, msg: Msg): void {
    let batch: InputBatch;
    try {
      batch = decode<InputBatch>(msg.data);
    } catch {
      return;
    }
    if (!Array.isArray(batch?.inputs)) return;
    // A gateway speaks only for the sessions it holds.
    for (const i of batch.inputs) {
      if (i && typeof i.s === "string" && h.sim.sessions.get(i.s)?.gateway === batch.gateway) h.sim.input(i);
    }
    this.m.inputs.inc(batch.inputs.length);
  }

  private async onJoin(h: Held, msg: Msg): Promise<void> {
    const reply = (r: JoinReply) => msg.respond(encode(r));
    let req: JoinRequest;
    try {
      req = decode<JoinRequest>(msg.data);
      if (
        typeof req.session !== "string" ||
        typeof req.characterId !== "string" ||
        typeof req.gateway !== "string"
      )
        throw new Error("session, characterId and gateway are required");
    } catch (err) {
      reply({ v: 1, ok: false, error: `bad join request: ${(err as Error).message}` });
      return;
    }
    const map = h.addr.map;
    try {
      let s = h.sim.sessions.get(req.session);
      if (s && s.characterId !== req.characterId) {
        reply({ v: 1, ok: false, error: "session already plays another character" });
        return;
      }
      if (!s) {
        // A save of its last leave still owed goes first: the load must see it.
        await this.saveUnsaved([req.characterId]);
        const row = await this.chars.load(req.characterId);
        if (!row) {
          reply({ v: 1, ok: false, error: `unknown character ${req.characterId}` });
          return;
        }
        const info: PlayerInfo = {
          session: req.session,
          characterId: req.characterId,
          gateway: req.gateway,
          p2p: req.p2p === true,
          name: row.name,
          hp: row.hp,
          maxHp: row.maxHp,
          atk: row.atk,
          exp: row.exp,
          zeny: row.zeny,
          ...(row.map === map ? { x: row.x + 0.5, y: row.y + 0.5 } : {}),
        };
        await this.idle();
        // The map changed hands meanwhile: stay silent, the gateway's retry reaches the new owner.
        if (this.held.get(map) !== h) return;
        s = h.sim.sessions.get(req.session) ?? h.sim.join(info);
        await this.hot.save(this.opts.region, this.opts.zone, map, h.sim.fence, [this.hotSession(h.sim, s)]);
      } else {
        h.sim.moveSession(s.session, req.gateway); // the client may have reconnected through another gateway
      }
      const st = h.sim.playerState(s);
      reply({
        v: 1,
        ok: true,
        entity: s.entity,
        x: st.x,
        y: st.y,
        hp: st.hp,
        maxHp: st.maxHp,
        mode: h.sim.mode,
        owner: this.opts.pod,
        fence: h.sim.fence,
        width: h.sim.def.width,
        height: h.sim.def.height,
        tickHz: this.opts.tickHz,
      });
    } catch (err) {
      this.opts.log.warn("join failed", { map, session: req.session, err });
      reply({ v: 1, ok: false, error: (err as Error).message });
    }
  }

  private async onLeave(h: Held, msg: Msg): Promise<void> {
    const reply = (r: LeaveReply) => msg.respond(encode(r));
    try {
      const req = decode<LeaveRequest>(msg.data);
      await this.idle();
      const left = h.sim.leave(String(req.session));
      if (left) {
        const where = req.to ?? { map: h.addr.map, x: left.x, y: left.y };
        // The session is out of the sim now: a save that fails is kept and retried (saveUnsaved),
        // or its progress would be lost with the session.
        this.unsaved.set(left.characterId, { ...left, ...where, online: false });
        await this.hot.remove(this.opts.region, this.opts.zone, h.addr.map, h.sim.fence, [left.session]);
        await this.saveUnsaved([left.characterId]);
      }
      reply({ v: 1, ok: true });
    } catch (err) {
      reply({ v: 1, ok: false, error: (err as Error).message });
    }
  }

  // ---- the tick ---------------------------------------------------------------------------------

  /** Waits until no tick is running; code after it runs before the next tick can start. */
  private async idle(): Promise<void> {
    while (this.ticking) await this.ticking.catch(() => undefined);
  }

  /** One tick of every held map. */
  async step(): Promise<Map<string, TickResult>> {
    await this.idle();
    const p = this.runTick();
    this.ticking = p;
    try {
      return await p;
    } finally {
      this.ticking = undefined;
    }
  }

  private schedule(): void {
    const period = 1000 / this.opts.tickHz;
    let next = performance.now() + period;
    const loop = () => {
      if (this.stopped) return;
      this.step()
        .catch((err) => {
          this.opts.log.error("tick failed", { err });
          if (this.pool.failed) {
            this.stopped = true;
            this.opts.onFatal?.(this.pool.failed);
          }
        })
        .finally(() => {
          if (this.stopped) return;
          next += period;
          const now = performance.now();
          // Fixed rate; after a long stall skip ahead instead of racing to catch up.
          if (next < now - 5 * period) next = now;
          this.timer = setTimeout(loop, Math.max(0, next - now));
        });
    };
    this.timer = setTimeout(loop, period);
  }

  private async runTick(): Promise<Map<string, TickResult>> {
    for (const map of [...this.held.keys()]) {
      if (!this.ownership.holds(map)) this.detach(map, "lease not valid");
    }
    // World events start, go on and end here, between ticks (spawns, rates, announcements).
    this.world?.apply();
    const sims = new Map<string, MapSim>();
    for (const [map, h] of this.held) {
      const mode = this.opts.modes.mode(map);
      if (mode !== h.sim.mode) {
        h.sim.setMode(mode);
        this.notice(h);
        this.opts.log.info("map mode changed", { map, mode });
      }
      // Here, between ticks: the views live in memory the workers write during a step.
      for (const gateway of h.resync) h.sim.resendViews(gateway);
      h.resync.clear();
      // A map nobody plays on stands still (as rAthena idles mobs away from players): no CPU for it.
      if (h.sim.sessions.size > 0) sims.set(map, h.sim);
      // Not ticking: its player count is set here, not left at the last tick's.
      else this.m.players.set({ map: h.addr.map }, 0);
    }
    if (sims.size === 0) return new Map();
    const t0 = performance.now();
    const results = await this.pool.step(sims);
    const took = (performance.now() - t0) / 1000;
    this.m.tick.observe(took);
    this.m.budgetUsed.set(took * this.opts.tickHz);
    this.ticks++;
    for (const [map, r] of results) {
      const h = this.held.get(map);
      if (!h) continue;
      if (!this.ownership.holds(map)) {
        this.detach(map, "lease not valid");
        continue;
      }
      this.publish(h, r);
    }
    if (this.ticks % (this.opts.hotSaveTicks ?? this.opts.tickHz) === 0) this.track(this.saveHot());
    if (Date.now() - this.lastPersist >= (this.opts.persistMs ?? 30_000)) {
      this.lastPersist = Date.now();
      this.track(this.persist(true));
    }
    return results;
  }

  private publish(h: Held, r: TickResult): void {
    const nc = this.opts.nc;
    for (const { gateway, data } of r.frames) {
      nc.publish(subjects.aoi(h.addr, gateway), data);
      this.m.frames.inc();
      this.m.frameBytes.inc(data.length);
    }
    if (r.events.length > 0) {
      const batch: EventBatch = {
        v: 1,
        map: h.addr.map,
        tick: r.tick,
        fence: h.sim.fence,
        owner: this.opts.pod,
        events: r.events,
      };
      for (const e of r.events) this.m.events.inc({ kind: e.k });
      // Not dropped when the bus is away: the outbox retries it, in tick order.
      h.outbox.push({
        subject: subjects.events(h.addr),
        data: encode(batch),
        msgID: eventMessageId(h.addr.map, h.sim.fence, r.tick),
        tick: r.tick,
        made: Date.now(),
      });
    }
    const [smooth, snap, reject] = r.stats.corrections;
    if (smooth > 0) this.m.corrections.inc({ kind: "smooth" }, smooth);
    if (snap > 0) this.m.corrections.inc({ kind: "snap" }, snap);
    if (reject > 0) this.m.corrections.inc({ kind: "reject" }, reject);
    this.m.players.set({ map: h.addr.map }, r.stats.players);
    this.m.entities.set({ map: h.addr.map }, h.sim.liveEntities);
    this.m.fanout.set({ map: h.addr.map }, r.stats.fanout);
  }

  // ---- state ------------------------------------------------------------------------------------

  private hotSession(sim: MapSim, s: Session): HotSession {
    const st = sim.playerState(s);
    return { ...s, x: st.x, y: st.y, hp: st.alive ? st.hp : st.maxHp };
  }

  /** Hot state of every held map to Redis (fenced). */
  async saveHot(): Promise<void> {
    const { region, zone } = this.opts;
    await Promise.all(
      [...this.held].map(async ([map, h]) => {
        if (!this.ownership.holds(map)) return;
        const list = [...h.sim.sessions.values()].map((s) => this.hotSession(h.sim, s));
        if (!(await this.hot.save(region, zone, map, h.sim.fence, list))) {
          this.detach(map, "a newer owner wrote the hot state");
        }
      }),
    ).catch((err) => this.opts.log.warn("hot state not saved", { err }));
  }

  /**
   * Saves the characters of `ids` (default: all) that left with their save still owed; throws
   * when PostgreSQL does not take it (they stay owed).
   */
  private async saveUnsaved(ids?: string[]): Promise<void> {
    const rows = (ids ?? [...this.unsaved.keys()]).flatMap((id) => {
      const r = this.unsaved.get(id);
      return r ? [r] : [];
    });
    if (rows.length === 0) return;
    try {
      await this.chars.save(rows);
    } catch (err) {
      throw new Error(
        `${rows.length} characters not saved yet, kept for the next try: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
    // Only what was saved: a newer leave of the same character may have replaced its row meanwhile.
    for (const r of rows) if (this.unsaved.get(r.characterId) === r) this.unsaved.delete(r.characterId);
  }

  /** Every held character to PostgreSQL, and those that left with their save still owed. */
  async persist(online: boolean): Promise<void> {
    await this.saveUnsaved().catch((err) =>
      this.opts.log.warn("characters that left not saved yet", { err, count: this.unsaved.size }),
    );
    const rows = [];
    for (const [map, h] of this.held) {
      if (!this.ownership.holds(map)) continue;
      for (const s of h.sim.sessions.values()) {
        const st = h.sim.playerState(s);
        rows.push({ ...s, map, x: st.x, y: st.y, hp: st.alive ? st.hp : st.maxHp, online });
      }
    }
    await this.chars
      .save(rows)
      .catch((err) => this.opts.log.warn("characters not persisted", { err, count: rows.length }));
  }

  private track<T>(p: Promise<T>): void {
    this.background.add(p);
    void p.finally(() => this.background.delete(p)).catch(() => undefined);
  }

  /**
   * Graceful shutdown: stop ticking, persist every character and the hot state, then give the
   * maps up (revoking the lease hands them over at once).
   */
  async close(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.timer);
    await this.idle();
    await Promise.all([this.persist(true), this.saveHot()]);
    // Events still being retried get a few seconds to reach the stream while the maps are ours.
    const outboxes = [...this.held.values()].map((h) => h.outbox);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(outboxes.map((o) => o.idle())),
      new Promise((r) => {
        timer = setTimeout(r, 5000);
      }),
    ]);
    clearTimeout(timer);
    for (const o of outboxes) o.close();
    for (const map of [...this.held.keys()]) this.detach(map, "shutting down");
    await this.ownership.close();
    await this.world?.close();
    await Promise.allSettled([...this.background]);
    await this.pool.close();
  }
}

function metrics(registry: Registry) {
  const registers = [registry];
  return {
    tick: new Histogram({
      name: "hybridp2p_map_tick_duration_seconds",
      help: "Time to simulate one tick of every map this pod owns",
      buckets: [0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25],
      registers,
    }),
    entities: new Gauge({
      name: "hybridp2p_map_entities",
      help: "Live entities",
      labelNames: ["map"],
      registers,
    }),
    players: new Gauge({ name: "hybridp2p_map_players", help: "Players", labelNames: ["map"], registers }),
    fanout: new Gauge({
      name: "hybridp2p_map_aoi_fanout",
      help: "Entities in view summed over players, last tick",
      labelNames: ["map"],
      registers,
    }),
    frames: new Counter({ name: "hybridp2p_map_aoi_frames_total", help: "AOI frames published", registers }),
    frameBytes: new Counter({
      name: "hybridp2p_map_aoi_bytes_total",
      help: "AOI frame bytes published",
      registers,
    }),
    inputs: new Counter({ name: "hybridp2p_map_inputs_total", help: "Client inputs received", registers }),
    events: new Counter({
      name: "hybridp2p_map_events_total",
      help: "Zone events by kind",
      labelNames: ["kind"],
      registers,
    }),
    eventFailures: new Counter({
      name: "hybridp2p_map_event_publish_failures_total",
      help: "Event batches given up on (never stored in JetStream: the map changed hands, or the bus was away past the duplicate window)",
      registers,
    }),
    corrections: new Counter({
      name: "hybridp2p_map_corrections_total",
      help: "Movement corrections and rejections by kind",
      labelNames: ["kind"],
      registers,
    }),
    mode: new Gauge({
      name: "hybridp2p_map_mode",
      help: "1 for the mode each owned map is in",
      labelNames: ["map", "mode"],
      registers,
    }),
    owned: new Gauge({ name: "hybridp2p_map_owned_maps", help: "Maps this pod owns", registers }),
    // One tick steps every map the pod owns together, so the budget is the pod's (its maps are
    // the `map` labels of hybridp2p_map_players).
    budget: new Gauge({
      name: "hybridp2p_map_tick_budget_seconds",
      help: "The time one tick may take (1 / tick rate)",
      registers,
    }),
    budgetUsed: new Gauge({
      name: "hybridp2p_map_tick_budget_used_ratio",
      help: "The last tick's duration over its budget (above 1: the tick rate is not kept)",
      registers,
    }),
  };
}

export type { MapMode };
