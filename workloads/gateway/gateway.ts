// The regional gateway: clients connect over WebSocket, authenticate with a character token,
// and play on the map server that owns their map, reached over NATS (platform/bus/contract.ts).
//
// Per connection: the first frame must be `hello` within the auth timeout; every frame is
// decoded and validated (a bad one closes that connection with a reason code); inputs are
// rate-limited; outgoing frames go straight to the socket unless its buffered amount passes a
// cap, and then the client is dropped (memory per connection is bounded).
//
// Per session: one sequence counter for every server-authoritative message (welcome, AOI,
// events, mode and map changes), in the order the gateway produced them. While a session joins
// or changes map, those messages wait in a bounded queue and keep their order.
//
// Modes: the map server stamps every AOI frame and owner notice with the map's mode. When it
// changes, each session on the map gets a `mode` message in its sequence, before any message
// produced under the new mode; P2P clients join or leave their coordinator mesh on reading it
// (meshes and signaling are the coordinator's, workloads/coordinator). In p2p mode the gateway
// leaves out of a P2P client's AOI the moves of the peers it reports hearing directly
// (`meshReport`), so it relays only what the mesh does not carry. Legacy clients get everything
// from the server in every mode.
import { randomBytes } from "node:crypto";
import type { IncomingMessage, Server } from "node:http";
import type { Msg, NatsConnection, Subscription } from "@nats-io/transport-node";
import { type RawData, WebSocket, WebSocketServer } from "ws";
import {
  type AoiFrame,
  decode as busDecode,
  encode as busEncode,
  type ClientInput,
  type EntityState,
  type EventBatch,
  type InputBatch,
  type JoinReply,
  type JoinRequest,
  type LeaveRequest,
  MAX_CHAT_LENGTH,
  MAX_INPUTS_PER_BATCH,
  type MapAddress,
  type MapMode,
  type OwnerNotice,
  parseMapSubject,
  subjects,
  type ViewResync,
  type ZoneEvent,
} from "../../platform/bus/contract.ts";
import { inRollout } from "../../platform/flags/layout.ts";
import { listenForUpgrades } from "../../platform/http.ts";
import {
  AoiBatchEncoder,
  type ClientMessage,
  decode,
  encode,
  MAX_CLIENT_FRAME,
  type Mode,
} from "../../platform/protocol/messages.ts";
import { closeCodeOf, ProtocolError, type ReasonCode } from "../../platform/protocol/schema.ts";
import { recheckSession, type SessionCheck } from "../auth/gateway.ts";
import { coordSubjects, type LocateReply, type LocateRequest } from "../coordinator/bus.ts";
import { TokenBucket } from "./ratelimit.ts";

/** What a verified character token says (workloads/auth/tokens.ts CharacterClaims). */
export interface Claims {
  accountId: string;
  characterId: string;
  characterName: string;
  map: string;
  sessionId: string;
}

export type VerifyToken = (token: string) => Promise<Claims>;

/** Which zone serves a map (undefined: no zone does, in this region). */
export interface MapDirectory {
  zoneOf(map: string): string | undefined;
}

export function staticDirectory(zones: Record<string, readonly string[]>): MapDirectory {
  const byMap = new Map<string, string>();
  for (const [zone, maps] of Object.entries(zones)) for (const m of maps) byMap.set(m, zone);
  return { zoneOf: (m) => byMap.get(m) };
}

export interface Limits {
  /** A client whose unsent bytes pass this is dropped (slow_consumer); one frame may exceed it. */
  maxBufferedBytes: number;
  /** Server messages queued for a session while it joins or changes map. */
  maxPendingMessages: number;
  /** Client frames per second, and the burst allowed above that. */
  msgsPerSecond: number;
  msgsBurst: number;
  /** Client bytes per second (the burst is one second's worth plus one maximal frame). */
  bytesPerSecond: number;
  authTimeoutMs: number;
  /** How long a join keeps retrying while a map has no owner (handover). */
  joinTimeoutMs: number;
  maxConnections: number;
}

export const DEFAULT_LIMITS: Limits = {
  maxBufferedBytes: 256 * 1024,
  maxPendingMessages: 512,
  msgsPerSecond: 40,
  msgsBurst: 80,
  bytesPerSecond: 32 * 1024,
  authTimeoutMs: 5000,
  joinTimeoutMs: 15_000,
  maxConnections: 20_000,
};

