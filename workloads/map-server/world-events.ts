// World events in the map server (the map-server end of platform/bus/world.ts): reads the
// Region's world-event records from JetStream (the current record of every WorldEvent, then each
// change), and between ticks applies each running occurrence to the maps this pod owns through
// the simulation's normal paths: mobs spawned as entities (so AOI shows them), experience and
// zeny multipliers in the loot, announcements as zone events that every gateway session of the
// map receives (legacy and P2P alike). It ends occurrences on its own clock, and publishes per
// map the players and each occurrence's state for the orchestrator.
//
// Exactly once in effect: an occurrence is applied to a map once, claimed in the Region's Redis
// (`<prefix>world:<region>:<zone>:<map>:<occurrence>`: HSETNX spawned). A later owner of the map
// (handover, restart) finds the claim and only brings back the mobs still alive (spawned - killed)
// without announcing again; a repeated or replayed record changes nothing.
import { DeliverPolicy, type JetStreamClient, jetstream } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Redis } from "ioredis";
import { Counter, Gauge, type Registry } from "prom-client";
import { decode, encode } from "../../platform/bus/contract.ts";
import {
  ensureWorldStreams,
  isRunning,
  LIVE_REPORT_INTERVAL_MS,
  type WorldEventRecord,
  type WorldLiveReport,
  type WorldOccurrenceReport,
  worldStreams,
  worldSubjects,
} from "../../platform/bus/world.ts";
import type { Logger } from "../../platform/log.ts";
import { MOB_TYPES } from "./sim/maps.ts";
import type { MapSim } from "./sim/world.ts";

export interface WorldEventsOptions {
  nc: NatsConnection;
  redis: Redis;
  region: string;
  zone: string;
  pod: string;
  redisPrefix: string;
  log: Logger;
  registry: Registry;
  /** The maps this pod simulates right now. */
  maps: () => Iterable<[string, MapSim]>;
  now?: () => number;
  reportIntervalMs?: number;
}

/** What the Redis claim says about an occurrence on one map. */
interface Claim {
  spawned: number;
  killed: number;
  announced: boolean;
  ended?: string;
}

/** One occurrence on one map, as this pod applies it. */
interface Applied {
  id: string;
  /** The record it was applied from (kept to end it when another occurrence replaces it). */
  record: WorldEventRecord;
  phase: "claiming" | "claimed" | "active" | "ended";
  claim?: Claim;
  /** The sim it was applied to (a re-attached map gets a new sim and a new claim). */
  sim?: MapSim;
  /** Mobs spawned by this pod that are alive. */
  alive: Set<number>;
  /** Killed so far, by every owner. */
  killed: number;
  /** Sessions told the announcement. */
  told: Set<string>;
  reason?: string;
}

const CLAIM_TTL_MS = 24 * 3600_000;

export class WorldEvents {
  private readonly o: WorldEventsOptions;
  private readonly js: JetStreamClient;
  /** Current record per WorldEvent uid. */
  readonly records = new Map<string, WorldEventRecord>();
  /** By `<map>|<occurrence>`. */
  private readonly applied = new Map<string, Applied>();
  private readonly background = new Set<Promise<unknown>>();
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private consuming: Promise<void> | undefined;
  private closeConsumer: (() => Promise<void>) | undefined;
  private readonly m: ReturnType<typeof metrics>;

  constructor(o: WorldEventsOptions) {
    this.o = o;
    this.js = jetstream(o.nc);
    this.m = metrics(o.registry);
  }

  private now(): number {
    return (this.o.now ?? Date.now)();
  }

  async start(): Promise<void> {
    await ensureWorldStreams(this.o.nc, this.o.region);
    // The current record of every WorldEvent first, then every change: a pod that starts late
    // catches up with what is running.
    const consumer = await this.js.consumers.get(worldStreams.events(this.o.region), {
      filter_subjects: worldSubjects.events(this.o.region),
      deliver_policy: DeliverPolicy.LastPerSubject,
    });
    const messages = await consumer.consume();
    this.closeConsumer = async () => {
      await messages.close().catch(() => undefined);
    };
    this.consuming = (async () => {
      for await (const m of messages) {
        try {
          const r = decode<WorldEventRecord>(m.data);
          if (r?.v === 1 && typeof r.uid === "string") this.onRecord(r);
        } catch (err) {
          this.o.log.warn("undecodable world event record", { subject: m.subject, err });
        }
      }
    })();
    const every = this.o.reportIntervalMs ?? LIVE_REPORT_INTERVAL_MS;
    this.timer = setInterval(() => this.track(this.report()), every);
  }

  private onRecord(r: WorldEventRecord): void {
    const before = this.records.get(r.uid);
    this.records.set(r.uid, r);
    this.m.records.set(this.records.size);
    if (before?.id !== r.id || before.state !== r.state)
      this.o.log.info("world event record", { event: r.name, occurrence: r.id, state: r.state });
  }

