// The coordinator's decisions, as pure functions of the shared roster: which mesh each peer
// belongs to (per zone, map and area, at most maxPeers each), which peer hosts a mesh (round
// trip, loss, bandwidth, with hysteresis), whether a peer or the whole zone falls back to the
// server relay (the policy's thresholds). Every replica computes the same answers from the
// same roster, which is how peers on different replicas agree on their meshes.
import type { RecoveryPolicy } from "../../platform/flags/fallback.ts";
import type { ZoneFlags } from "../../platform/flags/layout.ts";
import type { Quality } from "./messages.ts";

export interface MeshPolicy {
  maxPeers: number;
  /** Direct links per peer, nearest mates first (see meshLinks); maxPeers - 1 or more: a full mesh. */
  maxLinks: number;
  /** A peer not heard of for this long is dropped from the roster. */
  peerTTLMs: number;
  /** How often areas are re-evaluated and meshes rebuilt as players move. */
  refreshMs: number;
  /** Side of a mesh area in cells (players of one area share meshes). */
  areaCells: number;
  /** How far (cells) a player may stray past its area's edge before it changes area. */
  areaMargin: number;
  thresholds: ZoneFlags["thresholds"];
  recovery: RecoveryPolicy;
  /** Client heartbeat period; a peer silent for `thresholds.coordinatorTimeoutMs` is gone. */
  heartbeatMs: number;
  /** Peers younger than this are not counted by the minimum-peers rule (meshes take time to form). */
  warmupMs: number;
  /** A zone falls back only when its quality stays past the thresholds this long (one bad sample is noise). */
  sustainMs: number;
}

/** rAthena's view range is 14 cells: an area of four view ranges keeps neighbours together. */
export const DEFAULT_AREA_CELLS = 56;

export function policyFromFlags(doc: ZoneFlags, over: Partial<MeshPolicy> = {}): MeshPolicy {
  const timeout = doc.thresholds.coordinatorTimeoutMs;
  return {
    maxPeers: doc.mesh.maxPeers,
    // A document from an operator that predates maxLinks: the full mesh it asked for.
    maxLinks: doc.mesh.maxLinks ?? doc.mesh.maxPeers - 1,
    peerTTLMs: doc.mesh.peerTTLSeconds * 1000,
    refreshMs: doc.mesh.refreshSeconds * 1000,
    areaCells: DEFAULT_AREA_CELLS,
    areaMargin: 4,
    thresholds: doc.thresholds,
    recovery: doc.recovery,
    // Three heartbeats per timeout: one lost heartbeat is not a dead peer.
    heartbeatMs: Math.max(50, Math.floor(timeout / 3)),
    warmupMs: 30_000,
    sustainMs: 3000,
    ...over,
  };
}

/** What every replica knows about a peer (shared over NATS). */
export interface RosterEntry {
  id: string;
  /** The peer's gateway session and entity (its mates report it to the gateway by session). */
  session: string;
  entity: number;
  zone: string;
  map: string;
  x: number;
  y: number;
  /** Area, with hysteresis (see nextArea). */
  ax: number;
  ay: number;
  joinedAt: number;
  replica: string;
  q: Quality;
  /** Peers it could not reach directly: those pairs use the server relay. */
  failed: string[];
}

export const NO_QUALITY: Quality = { rttMs: 0, lossPercent: 0, jitterMs: 0, kbps: 0, open: 0 };

/** The area of a position, keeping the current one while the player is within `margin` of it. */
export function nextArea(
  current: { ax: number; ay: number } | undefined,
  x: number,
  y: number,
  cells: number,
  margin: number,
): { ax: number; ay: number } {
  if (current) {
    const inX = x >= current.ax * cells - margin && x < (current.ax + 1) * cells + margin;
    const inY = y >= current.ay * cells - margin && y < (current.ay + 1) * cells + margin;
    if (inX && inY) return current;
  }
  return { ax: Math.floor(x / cells), ay: Math.floor(y / cells) };
}