export interface GatewayLogger {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

const silent: GatewayLogger = { info: () => {}, warn: () => {}, error: () => {} };

export interface GatewayOptions {
  /** Subscriptions: AOI frames and owner notices (the heavy inbound stream). */
  nc: NatsConnection;
  /**
   * Requests and input (join, leave, input batches). A second connection keeps join replies
   * from queueing behind AOI frames when the gateway is busy. Default: `nc`.
   */
  control?: NatsConnection;
  region: string;
  /** This gateway's instance name (the pod name): the `<gw>` of its AOI subject. */
  id: string;
  verify: VerifyToken;
  /**
   * Whether the login session behind a playing session's token still lives
   * (GatewayAuth.sessionLive): a logout or a revocation ends the connection ("session_ended").
   * Checked every `sessionCheckMs` (default 10 s) per session.
   */
  sessionLive?: (claims: Claims) => Promise<boolean>;
  sessionCheckMs?: number;
  directory: MapDirectory;
  /**
   * The gateway's own view of a zone from its flags: "p2p" allows what the map server reports,
   * "server" holds P2P off, "fallback" forces fallback. Default: follow the map server.
   */
  p2pGate?: (zone: string) => Mode;
  /**
   * The share of P2P clients that play P2P in a zone (the policy's rolloutPercent, by a stable
   * hash of the character: inRollout); the others play in server mode. Default: all.
   */
  rolloutPercent?: (zone: string) => number;
  limits?: Partial<Limits>;
  log?: GatewayLogger;
  /** Milliseconds between input flushes per map (the map's tick). */
  inputFlushMs?: number;
  now?: () => number;
}

type SessionState = "auth" | "joining" | "playing" | "transferring" | "closed";

interface Session {
  id: string;
  ws: WebSocket;
  state: SessionState;
  kind: "legacy" | "p2p";
  claims?: Claims;
  addr?: MapAddress;
  mapKey: string;
  entity: number;
  mode: Mode;
  seq: number;
  /** Builders of server-authoritative messages waiting for the session to be playing. */
  pending: ((seq: number) => Uint8Array)[];
  msgs: TokenBucket;
  bytes: TokenBucket;
  authTimer?: NodeJS.Timeout;
  /** P2P: the entities of the peers the client hears directly (their moves are not relayed). */
  meshEntities: Set<number>;
  /** When its login session was last found alive. */
  session: SessionCheck;
  /** The map owner's fence the session's entity id belongs to, and the map's size. */
  fence: string;
  width: number;
  height: number;
}

interface MapState {
  addr: MapAddress;
  key: string;
  /** The mode the map server reports. */
  serverMode: MapMode;
  sessions: Set<Session>;
  inputs: ClientInput[];
  lastFlush: number;
  flushTimer?: NodeJS.Timeout;
}

export interface GatewayStats {
  connections: number;
  sessions: number;
  framesOut: number;
  droppedSlow: number;
  closedBadFrame: number;
  rateLimited: number;
  /** Views resent after a bus reconnect. */
  resyncs: number;
}

function mapKeyOf(a: MapAddress): string {
  return `${a.zone}/${a.map}`;
}

const MAX_CELL = 0xffff / 16;

/** The bus carries i32 hit points and any coordinates; the wire carries u32 and 1/16 cells. */
export function fitEntity(e: EntityState): EntityState {
  if (
    e.hp >= 0 &&
    e.maxHp >= 0 &&
    e.x >= 0 &&
    e.y >= 0 &&
    e.x <= MAX_CELL &&
    e.y <= MAX_CELL &&
    e.name.length <= 32
  )
    return e;
  const clamp = (v: number, hi: number) => Math.min(hi, Math.max(0, v));
  return {
    ...e,
    hp: clamp(e.hp, 0xffffffff),
    maxHp: clamp(e.maxHp, 0xffffffff),
    x: clamp(e.x, MAX_CELL),
    y: clamp(e.y, MAX_CELL),
    name: truncateUtf8(e.name, 32),
  };
}

function truncateUtf8(s: string, maxBytes: number): string {
  let out = s;
  while (Buffer.byteLength(out) > maxBytes) out = out.slice(0, -1);
  return out;
}

/** Fences are etcd revisions (decimal); anything else compares as text. */
function newerFence(a: string, b: string): boolean {
  if (/^\d+$/.test(a) && /^\d+$/.test(b)) return BigInt(a) > BigInt(b);
  return a > b;
}

function isClosed(s: Session): boolean {
  return s.state === "closed";
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function isRetryable(err: unknown): boolean {
  const name = (err as Error)?.name ?? "";
  const msg = String((err as Error)?.message ?? "");
  return /NoResponders|Timeout|RequestError/i.test(name) || /no responders|timeout/i.test(msg);
}

export class Gateway {
  readonly stats: GatewayStats = {
    connections: 0,
    sessions: 0,
    framesOut: 0,
    droppedSlow: 0,
    closedBadFrame: 0,
    rateLimited: 0,
    resyncs: 0,
  };
  private readonly opts: GatewayOptions;
  private readonly control: NatsConnection;
  private readonly limits: Limits;
  private readonly log: GatewayLogger;
  private readonly now: () => number;
  private readonly wss: WebSocketServer;
  private readonly sessions = new Map<string, Session>();
  private readonly byCharacter = new Map<string, Session>();
  private readonly maps = new Map<string, MapState>();
  private readonly subs: Subscription[] = [];
  private http?: Server;
  private sessionTimer?: NodeJS.Timeout;
  private closing = false;

  constructor(opts: GatewayOptions) {
    this.opts = opts;
    this.control = opts.control ?? opts.nc;
    this.limits = { ...DEFAULT_LIMITS, ...opts.limits };
    this.log = opts.log ?? silent;
    this.now = opts.now ?? Date.now;
    this.wss = new WebSocketServer({
      noServer: true,
      maxPayload: MAX_CLIENT_FRAME,
      perMessageDeflate: false,
      clientTracking: false,
    });
  }

  /** Subscribes to the region's AOI frames and owner notices, then listens for clients. */
  async listen(port = 0, host = "127.0.0.1"): Promise<number> {
    this.subscribe();
    if (this.opts.sessionLive) {
      const every = this.opts.sessionCheckMs ?? 10_000;
      // A sweep per second checks the sessions that are due, so the checks spread out in time.
      this.sessionTimer = setInterval(() => this.checkSessions(every), Math.min(1000, every));
      this.sessionTimer.unref();
    }
    const l = await listenForUpgrades(port, host, (req, socket, head) => this.upgrade(req, socket, head));
    this.http = l.server;
    return l.port;
  }

  /** Handles an HTTP upgrade from a server the caller owns. */
  upgrade(req: IncomingMessage, socket: import("node:stream").Duplex, head: Buffer): void {
    if (this.closing || this.stats.connections >= this.limits.maxConnections) {
      socket.end("HTTP/1.1 503 Service Unavailable\r\n\r\n");
      return;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => this.accept(ws));
  }

  subscribe(): void {
    if (this.subs.length > 0) return;
    const nc = this.opts.nc;
    // AOI frames are deltas over core NATS: those sent while the connection was down are gone.
    void (async () => {
      for await (const st of nc.status()) {
        if (this.closing) break;
        if (st.type === "reconnect") this.resyncViews();
      }
    })();
    this.subs.push(
      nc.subscribe(subjects.aoiForGateway(this.opts.region, this.opts.id), {
        callback: (err, msg) => {
          if (!err) this.onAoi(msg);
        },
      }),
      nc.subscribe(subjects.ownersForRegion(this.opts.region), {
        callback: (err, msg) => {
          if (!err) this.onOwner(msg);
        },
      }),
      // The coordinator asks where a session plays before meshing it: only the gateway holding
      // the session answers, with the map it is on now (not the one its token named).
      nc.subscribe(coordSubjects.locate(this.opts.region), {
        callback: (err, msg) => {
          if (err) return;
          try {
            const where = this.locate(busDecode<LocateRequest>(msg.data).session);
            if (where) msg.respond(busEncode(where));
          } catch (e) {
            this.log.warn("bad locate request", { err: String(e) });
          }
        },
      }),
    );
  }

  /**
   * After a reconnect: every client forgets its view (a `viewReset` in its sequence) and each
   * map's owner sends the whole views of this gateway's sessions again.
   */
  resyncViews(): void {
    this.stats.resyncs++;
    for (const m of this.maps.values()) {
      if (m.sessions.size === 0) continue;
      for (const s of m.sessions) this.deliver(s, (seq) => encode({ type: "viewReset", seq }));
      this.control.publish(
        subjects.resync(m.addr),
        busEncode({ v: 1, gateway: this.opts.id } satisfies ViewResync),
      );
    }
    this.log.info("views resynced after a bus reconnect", { maps: this.maps.size });
  }

  /** Where a playing session is: its character, map and entity id. */
  locate(sessionId: string): LocateReply | undefined {
    const s = this.sessions.get(sessionId);
    if (s?.state !== "playing" || !s.claims || !s.addr) return undefined;
    return { v: 1, characterId: s.claims.characterId, map: s.addr.map, entity: s.entity };
  }

  /** A session of this gateway stepped onto a portal: move it to the portal's map. */
  private warp(ev: ZoneEvent & { k: "warp" }, map: string, zone: string): void {
    const s = this.sessions.get(ev.session);
    if (s?.state !== "playing" || s.addr?.map !== map || s.addr.zone !== zone) return;
    this.transfer(s.id, ev.map, { x: ev.x, y: ev.y }).catch((err) =>
      this.log.warn("warp failed", { session: s.id, from: map, to: ev.map, err: String(err) }),
    );
  }

  /** Delivers one zone event batch (from the JetStream consumer, see events.ts). */
  onEvents(batch: EventBatch, zone: string): void {
    const t = this.now();
    for (const ev of batch.events) {
      if (ev.k === "warp") {
        this.warp(ev, batch.map, zone);
        continue;
      }
      const build = eventMessage(ev, t);
      if (!build) continue;
      for (const sid of ev.to) {
        const s = this.sessions.get(sid);
        if (!s || s.addr?.map !== batch.map || s.addr.zone !== zone) continue;
        this.deliver(s, build);
      }
    }
  }

  get connectionCount(): number {
    return this.stats.connections;
  }

  /** The sessions of a map on this gateway (tests). */
  sessionsOn(map: string): string[] {
    return [...this.sessions.values()].filter((s) => s.addr?.map === map).map((s) => s.id);
  }

  async close(): Promise<void> {
    this.closing = true;
    for (const sub of this.subs) sub.unsubscribe();
    this.subs.length = 0;
    const leaving: Promise<void>[] = [];
    for (const s of [...this.sessions.values()])
      leaving.push(this.drop(s, "server_shutdown", "gateway stopping"));
    await Promise.allSettled(leaving);
    for (const m of this.maps.values()) clearTimeout(m.flushTimer);
    await new Promise<void>((r) => (this.http ? this.http.close(() => r()) : r()));
    this.http?.closeAllConnections();
    clearInterval(this.sessionTimer);
  }

  private checkSessions(every: number): void {
    const live = this.opts.sessionLive!;
    const now = this.now();
    for (const s of this.sessions.values()) {
      const claims = s.claims;
      if (s.state !== "playing" || !claims) continue;
      recheckSession(
        s.session,
        now,
        every,
        () => live(claims),
        () => void this.drop(s, "session_ended", "the login session has ended"),
        this.log,
      );
    }
  }

  /**
   * Moves a session to another map, possibly owned by another map-server pod: leaves the old
   * owner (which persists the character), joins the new one, and goes on with the same
   * connection and sequence. Messages of the new map wait until the `mapChange` is sent.
   */
  async transfer(sessionId: string, map: string, at?: { x: number; y: number }): Promise<void> {
    const s = this.sessions.get(sessionId);
    if (s?.state !== "playing" || !s.addr) throw new Error(`session ${sessionId} is not playing`);
    const zone = this.opts.directory.zoneOf(map);
    if (!zone) throw new Error(`no zone serves map ${map}`);
    const from = s.addr;
    s.state = "transferring";
    this.detach(s);
    // Through a portal, the old owner saves the character at the destination, where the new one loads it.
    await this.leave(s.id, from, at ? { map, ...at } : undefined);
    const to = { region: this.opts.region, zone, map };
    s.addr = to;
    s.mapKey = mapKeyOf(to);
    const reply = await this.join(s, to);
    if (!reply) return;
    this.attach(s, reply);
    this.send(
      s,
      encode({
        type: "mapChange",
        seq: ++s.seq,
        map,
        entity: reply.entity,
        x: reply.x,
        y: reply.y,
        width: reply.width,
        height: reply.height,
        mode: s.mode,
      }),
    );
    this.play(s);
  }

  // ---- connections ----------------------------------------------------------------------

  private accept(ws: WebSocket): void {
    const now = this.now();
    const s: Session = {
      id: randomBytes(12).toString("base64url"),
      ws,
      state: "auth",
      kind: "legacy",
      mapKey: "",
      entity: 0,
      mode: "server",
      seq: 0,
      pending: [],
      session: { checkedAt: now, checking: false },
      msgs: new TokenBucket(this.limits.msgsPerSecond, this.limits.msgsBurst, now),
      bytes: new TokenBucket(this.limits.bytesPerSecond, this.limits.bytesPerSecond + MAX_CLIENT_FRAME, now),
      meshEntities: new Set(),
      fence: "",
      width: 0,
      height: 0,
    };
    this.stats.connections++;
    s.authTimer = setTimeout(
      () => void this.drop(s, "auth_timeout", "no hello in time"),
      this.limits.authTimeoutMs,
    );
    ws.on("message", (data, isBinary) => this.onFrame(s, data, isBinary));
    ws.on("close", () => void this.closed(s));
    ws.on("error", () => ws.terminate());
  }

  private onFrame(s: Session, data: RawData, isBinary: boolean): void {
    if (s.state === "closed") return;
    const frame = data as Buffer;
    const now = this.now();
    if (!s.msgs.take(now) || !s.bytes.take(now, frame.length)) {
      this.stats.rateLimited++;
      void this.drop(s, "rate_limited", "too many messages");
      return;
    }
    let msg: ClientMessage;
    try {
      if (!isBinary) throw new ProtocolError("bad_frame", "text frames are not part of the protocol");
      msg = decode(frame, "c2s");
    } catch (err) {
      const reason = err instanceof ProtocolError ? err.reason : "bad_frame";
      this.stats.closedBadFrame++;
      void this.drop(s, reason, (err as Error).message);
      return;
    }
    if (s.state === "auth") {
      if (msg.type !== "hello") {
        void this.drop(s, "not_authenticated", "hello first");
        return;
      }
      s.state = "joining";
      void this.hello(s, msg.token, msg.kind);
      return;
    }
    this.onMessage(s, msg);
  }

  private async hello(s: Session, token: string, kind: "legacy" | "p2p"): Promise<void> {
    let claims: Claims;
    try {
      claims = await this.opts.verify(token);
    } catch (err) {
      await this.drop(s, "auth_failed", (err as Error).message || "token rejected");
      return;
    }
    clearTimeout(s.authTimer);
    if (s.state === "closed") return;
    const zone = this.opts.directory.zoneOf(claims.map);
    if (!zone) {
      await this.drop(s, "map_unavailable", `no zone serves map ${claims.map}`);
      return;
    }
    s.claims = claims;
    s.kind = kind;
    // One connection per character: the newer one wins (as rAthena kicks the older login).
    const older = this.byCharacter.get(claims.characterId);
    this.byCharacter.set(claims.characterId, s);
    this.sessions.set(s.id, s);
    this.stats.sessions = this.sessions.size;
    if (older) await this.drop(older, "duplicate_session", "the character connected again");
    s.addr = { region: this.opts.region, zone, map: claims.map };
    s.mapKey = mapKeyOf(s.addr);
    const reply = await this.join(s, s.addr);
    if (!reply) return;
    this.attach(s, reply);
    this.send(
      s,
      encode({
        type: "welcome",
        seq: ++s.seq,
        session: s.id,
        character: claims.characterId,
        name: claims.characterName,
        map: claims.map,
        entity: reply.entity,
        x: reply.x,
        y: reply.y,
        hp: reply.hp,
        maxHp: reply.maxHp,
        width: reply.width,
        height: reply.height,
        tickHz: Math.min(255, reply.tickHz),
        mode: s.mode,
        serverTime: this.now(),
      }),
    );
    this.play(s);
  }

  /** Join with retries while the map has no owner; undefined when the session was dropped. */
  private async join(s: Session, addr: MapAddress): Promise<(JoinReply & { ok: true }) | undefined> {
    const req: JoinRequest = {
      v: 1,
      session: s.id,
      characterId: s.claims!.characterId,
      gateway: this.opts.id,
      p2p: s.kind === "p2p",
    };
    const deadline = this.now() + this.limits.joinTimeoutMs;
    let delay = 100;
    for (;;) {
      if (s.state === "closed") return undefined;
      try {
        const m = await this.control.request(subjects.join(addr), busEncode(req), { timeout: 3000 });
        const reply = busDecode<JoinReply>(m.data);
        if (!reply.ok) {
          await this.drop(s, "map_unavailable", reply.error);
          return undefined;
        }
        // The client may have gone while the request was out (TS cannot see that across await).
        if (isClosed(s)) {
          void this.leave(s.id, addr);
          return undefined;
        }
        return reply;
      } catch (err) {
        if (!isRetryable(err) || this.now() + delay > deadline) {
          this.log.warn("join failed", { session: s.id, map: addr.map, err: String(err) });
          await this.drop(s, "map_unavailable", `map ${addr.map} is not available`);
          return undefined;
        }
        await sleep(delay);
        delay = Math.min(delay * 2, 1000);
      }
    }
  }

  private async leave(session: string, addr: MapAddress, to?: LeaveRequest["to"]): Promise<void> {
    const req: LeaveRequest = { v: 1, session, ...(to ? { to } : {}) };
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        const m = await this.control.request(subjects.leave(addr), busEncode(req), { timeout: 3000 });
        const reply = busDecode<{ ok: boolean; error?: string }>(m.data);
        if (!reply.ok) this.log.warn("leave refused", { session, map: addr.map, error: reply.error });
        return;
      } catch (err) {
        if (!isRetryable(err) || this.control.isClosed()) return;
        await sleep(200 * (attempt + 1));
      }
    }
  }