  /** The records whose targets include this pod's zone and `map`. */
  private targeting(map: string): WorldEventRecord[] {
    const out: WorldEventRecord[] = [];
    for (const r of this.records.values())
      if (r.targets.some((t) => t.zone === this.o.zone && t.maps.includes(map))) out.push(r);
    return out;
  }

  /**
   * Between ticks, for every owned map: starts, continues and ends the occurrences that target
   * it. Redis claims run in the background; their effect lands on a later call.
   */
  apply(): void {
    const now = this.now();
    let active = 0;
    for (const [map, sim] of this.o.maps()) {
      sim.onEventMobDeath ??= (tag, entity) => this.onDeath(map, tag, entity);
      let exp = 1;
      let drop = 1;
      for (const r of this.targeting(map)) {
        const key = `${map}|${r.id}`;
        let a = this.applied.get(key);
        if (a && a.sim !== undefined && a.sim !== sim) {
          // The map was given up and taken again: its mobs went with the old sim.
          this.applied.delete(key);
          a = undefined;
        }
        const running = isRunning(r, now);
        if (!a) {
          if (!running) continue;
          a = { id: r.id, record: r, phase: "claiming", alive: new Set(), killed: 0, told: new Set(), sim };
          this.applied.set(key, a);
          this.track(this.claim(map, r, a));
          continue;
        }
        a.record = r;
        if (a.phase === "claimed") this.begin(map, sim, r, a);
        if (a.phase !== "active") continue;
        const mt = r.action.type;
        const cleared = mt === "Invasion" && r.action.endWhenCleared !== false && a.alive.size === 0;
        if (!running || cleared) {
          this.end(
            map,
            sim,
            r,
            a,
            cleared ? "Cleared" : r.state === "ended" ? (r.reason ?? "Ended") : "Completed",
          );
          continue;
        }
        active++;
        exp *= r.action.exp ?? 1;
        drop *= r.action.drop ?? 1;
        // Players who arrived after the start hear it too, once.
        if (r.announcement) {
          const late = [...sim.sessions.keys()].filter((s) => !a.told.has(s));
          if (late.length > 0) {
            sim.announce(r.id, r.announcement.message, late);
            for (const s of late) a.told.add(s);
            this.m.announcements.inc(late.length);
          }
        }
      }
      sim.expRate = exp;
      sim.dropRate = drop;
    }
    this.m.active.set(active);
    // Occurrences whose record moved on (the next occurrence replaced it) or no longer names the
    // map (its targets changed): ended on their maps, then forgotten.
    const current = new Map([...this.records.values()].map((r) => [r.id, r]));
    const sims = new Map(this.o.maps());
    for (const [key, a] of this.applied) {
      if (a.phase === "claiming") continue;
      const map = key.slice(0, key.indexOf("|"));
      const r = current.get(a.id);
      if (r?.targets.some((t) => t.zone === this.o.zone && t.maps.includes(map))) continue;
      const sim = sims.get(map);
      if (a.phase === "active" && sim && sim === a.sim)
        this.end(map, sim, a.record, a, r ? "Untargeted" : "Superseded");
      this.applied.delete(key);
    }
  }

  private claimKey(map: string, id: string): string {
    return `${this.o.redisPrefix}world:${this.o.region}:${this.o.zone}:${map}:${id}`;
  }

  private planned(r: WorldEventRecord): number {
    return r.action.type === "Boss" || r.action.type === "Invasion" ? Math.max(0, r.action.count ?? 1) : 0;
  }

  private async claim(map: string, r: WorldEventRecord, a: Applied): Promise<void> {
    const key = this.claimKey(map, r.id);
    try {
      const n = this.planned(r);
      const first = await this.o.redis.hsetnx(key, "spawned", n);
      await this.o.redis.pexpireat(key, r.endsAt + CLAIM_TTL_MS);
      if (first === 1) a.claim = { spawned: n, killed: 0, announced: false };
      else {
        const h = await this.o.redis.hgetall(key);
        a.claim = {
          spawned: Number(h.spawned ?? 0),
          killed: Number(h.killed ?? 0),
          announced: h.announced === "1",
          ended: h.ended || undefined,
        };
      }
      a.phase = "claimed";
    } catch (err) {
      // Tried again on a later pass.
      this.applied.delete(`${map}|${r.id}`);
      this.o.log.warn("world event claim failed", { map, occurrence: r.id, err });
    }
  }

