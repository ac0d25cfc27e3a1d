// The P2P coordinator: WebRTC signaling and mesh management for P2P clients, one replica of
// many. A client connects over WebSocket, joins with its character token (its zone comes from
// the token's map), and is told its mesh mates; offers, answers and ICE candidates go only
// between mates of one mesh in one zone. Heartbeats carry position and link quality.
//
// Replicas share the roster over NATS (bus.ts) and each computes the same meshes from it
// (mesh.ts), so peers on different replicas pair: signaling for a peer held by another replica
// is forwarded to that replica's subject.
//
// Fallback, per pair: a client that cannot open a link reports it; the pair then exchanges
// through the server relay (the gateway keeps relaying those moves) and the zone stays P2P.
// Per peer: a peer whose own links are past the latency or loss maximum is left out of meshes.
// Per zone: past the policy's thresholds the zone falls back (every link closes), and comes
// back as the recovery policy says (FallbackLatch: Auto with backoff, or Manual). Each replica
// announces its zones' state with its liveness (AliveMsg); gateways fall back when no replica
// is alive (watch.ts).
import { randomBytes } from "node:crypto";
import type { IncomingMessage, Server } from "node:http";
import type { Duplex } from "node:stream";
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import { type RawData, WebSocket, WebSocketServer } from "ws";
import { decode as busDecode, encode as busEncode } from "../../platform/bus/contract.ts";
import { FallbackLatch } from "../../platform/flags/fallback.ts";
import type { ZoneReport } from "../../platform/flags/layout.ts";
import { listenForUpgrades } from "../../platform/http.ts";
import type { ServingTls } from "../../platform/tls.ts";
import { recheckSession, type SessionCheck } from "../auth/gateway.ts";
import type { CharacterClaims } from "../auth/tokens.ts";
import { cutOffAfterError } from "../runtime/websocket.ts";
import {
  type AliveMsg,
  coordSubjects,
  type LocateReply,
  type RosterMsg,
  type SignalMsg,
  type ZoneState,
} from "./bus.ts";
import {
  assignMeshes,
  chooseHost,
  linkSquare,
  type MeshPolicy,
  meshLinks,
  NO_QUALITY,
  nextArea,
  peerTooPoor,
  type RosterEntry,
  relayed,
  zoneVerdict,
} from "./mesh.ts";
import {
  decodeCoord,
  encodeCoord,
  type FromCoordinator,
  MAX_COORD_FRAME,
  type ToCoordinator,
} from "./messages.ts";

export interface CoordinatorLogger {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
}

const silent: CoordinatorLogger = { info: () => {}, warn: () => {} };

export interface CoordinatorOptions {
  nc: NatsConnection;
  region: string;
  /** This replica's name (the pod name). */
  replica: string;
  /** Verifies a character token (workloads/auth/gateway.ts GatewayAuth.verify). */
  verify: (token: string) => Promise<Claims>;
  /**
   * Whether the login session behind a joined peer still lives (GatewayAuth.sessionLive): a
   * logout or a revocation closes its signaling. Checked every `sessionCheckMs`.
   */
  sessionLive?: (claims: Claims) => Promise<boolean>;
  /** Default 10 s. */
  sessionCheckMs?: number;
  /**
   * Where the gateway says a session plays (locateOverNats). With it, a peer meshes on the map it
   * is on now, under the entity id the gateway gave it, and a session the gateway does not hold
   * for the token's character is refused; without it (tests of the coordinator alone), the
   * token's map and the client's word are taken.
   */
  locate?: (session: string) => Promise<Omit<LocateReply, "v"> | undefined>;
  zoneOf: (map: string) => string | undefined;
  /** The zone's mesh policy, or undefined when P2P is off for the coordinator in that zone. */
  policy: (zone: string) => MeshPolicy | undefined;
  /** Called when a zone enters or leaves fallback on this replica (report it through the flag client). */
  onZoneMode?: (zone: string, mode: "p2p" | "fallback", reason: string) => void;
  /** Liveness period of the replica (AliveMsg). Default 100 ms. */
  aliveMs?: number;
  /** Full roster snapshot period. Default 1000 ms. */
  syncMs?: number;
  /** A replica silent this long is dead and its peers gone. Default 1500 ms. */
  replicaTimeoutMs?: number;
  log?: CoordinatorLogger;
  now?: () => number;
  /** Serve wss from this certificate; plain ws without. */
  tls?: ServingTls;
}