  /** Puts a joined session on its map's roster. */
  private attach(s: Session, reply: JoinReply & { ok: true }): void {
    const m = this.mapState(s.addr!);
    if (m.sessions.size === 0) m.serverMode = reply.mode;
    m.sessions.add(s);
    s.entity = reply.entity;
    s.fence = reply.fence;
    s.width = reply.width;
    s.height = reply.height;
    s.mode = this.sessionMode(m, s);
    s.meshEntities.clear();
  }

  /** Takes a session off its map's roster (leaving or changing map). */
  private detach(s: Session): void {
    const m = this.maps.get(s.mapKey);
    if (!m) return;
    m.sessions.delete(s);
    // Its entity is no longer heard from anyone's mesh (and a later player may get its id).
    if (s.kind === "p2p") for (const o of m.sessions) o.meshEntities.delete(s.entity);
    if (m.sessions.size === 0 && m.inputs.length === 0) {
      clearTimeout(m.flushTimer);
      this.maps.delete(m.key);
    }
  }

  /** The session is live: flush what waited. */
  private play(s: Session): void {
    if (s.state === "closed") return;
    s.state = "playing";
    const pending = s.pending;
    s.pending = [];
    for (const build of pending) this.send(s, build(++s.seq));
  }

  private onMessage(s: Session, msg: ClientMessage): void {
    if (msg.type === "ping") {
      this.send(s, encode({ type: "pong", t: msg.t, serverTime: this.now() }));
      return;
    }
    if (s.state !== "playing") return; // inputs during a join or map change are dropped
    const m = this.maps.get(s.mapKey);
    if (!m) return;
    switch (msg.type) {
      case "hello":
        void this.drop(s, "unexpected_type", "already authenticated");
        return;
      case "move":
        this.input(m, { s: s.id, seq: msg.n, k: "move", x: msg.x, y: msg.y });
        return;
      case "pos":
        // Only a P2P session on a p2p map reports its own position; anything else walks.
        if (s.kind === "p2p" && s.mode === "p2p")
          this.input(m, { s: s.id, seq: msg.n, k: "pos", x: msg.x, y: msg.y });
        return;
      case "stop":
        this.input(m, { s: s.id, seq: msg.n, k: "stop" });
        return;
      case "chat":
        if ([...msg.text].length <= MAX_CHAT_LENGTH && msg.text.trim() !== "")
          this.input(m, { s: s.id, seq: msg.n, k: "chat", text: msg.text });
        return;
      case "attack":
        this.input(m, { s: s.id, seq: msg.n, k: "attack", target: msg.target });
        return;
      case "meshReport": {
        s.meshEntities.clear();
        if (s.mode !== "p2p") return;
        for (const id of msg.connected) {
          const p = this.sessions.get(id);
          if (p && p.mapKey === s.mapKey && p.kind === "p2p" && p.state === "playing")
            s.meshEntities.add(p.entity);
        }
        return;
      }
    }
  }