/** Whether a peer's own links are too poor for the mesh (it alone uses the server relay). */
export function peerTooPoor(q: Quality, t: ZoneFlags["thresholds"]): boolean {
  return q.open > 0 && (q.rttMs > t.latencyMs.max || q.lossPercent > t.lossPercent.max);
}

function byJoin(a: RosterEntry, b: RosterEntry): number {
  return a.joinedAt - b.joinedAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

/**
 * Meshes of a zone: peers grouped by map and area, in join order, cut into meshes of at most
 * `maxPeers`. Join order keeps meshes stable: a newcomer only ever joins the last mesh of its
 * area. Returns mesh id -> member ids.
 */
export function assignMeshes(entries: Iterable<RosterEntry>, maxPeers: number): Map<string, string[]> {
  const groups = new Map<string, RosterEntry[]>();
  for (const e of entries) {
    const k = `${e.map}/${e.ax}.${e.ay}`;
    const g = groups.get(k);
    if (g) g.push(e);
    else groups.set(k, [e]);
  }
  const out = new Map<string, string[]>();
  const size = Math.max(1, maxPeers);
  for (const [k, g] of groups) {
    g.sort(byJoin);
    for (let i = 0; i * size < g.length; i++) {
      out.set(
        `${k}/${i}`,
        g.slice(i * size, (i + 1) * size).map((e) => e.id),
      );
    }
  }
  return out;
}

/**
 * Positions are compared on a grid this coarse (cells), so a few steps of walking do not rewire
 * links at every refresh; within one square, the older pair keeps its link.
 */
export const LINK_GRID_CELLS = 4;

/** The LINK_GRID_CELLS square a coordinate falls in. */
export function linkSquare(v: number): number {
  return Math.floor(v / LINK_GRID_CELLS);
}

/**
 * Which members of one mesh link directly: each peer to at most `maxLinks` others, nearest first.
 * Every handshake costs each end CPU (a 40-peer full mesh is 780 links), and a player needs
 * direct links to the players around it: the gateway relays, inside the player's view, the moves
 * of the mates it does not hear directly (`meshReport`). Pairs are taken in order of distance on
 * the LINK_GRID_CELLS grid (Chebyshev), then of the later join of the two (older pairs first),
 * then of ids, and a pair links while both ends have room: symmetric, at most `maxLinks` per peer,
 * and the same on every replica for the same roster. A mesh of at most maxLinks + 1 members is a
 * full mesh. Returns member id -> the ids it links to, in the members' order.
 */
export function meshLinks(
  members: readonly Pick<RosterEntry, "id" | "x" | "y" | "joinedAt">[],
  maxLinks: number,
): Map<string, string[]> {
  const out = new Map(members.map((m) => [m.id, [] as string[]]));
  if (members.length - 1 <= maxLinks) {
    for (const m of members)
      out.set(
        m.id,
        members.filter((o) => o.id !== m.id).map((o) => o.id),
      );
    return out;
  }
  const pairs: { a: number; b: number; d: number; joined: number; key: string }[] = [];
  for (let a = 0; a < members.length; a++)
    for (let b = a + 1; b < members.length; b++) {
      const ma = members[a]!;
      const mb = members[b]!;
      const d = Math.max(
        Math.abs(linkSquare(ma.x) - linkSquare(mb.x)),
        Math.abs(linkSquare(ma.y) - linkSquare(mb.y)),
      );
      const key = ma.id < mb.id ? `${ma.id}\0${mb.id}` : `${mb.id}\0${ma.id}`;
      pairs.push({ a, b, d, joined: Math.max(ma.joinedAt, mb.joinedAt), key });
    }
  pairs.sort((p, q) => p.d - q.d || p.joined - q.joined || (p.key < q.key ? -1 : p.key > q.key ? 1 : 0));
  const degree = new Array<number>(members.length).fill(0);
  const linked = members.map(() => new Set<number>());
  for (const p of pairs) {
    if (degree[p.a]! >= maxLinks || degree[p.b]! >= maxLinks) continue;
    degree[p.a]!++;
    degree[p.b]!++;
    linked[p.a]!.add(p.b);
    linked[p.b]!.add(p.a);
  }
  for (const [i, m] of members.entries())
    out.set(
      m.id,
      members.filter((_, j) => linked[i]!.has(j)).map((o) => o.id),
    );
  return out;
}

/** Lower is better: round trip inflated by loss, plus a penalty for little spare bandwidth. */
export function hostScore(q: Quality): number {
  if (q.open === 0) return Number.POSITIVE_INFINITY;
  return q.rttMs * (1 + q.lossPercent / 5) + 50_000 / Math.max(q.kbps, 50);
}

/**
 * The mesh's host: the best-scoring member, but the current host stays unless it left or the
 * best beats it by more than `margin` (a fraction), so the choice does not flap on noise.
 */
export function chooseHost(
  members: readonly { id: string; q: Quality }[],
  current: string | undefined,
  margin = 0.3,
): string | undefined {
  if (members.length === 0) return undefined;
  let best = members[0]!;
  for (const m of members) {
    const d = hostScore(m.q) - hostScore(best.q);
    if (d < 0 || (d === 0 && m.id < best.id)) best = m;
  }
  const cur = members.find((m) => m.id === current);
  if (!cur) return best.id;
  const cs = hostScore(cur.q);
  const bs = hostScore(best.q);
  if (cs === Number.POSITIVE_INFINITY && bs < cs) return best.id;
  return bs < cs * (1 - margin) ? best.id : cur.id;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export interface ZoneVerdict {
  /** Why the zone must fall back, or undefined when it may stay P2P. */
  fallback?: string;
  rttMs: number;
  lossPercent: number;
  jitterMs: number;
  connected: number;
}

/**
 * The zone's mesh quality against the policy: the median over peers with open links of round
 * trip, loss and jitter, and how many peers are connected at all. Past latency max, loss max or
 * jitter critical, or fewer than minPeers connected once enough peers have had time to connect,
 * the zone falls back.
 */
export function zoneVerdict(
  entries: readonly RosterEntry[],
  t: ZoneFlags["thresholds"],
  now: number,
  warmupMs: number,
): ZoneVerdict {
  const live = entries.filter((e) => e.q.open > 0);
  const v: ZoneVerdict = {
    rttMs: live.length ? median(live.map((e) => e.q.rttMs)) : 0,
    lossPercent: live.length ? median(live.map((e) => e.q.lossPercent)) : 0,
    jitterMs: live.length ? median(live.map((e) => e.q.jitterMs)) : 0,
    connected: live.length,
  };
  if (live.length > 0) {
    if (v.rttMs > t.latencyMs.max)
      v.fallback = `mesh latency ${v.rttMs.toFixed(0)} ms over ${t.latencyMs.max} ms`;
    else if (v.lossPercent > t.lossPercent.max)
      v.fallback = `mesh loss ${v.lossPercent.toFixed(1)} % over ${t.lossPercent.max} %`;
    else if (v.jitterMs > t.jitterMs.critical)
      v.fallback = `mesh jitter ${v.jitterMs.toFixed(0)} ms over ${t.jitterMs.critical} ms`;
  }
  const settled = entries.filter((e) => now - e.joinedAt >= warmupMs);
  if (!v.fallback && settled.length >= t.minPeers && live.length < t.minPeers)
    v.fallback = `${live.length} peers connected, fewer than ${t.minPeers}`;
  return v;
}

/** Whether the pair (a, b) exchanges through the server relay. */
export function relayed(a: RosterEntry, b: RosterEntry): boolean {
  return a.failed.includes(b.id) || b.failed.includes(a.id);
}

/** The design's starting figures, for a coordinator run without the flag plane (development). */
export const DEFAULT_THRESHOLDS: ZoneFlags["thresholds"] = {
  latencyMs: { warn: 100, critical: 200, max: 300 },
  lossPercent: { warn: 1, critical: 2, max: 5 },
  jitterMs: { warn: 20, critical: 50 },
  coordinatorTimeoutMs: 1500,
  minPeers: 2,
};