const SWEEP_MS = 100;

/** What the coordinator needs from a verified character token. */
export type Claims = Pick<CharacterClaims, "characterId" | "map" | "accountId" | "sessionId">;

interface Local {
  ws: WebSocket;
  claims: Claims;
  session: SessionCheck;
  entry: RosterEntry;
  lastBeat: number;
  sweepsSinceBeat: number;
  /** Mesh mates told to the client, with their mesh. */
  mates: Map<string, string>;
  /** Mates told to use the relay. */
  relaySent: Set<string>;
  /** Peers that signaled this one: it may answer them even before its own view has them as mates. */
  inbound: Set<string>;
  hosts: Map<string, string>;
  zoneModeSent: "p2p" | "fallback";
}

interface Remote {
  entry: RosterEntry;
  seenAt: number;
}

interface ZoneRun {
  zone: string;
  latch: FallbackLatch;
  mode: "p2p" | "fallback";
  reason: string;
  hosts: Map<string, string>;
  remeshTimer?: NodeJS.Timeout;
  /** From the last mesh computation: peers in a mesh, meshes, peers with a relayed pair. */
  meshedPeers: number;
  meshes: number;
  relayedPeers: number;
  /** When the zone entered fallback (ms since the epoch). */
  since: number;
  /** Since when the quality has been past the thresholds. */
  badSince?: number;
  lastRemesh: number;
}

export interface CoordinatorStats {
  peers: number;
  signalsForwarded: number;
  signalsRefused: number;
  relayedPairs: number;
}

export class Coordinator {
  readonly stats: CoordinatorStats = { peers: 0, signalsForwarded: 0, signalsRefused: 0, relayedPairs: 0 };
  private readonly opts: CoordinatorOptions;
  private readonly log: CoordinatorLogger;
  private readonly now: () => number;
  private readonly wss: WebSocketServer;
  private readonly locals = new Map<string, Local>();
  /** zone -> peer -> what this replica knows (its own peers included). */
  private readonly roster = new Map<string, Map<string, Remote>>();
  private readonly replicas = new Map<string, number>();
  private readonly zones = new Map<string, ZoneRun>();
  private readonly subs: Subscription[] = [];
  private readonly timers: NodeJS.Timeout[] = [];
  private http?: Server;
  private closing = false;

  constructor(opts: CoordinatorOptions) {
    this.opts = opts;
    this.log = opts.log ?? silent;
    this.now = opts.now ?? Date.now;
    this.wss = new WebSocketServer({
      noServer: true,
      maxPayload: MAX_COORD_FRAME,
      perMessageDeflate: false,
      clientTracking: false,
    });
  }

  get replica(): string {
    return this.opts.replica;
  }

  /** Whether it serves wss. */
  get tls(): boolean {
    return this.opts.tls !== undefined;
  }