  // ---- input batching ---------------------------------------------------------------------

  private mapState(addr: MapAddress): MapState {
    const key = mapKeyOf(addr);
    let m = this.maps.get(key);
    if (!m) {
      m = { addr, key, serverMode: "server", sessions: new Set(), inputs: [], lastFlush: 0 };
      this.maps.set(key, m);
    }
    return m;
  }

  private input(m: MapState, input: ClientInput): void {
    m.inputs.push(input);
    if (m.inputs.length >= MAX_INPUTS_PER_BATCH) {
      this.flush(m);
      return;
    }
    if (m.flushTimer) return;
    // At most one batch per map per tick; the first input after a quiet spell goes at once.
    const wait = Math.max(0, m.lastFlush + (this.opts.inputFlushMs ?? 50) - this.now());
    m.flushTimer = setTimeout(() => this.flush(m), wait);
  }

  private flush(m: MapState): void {
    clearTimeout(m.flushTimer);
    m.flushTimer = undefined;
    if (m.inputs.length === 0) return;
    const batch: InputBatch = { v: 1, gateway: this.opts.id, inputs: m.inputs };
    m.inputs = [];
    m.lastFlush = this.now();
    try {
      this.control.publish(subjects.input(m.addr), busEncode(batch));
    } catch (err) {
      this.log.warn("input publish failed", { map: m.addr.map, err: String(err) });
    }
    if (m.sessions.size === 0) this.maps.delete(m.key);
  }