  /** Applies a claimed occurrence to the sim (between ticks). */
  private begin(map: string, sim: MapSim, r: WorldEventRecord, a: Applied): void {
    const c = a.claim!;
    if (c.ended) {
      a.phase = "ended";
      a.reason = c.ended;
      return;
    }
    const first = c.killed === 0 && !c.announced;
    a.killed = c.killed;
    const want = Math.max(0, c.spawned - c.killed);
    if (want > 0 && r.action.mob) {
      const type = MOB_TYPES.findIndex((m) => m.name === r.action.mob);
      if (type < 0) {
        this.o.log.warn("world event names an unknown mob", { occurrence: r.id, mob: r.action.mob });
      } else {
        const near: [number, number] | undefined =
          r.action.x !== undefined && r.action.y !== undefined
            ? [r.action.x, r.action.y]
            : r.action.type === "Boss"
              ? sim.def.spawn
              : undefined;
        for (const i of sim.spawnEventMobs(r.id, type, want, near)) a.alive.add(i);
        this.m.spawned.inc({ mob: r.action.mob }, a.alive.size);
      }
    }
    if (r.announcement) {
      const present = [...sim.sessions.keys()];
      if (!c.announced) {
        sim.announce(r.id, r.announcement.message, present);
        this.m.announcements.inc(present.length);
        this.track(this.o.redis.hset(this.claimKey(map, r.id), "announced", "1"));
      }
      // Sessions of a handed-over map already heard it from the previous owner.
      for (const s of present) a.told.add(s);
    }
    a.phase = "active";
    this.m.occurrences.inc({ result: first ? "started" : "resumed" });
    this.o.log.info("world event applied", {
      map,
      event: r.name,
      occurrence: r.id,
      type: r.action.type,
      spawned: a.alive.size,
      resumed: !first,
    });
  }

  private end(map: string, sim: MapSim, r: WorldEventRecord, a: Applied, reason: string): void {
    const removed = sim.despawnEvent(r.id);
    a.alive.clear();
    a.phase = "ended";
    a.reason = reason;
    if (r.announcement?.onEnd) sim.announce(r.id, r.announcement.onEnd);
    this.track(this.o.redis.hset(this.claimKey(map, r.id), "ended", reason));
    this.m.occurrences.inc({ result: "ended" });
    this.o.log.info("world event ended on map", { map, occurrence: r.id, reason, despawned: removed });
    this.track(this.report());
  }

  private onDeath(map: string, tag: string, entity: number): void {
    const a = this.applied.get(`${map}|${tag}`);
    if (!a?.alive.delete(entity)) return;
    a.killed++;
    this.m.killed.inc();
    this.track(this.o.redis.hincrby(this.claimKey(map, tag), "killed", 1));
  }

  /** The live report of every owned map (players, occurrences) for the orchestrator. */
  async report(): Promise<void> {
    if (this.stopped) return;
    const at = this.now();
    const sends: Promise<unknown>[] = [];
    for (const [map, sim] of this.o.maps()) {
      const events: Record<string, WorldOccurrenceReport> = {};
      for (const a of this.applied.values()) {
        if (a.sim !== sim || !a.claim) continue;
        events[a.id] = {
          spawned: a.claim.spawned,
          killed: a.killed,
          alive: a.alive.size,
          state: a.phase === "ended" ? "ended" : "active",
          ...(a.reason ? { reason: a.reason } : {}),
        };
      }
      const rep: WorldLiveReport = {
        v: 1,
        zone: this.o.zone,
        map,
        pod: this.o.pod,
        at,
        players: sim.sessions.size,
        events,
      };
      sends.push(this.js.publish(worldSubjects.live(this.o.region, this.o.zone, map), encode(rep)));
    }
    await Promise.all(sends).catch((err) => this.o.log.debug("live report not stored", { err }));
  }

  /** The map left this pod: its occurrences are claimed again by whoever takes it. */
  forget(map: string): void {
    for (const key of [...this.applied.keys()]) if (key.startsWith(`${map}|`)) this.applied.delete(key);
  }

  private track<T>(p: Promise<T>): void {
    this.background.add(p);
    void p.finally(() => this.background.delete(p)).catch(() => undefined);
  }

  async close(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.closeConsumer?.();
    await this.consuming?.catch(() => undefined);
    await Promise.allSettled([...this.background]);
  }
}

function metrics(registry: Registry) {
  const registers = [registry];
  return {
    records: new Gauge({
      name: "hybridp2p_world_event_records",
      help: "World event records this pod knows (one per WorldEvent targeting the Region)",
      registers,
    }),
    active: new Gauge({
      name: "hybridp2p_world_events_active",
      help: "Occurrences active on the maps this pod owns (per map, summed)",
      registers,
    }),
    occurrences: new Counter({
      name: "hybridp2p_world_event_occurrences_total",
      help: "Occurrences applied to a map (started: first owner; resumed: after a handover) and ended",
      labelNames: ["result"],
      registers,
    }),
    spawned: new Counter({
      name: "hybridp2p_world_event_mobs_spawned_total",
      help: "Mobs spawned for world events, by mob",
      labelNames: ["mob"],
      registers,
    }),
    killed: new Counter({
      name: "hybridp2p_world_event_mobs_killed_total",
      help: "World-event mobs killed",
      registers,
    }),
    announcements: new Counter({
      name: "hybridp2p_world_event_announcements_total",
      help: "Announcements delivered to sessions",
      registers,
    }),
  };
}