  async listen(port = 0, host = "127.0.0.1"): Promise<number> {
    this.start();
    const l = await listenForUpgrades(
      port,
      host,
      (req, socket, head) => this.upgrade(req, socket, head),
      undefined,
      this.opts.tls,
    );
    this.http = l.server;
    return l.port;
  }

  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    if (this.closing) {
      socket.end("HTTP/1.1 503 Service Unavailable\r\n\r\n");
      return;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => this.accept(ws));
  }

  /** The zones' state as this replica sees them (tests, metrics). */
  zoneStates(): ZoneState[] {
    const out: ZoneState[] = [];
    for (const [zone, peers] of this.roster) {
      const z = this.zoneRun(zone);
      out.push({ zone, mode: z.mode, reason: z.reason, peers: peers.size, relayed: z.relayedPeers });
    }
    return out;
  }

  /**
   * What this replica says about each zone for the Zone's status (through the flag client's
   * report): its fallback and its peer counts. Zones with nothing to say are left out.
   */
  zoneReports(): Map<string, ZoneReport> {
    const out = new Map<string, ZoneReport>();
    for (const zone of [...this.roster.keys()].sort()) {
      const z = this.zoneRun(zone);
      const r: ZoneReport = {};
      if (z.mode === "fallback")
        r.fallback = { reason: z.reason.slice(0, 1024), since: new Date(z.since).toISOString() };
      if (z.meshedPeers > 0 || z.mode === "fallback")
        r.peers = { connected: z.meshedPeers, meshes: z.meshes, relayed: z.relayedPeers };
      if (r.fallback || r.peers) out.set(zone, r);
    }
    return out;
  }

  /** The mesh mates this replica told a local peer about (tests). */
  matesOf(peer: string): string[] {
    return [...(this.locals.get(peer)?.mates.keys() ?? [])];
  }

  async close(): Promise<void> {
    this.closing = true;
    for (const t of this.timers) clearInterval(t);
    for (const z of this.zones.values()) clearTimeout(z.remeshTimer);
    const gone = [...this.locals.values()].map((l) => ({ zone: l.entry.zone, id: l.entry.id }));
    if (gone.length > 0 && !this.opts.nc.isClosed())
      this.publish(coordSubjects.roster(this.opts.region), {
        v: 1,
        replica: this.replica,
        op: "remove",
        peers: gone,
      } satisfies RosterMsg);
    for (const l of this.locals.values()) l.ws.close(1001, "coordinator stopping");
    this.locals.clear();
    for (const s of this.subs) s.unsubscribe();
    await new Promise<void>((r) => (this.http ? this.http.close(() => r()) : r()));
    this.http?.closeAllConnections();
  }

  // ---- replicas over NATS ---------------------------------------------------------------------

  private start(): void {
    const { nc, region } = this.opts;
    const sub = (subject: string, fn: (data: Uint8Array) => void) =>
      this.subs.push(
        nc.subscribe(subject, {
          callback: (err, msg) => {
            if (err) return;
            try {
              fn(msg.data);
            } catch (e) {
              this.log.warn("bad coordinator bus message", { subject, err: String(e) });
            }
          },
        }),
      );
    sub(coordSubjects.roster(region), (d) => this.onRoster(busDecode<RosterMsg>(d)));
    sub(coordSubjects.replica(region, this.replica), (d) => this.onSignalMsg(busDecode<SignalMsg>(d)));
    sub(coordSubjects.alive(region), (d) => {
      const m = busDecode<AliveMsg>(d);
      if (m.replica !== this.replica) this.replicas.set(m.replica, this.now());
    });
    sub(coordSubjects.hello(region), (d) => {
      if (busDecode<{ replica: string }>(d).replica !== this.replica) this.publishSnapshot();
    });
    this.publish(coordSubjects.hello(region), { replica: this.replica });
    this.timers.push(
      setInterval(() => this.alive(), this.opts.aliveMs ?? 100),
      setInterval(() => this.publishSnapshot(), this.opts.syncMs ?? 1000),
      setInterval(() => this.sweep(), SWEEP_MS),
    );
    this.alive();
  }

  private publish(subject: string, msg: unknown): void {
    try {
      this.opts.nc.publish(subject, busEncode(msg));
    } catch (err) {
      this.log.warn("coordinator publish failed", { subject, err: String(err) });
    }
  }

  private alive(): void {
    this.publish(coordSubjects.alive(this.opts.region), {
      v: 1,
      replica: this.replica,
      t: this.now(),
      zones: this.zoneStates(),
    } satisfies AliveMsg);
  }

  private publishSnapshot(): void {
    this.publish(coordSubjects.roster(this.opts.region), {
      v: 1,
      replica: this.replica,
      op: "snapshot",
      entries: [...this.locals.values()].map((l) => l.entry),
    } satisfies RosterMsg);
  }

  private upsert(e: RosterEntry): void {
    this.publish(coordSubjects.roster(this.opts.region), {
      v: 1,
      replica: this.replica,
      op: "upsert",
      entries: [e],
    } satisfies RosterMsg);
  }

  private onRoster(m: RosterMsg): void {
    if (m.replica === this.replica) return;
    const now = this.now();
    this.replicas.set(m.replica, now);
    if (m.op === "remove") {
      for (const p of m.peers) this.forget(p.zone, p.id, m.replica);
      return;
    }
    if (m.op === "snapshot") {
      const keep = new Set(m.entries.map((e) => `${e.zone}/${e.id}`));
      for (const [zone, peers] of this.roster)
        for (const [id, r] of peers)
          if (r.entry.replica === m.replica && !keep.has(`${zone}/${id}`)) this.forget(zone, id, m.replica);
    }
    for (const e of m.entries) {
      // A peer that reconnected here is ours now; an older replica's word about it is stale.
      if (this.locals.has(e.id) && this.locals.get(e.id)!.entry.zone === e.zone) continue;
      const peers = this.zonePeers(e.zone);
      const before = peers.get(e.id)?.entry;
      peers.set(e.id, { entry: e, seenAt: now });
      if (!before || m.op === "upsert" || structuralChange(before, e)) this.remeshSoon(e.zone);
    }
  }

  private forget(zone: string, id: string, replica: string): void {
    const peers = this.roster.get(zone);
    const r = peers?.get(id);
    if (!r || r.entry.replica !== replica) return;
    peers!.delete(id);
    this.remeshSoon(zone);
  }

  /** Drops silent peers, dead replicas' peers and entries past their TTL; evaluates zones. */
  private sweep(): void {
    const now = this.now();
    const replicaTimeout = this.opts.replicaTimeoutMs ?? 1500;
    for (const [zone, peers] of this.roster) {
      const policy = this.opts.policy(zone);
      for (const [id, r] of peers) {
        const local = this.locals.get(id);
        if (local && local.entry.zone === zone) {
          this.checkSession(local, now);
          const timeout = policy?.thresholds.coordinatorTimeoutMs ?? 1500;
          // Counted in sweeps that ran: a stalled event loop here is not a silent peer.
          local.sweepsSinceBeat++;
          if (now - local.lastBeat > timeout && local.sweepsSinceBeat * SWEEP_MS > timeout)
            this.dropLocal(local, "heartbeat timeout");
          continue;
        }
        const replicaSeen = this.replicas.get(r.entry.replica) ?? 0;
        const ttl = policy?.peerTTLMs ?? 30_000;
        if (now - replicaSeen > replicaTimeout || now - r.seenAt > ttl) {
          peers.delete(id);
          this.remeshSoon(zone);
        }
      }
      this.evaluate(zone);
      // Hosts follow quality, which changes without any roster event: rebuild every refresh.
      if (policy && now - this.zoneRun(zone).lastRemesh >= policy.refreshMs) this.remeshSoon(zone);
    }
  }

  // ---- zone state -------------------------------------------------------------------------------

  private zonePeers(zone: string): Map<string, Remote> {
    let p = this.roster.get(zone);
    if (!p) {
      p = new Map();
      this.roster.set(zone, p);
    }
    return p;
  }

  private zoneRun(zone: string): ZoneRun {
    let z = this.zones.get(zone);
    if (!z) {
      z = {
        zone,
        latch: new FallbackLatch(),
        mode: "p2p",
        reason: "",
        hosts: new Map(),
        meshedPeers: 0,
        meshes: 0,
        relayedPeers: 0,
        since: 0,
        lastRemesh: 0,
      };
      this.zones.set(zone, z);
    }
    return z;
  }

  /**
   * Zone fallback: the mesh quality is sampled only while the zone is P2P; a bad sample enters
   * the latch and clears at once, so the latch's recovery (Auto backoff, doubling on re-entry, or
   * Manual) decides when P2P is tried again, and a new bad sample then re-enters.
   */
  private evaluate(zone: string): void {
    const policy = this.opts.policy(zone);
    const z = this.zoneRun(zone);
    const now = this.now();
    if (!policy) return;
    if (z.mode === "p2p") {
      const entries = [...(this.roster.get(zone)?.values() ?? [])].map((r) => r.entry);
      const v = zoneVerdict(entries, policy.thresholds, now, policy.warmupMs);
      if (!v.fallback) z.badSince = undefined;
      else {
        z.badSince ??= now;
        if (now - z.badSince >= policy.sustainMs) {
          z.badSince = undefined;
          z.latch.set("quality", v.fallback, now, policy.recovery);
          z.latch.clear("quality", now);
        }
      }
    }
    const s = z.latch.evaluate(now, policy.recovery, true);
    const mode = s.active ? "fallback" : "p2p";
    if (mode === z.mode) {
      z.reason = s.reason;
      return;
    }
    z.mode = mode;
    z.reason = s.reason;
    z.since = now;
    this.log.info(mode === "fallback" ? "zone falls back" : "zone back to p2p", { zone, reason: s.reason });
    this.opts.onZoneMode?.(zone, mode, s.reason);
    this.remesh(zone);
    this.alive();
  }

  private remeshSoon(zone: string): void {
    const z = this.zoneRun(zone);
    if (z.remeshTimer) return;
    // Coalesces a burst of joins and roster messages into one mesh computation.
    z.remeshTimer = setTimeout(() => {
      z.remeshTimer = undefined;
      this.remesh(zone);
    }, 10);
  }

  /** Computes the zone's meshes and tells each local peer what changed for it. */
  private remesh(zone: string): void {
    const policy = this.opts.policy(zone);
    const z = this.zoneRun(zone);
    z.lastRemesh = this.now();
    const all = [...(this.roster.get(zone)?.values() ?? [])].map((r) => r.entry);
    const byId = new Map(all.map((e) => [e.id, e]));
    const eligible =
      policy && z.mode === "p2p" ? all.filter((e) => !peerTooPoor(e.q, policy.thresholds)) : [];
    const meshes = assignMeshes(eligible, policy?.maxPeers ?? 0);
    const meshOf = new Map<string, string>();
    for (const [mesh, ids] of meshes) for (const id of ids) meshOf.set(id, mesh);
    // Who links to whom, per mesh: a peer's mates are the members it links to directly.
    const linksOf = new Map<string, string[]>();
    for (const [, ids] of meshes)
      for (const [id, to] of meshLinks(
        ids.map((id) => byId.get(id)!),
        policy?.maxLinks ?? 0,
      ))
        linksOf.set(id, to);

    const relayedPeers = new Set<string>();
    for (const [a, to] of linksOf)
      for (const b of to)
        if (a < b && relayed(byId.get(a)!, byId.get(b)!)) {
          relayedPeers.add(a);
          relayedPeers.add(b);
        }
    z.relayedPeers = relayedPeers.size;
    z.meshes = meshes.size;
    z.meshedPeers = meshOf.size;

    for (const l of this.locals.values()) {
      if (l.entry.zone !== zone) continue;
      if (l.zoneModeSent !== z.mode) {
        l.zoneModeSent = z.mode;
        this.sendTo(l, { type: "zoneMode", mode: z.mode, reason: z.reason.slice(0, 256) });
      }
      const mesh = meshOf.get(l.entry.id);
      const want = new Map<string, string>();
      if (mesh) for (const id of linksOf.get(l.entry.id) ?? []) want.set(id, mesh);
      for (const id of [...l.mates.keys()]) {
        if (want.has(id)) continue;
        l.mates.delete(id);
        l.relaySent.delete(id);
        this.sendTo(l, { type: "peerLeft", peer: id, reason: byId.has(id) ? "mesh changed" : "left" });
      }
      for (const [id, m] of want) {
        const other = byId.get(id)!;
        if (!l.mates.has(id)) {
          l.mates.set(id, m);
          this.sendTo(l, {
            type: "peerJoined",
            peer: id,
            session: other.session,
            entity: other.entity,
            mesh: m,
            offerer: l.entry.id < id,
          });
        }
        if (!l.relaySent.has(id) && relayed(l.entry, other)) {
          l.relaySent.add(id);
          this.sendTo(l, { type: "relay", peer: id });
        }
      }
      if (mesh) {
        const members = meshes.get(mesh)!.map((id) => byId.get(id)!);
        const host = chooseHost(members, z.hosts.get(mesh));
        if (host) {
          z.hosts.set(mesh, host);
          if (l.hosts.get(mesh) !== host) {
            l.hosts.set(mesh, host);
            this.sendTo(l, { type: "host", mesh, peer: host });
          }
        }
      }
    }
    for (const mesh of [...z.hosts.keys()]) if (!meshes.has(mesh)) z.hosts.delete(mesh);
  }

  // ---- clients ------------------------------------------------------------------------------------

  private accept(ws: WebSocket): void {
    let local: Local | undefined;
    let joining = false;
    const authTimer = setTimeout(() => ws.close(4005, "auth_timeout"), 5000);
    ws.on("message", (data: RawData, isBinary) => {
      let m: ToCoordinator;
      try {
        if (!isBinary) throw new Error("text frame");
        m = decodeCoord(data as Buffer, "c2s");
      } catch (err) {
        ws.close(4000, "bad_frame");
        this.log.warn("bad frame from a peer", { err: String(err) });
        return;
      }
      if (!local) {
        if (m.type !== "join" || joining) {
          if (!joining) ws.close(4007, "not_authenticated");
          return;
        }
        joining = true;
        void this.join(ws, m).then((l) => {
          clearTimeout(authTimer);
          local = l;
          joining = false;
        });
        return;
      }
      this.onClient(local, m);
    });
    ws.on("close", () => {
      clearTimeout(authTimer);
      if (local) this.dropLocal(local, "disconnected");
    });
    cutOffAfterError(ws);
  }

  private refuse(ws: WebSocket, reason: string, message: string): undefined {
    if (ws.readyState === WebSocket.OPEN) {
      ws.send(encodeCoord({ type: "refused", reason, message: message.slice(0, 256) }));
      ws.close(4005, reason);
    }
    return undefined;
  }

  private async join(ws: WebSocket, m: ToCoordinator & { type: "join" }): Promise<Local | undefined> {
    let claims: Claims;
    try {
      claims = await this.opts.verify(m.token);
    } catch (err) {
      return this.refuse(ws, "auth_failed", (err as Error).message || "token rejected");
    }
    let map = claims.map;
    let entity = m.entity;
    if (this.opts.locate) {
      const where = await this.opts.locate(m.session).catch(() => undefined);
      if (!where || where.characterId !== claims.characterId)
        return this.refuse(ws, "session_unknown", "no gateway holds this session for this character");
      map = where.map;
      entity = where.entity;
    }
    if (ws.readyState !== WebSocket.OPEN) return undefined;
    const zone = this.opts.zoneOf(map);
    if (!zone) return this.refuse(ws, "map_unavailable", `no zone serves map ${map}`);
    const policy = this.opts.policy(zone);
    if (!policy) return this.refuse(ws, "p2p_disabled", `P2P is off in zone ${zone}`);
    const id = claims.characterId;
    // One connection per character: the newer one wins.
    const older = this.locals.get(id);
    if (older) this.dropLocal(older, "connected again");
    const now = this.now();
    const entry: RosterEntry = {
      id,
      session: m.session,
      entity,
      zone,
      map,
      x: m.x,
      y: m.y,
      ...nextArea(undefined, m.x, m.y, policy.areaCells, policy.areaMargin),
      joinedAt: now,
      replica: this.replica,
      q: NO_QUALITY,
      failed: [],
    };
    const z = this.zoneRun(zone);
    const l: Local = {
      ws,
      claims,
      session: { checkedAt: now, checking: false },
      entry,
      lastBeat: now,
      sweepsSinceBeat: 0,
      mates: new Map(),
      relaySent: new Set(),
      inbound: new Set(),
      hosts: new Map(),
      zoneModeSent: z.mode,
    };
    this.locals.set(id, l);
    this.zonePeers(zone).set(id, { entry, seenAt: now });
    this.stats.peers = this.locals.size;
    this.sendTo(l, {
      type: "joined",
      peer: id,
      zone,
      replica: this.replica,
      heartbeatMs: Math.min(65_535, policy.heartbeatMs),
      timeoutMs: Math.min(65_535, policy.thresholds.coordinatorTimeoutMs),
    });
    if (z.mode !== "p2p") this.sendTo(l, { type: "zoneMode", mode: z.mode, reason: z.reason.slice(0, 256) });
    this.upsert(entry);
    this.remeshSoon(zone);
    return l;
  }

  private checkSession(l: Local, now: number): void {
    const live = this.opts.sessionLive;
    if (!live) return;
    recheckSession(
      l.session,
      now,
      this.opts.sessionCheckMs ?? 10_000,
      () => live(l.claims),
      () => {
        if (this.locals.get(l.entry.id) !== l) return;
        this.sendTo(l, { type: "refused", reason: "session_ended", message: "the login session has ended" });
        this.dropLocal(l, "session ended");
      },
      this.log,
    );
  }

  private dropLocal(l: Local, why: string): void {
    const id = l.entry.id;
    if (this.locals.get(id) !== l) return;
    this.locals.delete(id);
    this.stats.peers = this.locals.size;
    const peers = this.roster.get(l.entry.zone);
    if (peers?.get(id)?.entry === l.entry) peers.delete(id);
    this.publish(coordSubjects.roster(this.opts.region), {
      v: 1,
      replica: this.replica,
      op: "remove",
      peers: [{ zone: l.entry.zone, id }],
    } satisfies RosterMsg);
    if (l.ws.readyState === WebSocket.OPEN) l.ws.close(1000, why.slice(0, 100));
    this.remeshSoon(l.entry.zone);
  }

  private onClient(l: Local, m: ToCoordinator): void {
    switch (m.type) {
      case "join":
        l.ws.close(4003, "unexpected_type");
        return;
      case "leave":
        this.dropLocal(l, "left");
        return;
      case "heartbeat": {
        l.lastBeat = this.now();
        l.sweepsSinceBeat = 0;
        this.sendTo(l, { type: "ack", t: m.t });
        const e = l.entry;
        const policy = this.opts.policy(e.zone);
        if (!policy) return;
        const area = nextArea(e, m.x, m.y, policy.areaCells, policy.areaMargin);
        const wasPoor = peerTooPoor(e.q, policy.thresholds);
        // A new area regroups meshes; a new link square may rewire who links to whom.
        const moved =
          area.ax !== e.ax ||
          area.ay !== e.ay ||
          linkSquare(m.x) !== linkSquare(e.x) ||
          linkSquare(m.y) !== linkSquare(e.y);
        // The entry is replaced, not mutated: other replicas' copies and ours compare by value.
        l.entry = { ...e, x: m.x, y: m.y, ax: area.ax, ay: area.ay, q: m.q };
        this.zonePeers(e.zone).set(e.id, { entry: l.entry, seenAt: this.now() });
        if (moved || wasPoor !== peerTooPoor(m.q, policy.thresholds)) {
          this.upsert(l.entry);
          this.remeshSoon(e.zone);
        }
        return;
      }
      case "link": {
        if (m.state !== "failed" || !l.mates.has(m.peer) || l.entry.failed.includes(m.peer)) return;
        l.entry = { ...l.entry, failed: [...l.entry.failed, m.peer].slice(-64) };
        this.zonePeers(l.entry.zone).set(l.entry.id, { entry: l.entry, seenAt: this.now() });
        this.stats.relayedPairs++;
        this.upsert(l.entry);
        this.remeshSoon(l.entry.zone);
        return;
      }
      case "offer":
      case "answer":
        this.signal(l, m.peer, m.type, m.sdp, m.n);
        return;
      case "candidate":
        this.signal(l, m.peer, "candidate", m.candidate, 0);
        return;
    }
  }

  /** Signaling goes only to a mesh mate (or a peer that signaled first) of the same zone. */
  private signal(l: Local, to: string, kind: SignalMsg["kind"], data: string, n: number): void {
    const zone = l.entry.zone;
    const target = this.roster.get(zone)?.get(to);
    if (!target || !(l.mates.has(to) || l.inbound.has(to))) {
      this.stats.signalsRefused++;
      return;
    }
    const msg: SignalMsg = { v: 1, zone, from: l.entry.id, to, kind, n, data };
    this.stats.signalsForwarded++;
    if (target.entry.replica === this.replica) this.onSignalMsg(msg);
    else this.publish(coordSubjects.replica(this.opts.region, target.entry.replica), msg);
  }

  private onSignalMsg(m: SignalMsg): void {
    const l = this.locals.get(m.to);
    if (!l || l.entry.zone !== m.zone) return;
    l.inbound.add(m.from);
    if (m.kind === "offer") this.sendTo(l, { type: "offerFrom", peer: m.from, n: m.n, sdp: m.data });
    else if (m.kind === "answer") this.sendTo(l, { type: "answerFrom", peer: m.from, n: m.n, sdp: m.data });
    else this.sendTo(l, { type: "candidateFrom", peer: m.from, candidate: m.data });
  }

  private sendTo(l: Local, m: FromCoordinator): void {
    if (l.ws.readyState !== WebSocket.OPEN) return;
    if (l.ws.bufferedAmount > 1 << 20) {
      l.ws.terminate(); // a client that does not read is dropped (memory stays bounded)
      return;
    }
    l.ws.send(encodeCoord(m));
  }
}

/** Whether an entry changed in a way that can change meshes (not just position or quality). */
function structuralChange(a: RosterEntry, b: RosterEntry): boolean {
  return (
    a.ax !== b.ax ||
    a.ay !== b.ay ||
    linkSquare(a.x) !== linkSquare(b.x) ||
    linkSquare(a.y) !== linkSquare(b.y) ||
    a.map !== b.map ||
    a.joinedAt !== b.joinedAt ||
    a.failed.length !== b.failed.length ||
    a.q.open > 0 !== b.q.open > 0
  );
}

export function replicaName(): string {
  return `coord-${randomBytes(4).toString("hex")}`;
}