  // ---- from the map servers -------------------------------------------------------------------

  private onAoi(msg: Msg): void {
    try {
      this.aoi(msg);
    } catch (err) {
      // A frame the protocol cannot carry (a value out of range) is dropped, loudly; the
      // subscription and every other map go on.
      this.log.error("AOI frame dropped", { subject: msg.subject, err: String(err) });
    }
  }

  private aoi(msg: Msg): void {
    const where = parseMapSubject(msg.subject);
    if (!where) return;
    let frame: AoiFrame;
    try {
      frame = busDecode<AoiFrame>(msg.data);
    } catch {
      this.log.warn("undecodable AOI frame", { subject: msg.subject });
      return;
    }
    const m = this.maps.get(`${where.zone}/${where.map}`);
    if (!m) return;
    this.setServerMode(m, frame.mode);
    const t = this.now();
    const ents = frame.ents.map(fitEntity);
    const enc = new AoiBatchEncoder({ map: frame.map, tick: frame.tick, t, mode: "server" }, ents);
    // One encoder per mode a client may see: the header carries the session's effective mode.
    const encoders = new Map<Mode, AoiBatchEncoder>([["server", enc]]);
    const encoderFor = (mode: Mode) => {
      let e = encoders.get(mode);
      if (!e) {
        e = new AoiBatchEncoder({ map: frame.map, tick: frame.tick, t, mode }, ents);
        encoders.set(mode, e);
      }
      return e;
    };
    for (const v of frame.views) {
      const s = this.sessions.get(v.session);
      if (!s || s.mapKey !== m.key || s.state === "closed") continue;
      if (frame.fence !== s.fence && s.fence !== "") {
        // Only forward: a late frame of the previous owner is dropped.
        if (!newerFence(frame.fence, s.fence)) continue;
        this.handover(s, frame, v.self);
      }
      const e = encoderFor(s.mode);
      let update = v.update;
      if (s.meshEntities.size > 0) update = update.filter((i) => !s.meshEntities.has(frame.ents[i]!.id));
      const fixes = v.corrections?.map((c) => ({
        n: c.seq,
        kind: c.kind,
        x: c.x,
        y: c.y,
        reason: c.reason.slice(0, 64),
      }));
      // The hot path (one message per client per tick) builds no closure.
      if (s.state === "playing") this.send(s, e.encode(++s.seq, v.enter, update, v.leave, fixes));
      else this.deliver(s, (seq) => e.encode(seq, v.enter, update, v.leave, fixes));
    }
  }

