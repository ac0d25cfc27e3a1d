// The contract between the global orchestrator and each Region's map servers for world events
// (WorldEvent resources): subjects, streams and messages on the Region's own NATS JetStream.
// Why per-Region streams and not one global stream: workloads/orchestrator/README.md.
//
//   hp2pworld.<region>.ev.<uid>            orchestrator -> map servers   WorldEventRecord  (stream HP2P_WORLD_<region>)
//   hp2pworld.<region>.live.<zone>.<map>   map server   -> orchestrator  WorldLiveReport   (stream HP2P_WORLD_LIVE_<region>)
//
// State, not commands. Each WorldEvent has one subject per Region and the stream keeps only the
// last message of each subject (max_msgs_per_subject 1, like a KV bucket): the record is the
// event's whole current state in that Region (which occurrence, when it starts and ends, what
// it does, where), so delivering it twice changes nothing and a consumer that starts late (a
// map server after a restart, a Region whose bus was away) reads the current state of every
// event at once (deliver policy last-per-subject) and catches up.
//
// Exactly once in effect. A record names its occurrence (`id`: the WorldEvent's uid and the
// occurrence's start); the map server applies an occurrence to a map at most once, marked in the
// Region's Redis under the id (SET NX), so neither a restarted orchestrator nor a map handed to
// another pod spawns a second boss. Mobs an owner spawned and that were still alive when it lost
// the map are respawned by the next owner (as every mob of a handed-over map is); killed ones not.
//
// On time. Records carry absolute start and end times; map servers start and end occurrences on
// their own clock, so an event ends on time even while no orchestrator runs. The orchestrator
// also writes `state: "ended"` (cancel, early end, or after the end) so a late reader knows.
//
// Live state. Every map-server pod publishes, per map it owns, the players on it and the state
// of each occurrence there, every few seconds and on change; the live stream forgets reports
// older than LIVE_MAX_AGE_MS, so a dead pod's reports disappear by themselves. The orchestrator
// reads them for population triggers, early ends (an invasion cleared) and per-Region status.
import { jetstreamManager, RetentionPolicy } from "@nats-io/jetstream";
import { type NatsConnection, nanos } from "@nats-io/transport-node";

export const WORLD_ROOT = "hp2pworld";
/** Live reports older than this are gone (the reporting pod is dead or the map moved). */
export const LIVE_MAX_AGE_MS = 30_000;
/** How often a map server re-publishes its live reports (and at once on a change). */
export const LIVE_REPORT_INTERVAL_MS = 2_000;

/** Mobs a WorldEvent may spawn; the map server's mob table has each (a unit test checks). */
export const WORLD_EVENT_MOBS = [
  "poring",
  "lunatic",
  "wolf",
  "orc_warrior",
  "orc_lord",
  "baphomet",
  "osiris",
  "angeling",
] as const;
export type WorldEventMob = (typeof WORLD_EVENT_MOBS)[number];

export const WORLD_EVENT_TYPES = ["Boss", "Invasion", "Rates", "Announcement"] as const;
export type WorldEventType = (typeof WORLD_EVENT_TYPES)[number];

const TOKEN = /^[A-Za-z0-9_-]+$/;
function token(what: string, s: string): string {
  if (!TOKEN.test(s)) throw new Error(`invalid ${what} for a NATS subject token: ${JSON.stringify(s)}`);
  return s;
}

export const worldStreams = {
  events: (region: string) => `HP2P_WORLD_${token("region", region)}`,
  live: (region: string) => `HP2P_WORLD_LIVE_${token("region", region)}`,
};

export const worldSubjects = {
  event: (region: string, uid: string) => `${WORLD_ROOT}.${token("region", region)}.ev.${token("uid", uid)}`,
  events: (region: string) => `${WORLD_ROOT}.${token("region", region)}.ev.*`,
  live: (region: string, zone: string, map: string) =>
    `${WORLD_ROOT}.${token("region", region)}.live.${token("zone", zone)}.${token("map", map)}`,
  lives: (region: string) => `${WORLD_ROOT}.${token("region", region)}.live.>`,
};

/** What an occurrence does on each of its maps. */
export interface WorldAction {
  type: WorldEventType;
  /** Boss and Invasion: the mob and how many per map. */
  mob?: string;
  count?: number;
  /** Boss: the cell it appears on (a walkable cell near it; the map's spawn point when absent). */
  x?: number;
  y?: number;
  /** Invasion: the occurrence ends on a map once all its mobs there are killed. */
  endWhenCleared?: boolean;
  /** Multipliers of experience and zeny from kills while the occurrence is active. */
  exp?: number;
  drop?: number;
}

export type WorldEventState = "scheduled" | "active" | "ended";

export interface WorldEventRecord {
  v: 1;
  /** The WorldEvent's uid. */
  uid: string;
  /** namespace/name, for logs and messages. */
  name: string;
  /** The occurrence: `<uid>.<start, unix ms>`; the key of exactly-once application. */
  id: string;
  state: WorldEventState;
  /** Why an occurrence ended (Completed, Cancelled, Cleared, Deleted, ...). */
  reason?: string;
  /** Unix ms. */
  startsAt: number;
  endsAt: number;
  action: WorldAction;
  /** Said to every player of the targeted maps when the occurrence starts, and at the end. */
  announcement?: { message: string; onEnd?: string };
  /** The zones and maps of this Region it applies to (selectors resolved by the orchestrator). */
  targets: Array<{ zone: string; maps: string[] }>;
}

/** One occurrence on one map, as its owner sees it. */
export interface WorldOccurrenceReport {
  /** Mobs spawned for it on this map (all owners together) and how many were killed. */
  spawned: number;
  killed: number;
  alive: number;
  state: "active" | "ended";
  /** Why it ended on this map (Completed, Cleared, Cancelled). */
  reason?: string;
}

export interface WorldLiveReport {
  v: 1;
  zone: string;
  map: string;
  pod: string;
  /** Unix ms of the report. */
  at: number;
  players: number;
  /** By occurrence id. */
  events: Record<string, WorldOccurrenceReport>;
}

/** The two streams of a Region, created by whichever side starts first. */
export async function ensureWorldStreams(nc: NatsConnection, region: string): Promise<void> {
  const jsm = await jetstreamManager(nc);
  const want = [
    {
      name: worldStreams.events(region),
      subjects: [worldSubjects.events(region)],
      max_msgs_per_subject: 1,
      retention: RetentionPolicy.Limits,
      // Tombstones (purges) of deleted WorldEvents must not linger forever.
      max_age: 0,
    },
    {
      name: worldStreams.live(region),
      subjects: [worldSubjects.lives(region)],
      max_msgs_per_subject: 1,
      retention: RetentionPolicy.Limits,
      max_age: nanos(LIVE_MAX_AGE_MS),
    },
  ];
  for (const cfg of want) {
    try {
      await jsm.streams.info(cfg.name);
    } catch {
      try {
        await jsm.streams.add(cfg);
      } catch (err) {
        // Lost a race with another creator: fine as long as the stream exists now.
        await jsm.streams.info(cfg.name).catch(() => {
          throw err;
        });
      }
    }
  }
}

/** The occurrence id of a WorldEvent starting at `startsAt` (unix ms). */
export function occurrenceId(uid: string, startsAt: number): string {
  return `${uid}.${startsAt}`;
}

/** Whether an occurrence is running at `now`. */
export function isRunning(r: WorldEventRecord, now: number): boolean {
  return r.state !== "ended" && now >= r.startsAt && now < r.endsAt;
}