  /**
   * The map changed owner (a new fence): the new owner restored the session with a new entity
   * id and sends its whole view again. The client is told with a `mapChange` to the same map,
   * in its sequence, so it drops the old ids before the new owner's first update.
   */
  private handover(s: Session, frame: AoiFrame, self: number): void {
    s.fence = frame.fence;
    s.entity = self;
    s.meshEntities.clear();
    const me = frame.ents.find((e) => e.id === self);
    const msg = {
      type: "mapChange" as const,
      map: frame.map,
      entity: self,
      x: me?.x ?? 0,
      y: me?.y ?? 0,
      width: s.width,
      height: s.height,
      mode: s.mode,
    };
    this.deliver(s, (seq) => encode({ ...msg, seq }));
  }

  private onOwner(msg: Msg): void {
    const where = parseMapSubject(msg.subject);
    if (!where) return;
    const m = this.maps.get(`${where.zone}/${where.map}`);
    if (!m) return;
    try {
      this.setServerMode(m, busDecode<OwnerNotice>(msg.data).mode);
    } catch {
      this.log.warn("undecodable owner notice", { subject: msg.subject });
    }
  }

  /** Re-evaluates every map's mode (call when the gateway's own flags change). */
  refreshModes(): void {
    for (const m of this.maps.values()) this.applyMode(m, "gateway flags changed");
  }

  /** Fallback if either side says so; P2P only if both allow it. */
  private effectiveMode(m: MapState): Mode {
    const gate = this.opts.p2pGate?.(m.addr.zone) ?? "p2p";
    if (m.serverMode === "fallback" || gate === "fallback") return "fallback";
    return m.serverMode === "p2p" && gate === "p2p" ? "p2p" : "server";
  }

  private setServerMode(m: MapState, mode: MapMode): void {
    if (mode === m.serverMode) return;
    m.serverMode = mode;
    this.applyMode(m, `map server reports ${mode}`);
  }

  /** The map's mode, except that a P2P client outside the zone's rollout plays in server mode. */
  private sessionMode(
    m: MapState,
    s: Session,
    mapMode = this.effectiveMode(m),
    percent = this.rollout(m),
  ): Mode {
    if (mapMode !== "p2p" || s.kind !== "p2p" || !s.claims) return mapMode;
    return inRollout(s.claims.characterId, percent) ? mapMode : "server";
  }

  private rollout(m: MapState): number {
    return this.opts.rolloutPercent?.(m.addr.zone) ?? 100;
  }

  private applyMode(m: MapState, reason: string): void {
    // Once per map, not per session: the gate reads the flag client's latches.
    const mapMode = this.effectiveMode(m);
    const percent = this.rollout(m);
    for (const s of m.sessions) {
      const mode = this.sessionMode(m, s, mapMode, percent);
      if (s.mode === mode) continue;
      s.mode = mode;
      if (mode !== "p2p") s.meshEntities.clear();
      this.deliver(s, (seq) => encode({ type: "mode", seq, map: m.addr.map, mode, reason }));
    }
  }

  // ---- sending ------------------------------------------------------------------------------

  /** A server-authoritative message: sent now with the next seq, or queued until playing. */
  private deliver(s: Session, build: (seq: number) => Uint8Array): void {
    if (s.state === "playing") {
      this.send(s, build(++s.seq));
      return;
    }
    if (s.state === "closed" || s.state === "auth") return;
    if (s.pending.length >= this.limits.maxPendingMessages) {
      void this.drop(s, "slow_consumer", "too many messages queued while joining");
      return;
    }
    s.pending.push(build);
  }

  /** Any message, sequenced or not (pong); drops a client that does not read. */
  private send(s: Session, frame: Uint8Array): void {
    if (s.state === "closed") return;
    // Bounded: at most the cap plus one frame is ever buffered for a connection.
    if (s.ws.bufferedAmount > this.limits.maxBufferedBytes) {
      this.stats.droppedSlow++;
      void this.drop(s, "slow_consumer", "client does not keep up");
      return;
    }
    this.stats.framesOut++;
    s.ws.send(frame);
  }

  /** Closes a connection with a reason; the session leaves its map. Idempotent. */
  private async drop(s: Session, reason: ReasonCode, message: string): Promise<void> {
    if (s.state === "closed") return;
    if (s.ws.readyState === WebSocket.OPEN && s.ws.bufferedAmount < this.limits.maxBufferedBytes) {
      s.ws.send(encode({ type: "error", reason, message: message.slice(0, 200) }));
      s.ws.close(closeCodeOf(reason), reason);
      // A client that does not answer the close handshake is cut off.
      setTimeout(() => s.ws.terminate(), 2000).unref();
    } else {
      s.ws.terminate();
    }
    await this.finish(s);
  }

  private async closed(s: Session): Promise<void> {
    this.stats.connections--;
    await this.finish(s);
  }

  private async finish(s: Session): Promise<void> {
    if (s.state === "closed") return;
    // A session still joining leaves when its join returns (see join()).
    const joined = s.state === "playing";
    s.state = "closed";
    s.pending = [];
    clearTimeout(s.authTimer);
    this.detach(s);
    this.sessions.delete(s.id);
    this.stats.sessions = this.sessions.size;
    if (s.claims && this.byCharacter.get(s.claims.characterId) === s)
      this.byCharacter.delete(s.claims.characterId);
    if (joined && s.addr) await this.leave(s.id, s.addr);
  }
}

function eventMessage(ev: ZoneEvent, t: number): ((seq: number) => Uint8Array) | undefined {
  switch (ev.k) {
    case "chat":
      return (seq) =>
        encode({ type: "chatMsg", seq, from: ev.from, name: ev.name.slice(0, 32), text: ev.text, t });
    case "hit":
      return (seq) =>
        encode({
          type: "combat",
          seq,
          from: ev.from,
          target: ev.target,
          damage: ev.damage,
          hpLeft: ev.hpLeft,
          t,
        });
    case "death":
      return (seq) => encode({ type: "death", seq, entity: ev.entity, killer: ev.killer });
    case "loot":
      return (seq) => encode({ type: "loot", seq, exp: ev.exp, zeny: ev.zeny });
    case "respawn":
      return (seq) => encode({ type: "respawn", seq, entity: ev.entity, x: ev.x, y: ev.y });
  }
  return undefined;
}
