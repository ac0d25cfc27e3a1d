// Client connections and their sessions, from the WebSocket upgrade to the close.
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
// Which map a session plays on is routing.ts's business, what it is sent fanout.ts's; both
// reach the client through deliver() and send() here.
import { randomBytes } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import { type RawData, WebSocket, WebSocketServer } from "ws";
import type { MapAddress } from "../../platform/bus/contract.ts";
import {
  type ClientMessage,
  decode,
  encode,
  MAX_CLIENT_FRAME,
  type Mode,
} from "../../platform/protocol/messages.ts";
import { closeCodeOf, ProtocolError, type ReasonCode } from "../../platform/protocol/schema.ts";
import { recheckSession, type SessionCheck } from "../auth/gateway.ts";
import { cutOffAfterError, cutOffAfterGrace } from "../runtime/websocket.ts";
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

type SessionState = "auth" | "joining" | "playing" | "transferring" | "closed";

export interface Session {
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

/** A message of a playing client other than the session's own (hello, ping). */
export type PlayMessage = Exclude<ClientMessage, { type: "hello" | "ping" }>;

/** What the sessions leave to the rest of the gateway. */
export interface SessionHooks {
  /** Where a map is played (undefined: nowhere in this region). */
  addressOf(map: string): MapAddress | undefined;
  /** An authenticated session goes onto its first map: join it, welcome the client, play. */
  enter(s: Session, addr: MapAddress): Promise<void>;
  message(s: Session, msg: PlayMessage): void;
  /** The session is over: off its map, and the map server told when it had `joined`. */
  ended(s: Session, joined: boolean): Promise<void>;
}

export interface SessionsOptions {
  verify: VerifyToken;
  limits: Limits;
  stats: GatewayStats;
  log: GatewayLogger;
  now: () => number;
  hooks: SessionHooks;
}

export class Sessions {
  private readonly opts: SessionsOptions;
  private readonly limits: Limits;
  private readonly stats: GatewayStats;
  private readonly wss: WebSocketServer;
  private readonly byId = new Map<string, Session>();
  private readonly byCharacter = new Map<string, Session>();
  private stopping = false;

  constructor(opts: SessionsOptions) {
    this.opts = opts;
    this.limits = opts.limits;
    this.stats = opts.stats;
    this.wss = new WebSocketServer({
      noServer: true,
      maxPayload: MAX_CLIENT_FRAME,
      perMessageDeflate: false,
      clientTracking: false,
    });
  }

  /** An authenticated session (one that sent its hello) by id. */
  get(id: string): Session | undefined {
    return this.byId.get(id);
  }

  /** The session playing a character on this gateway, if any. */
  byCharacterId(characterId: string): Session | undefined {
    return this.byCharacter.get(characterId);
  }

  /** Every authenticated session. */
  all(): IterableIterator<Session> {
    return this.byId.values();
  }

  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    if (this.stopping || this.stats.connections >= this.limits.maxConnections) {
      socket.end("HTTP/1.1 503 Service Unavailable\r\n\r\n");
      return;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => this.accept(ws));
  }

  /** Refuses new connections and closes every session (`server_shutdown`) once it left its map. */
  async stop(): Promise<void> {
    this.stopping = true;
    const leaving: Promise<void>[] = [];
    for (const s of [...this.byId.values()])
      leaving.push(this.drop(s, "server_shutdown", "gateway stopping"));
    await Promise.allSettled(leaving);
  }

  /** Ends the playing sessions whose login session is over; each is checked at most every `everyMs`. */
  recheck(everyMs: number, live: (claims: Claims) => Promise<boolean>): void {
    const now = this.opts.now();
    for (const s of this.byId.values()) {
      const claims = s.claims;
      if (s.state !== "playing" || !claims) continue;
      recheckSession(
        s.session,
        now,
        everyMs,
        () => live(claims),
        () => void this.drop(s, "session_ended", "the login session has ended"),
        this.opts.log,
      );
    }
  }

  // ---- sending ------------------------------------------------------------------------------

  /** A server-authoritative message: sent now with the next seq, or queued until playing. */
  deliver(s: Session, build: (seq: number) => Uint8Array): void {
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
  send(s: Session, frame: Uint8Array): void {
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

  /** The session is live (joined, or arrived on its new map): flush what waited. */
  play(s: Session): void {
    if (s.state === "closed") return;
    s.state = "playing";
    const pending = s.pending;
    s.pending = [];
    for (const build of pending) this.send(s, build(++s.seq));
  }

  /** Closes a connection with a reason; the session leaves its map. Idempotent. */
  async drop(s: Session, reason: ReasonCode, message: string): Promise<void> {
    if (s.state === "closed") return;
    if (s.ws.readyState === WebSocket.OPEN && s.ws.bufferedAmount < this.limits.maxBufferedBytes) {
      s.ws.send(encode({ type: "error", reason, message: message.slice(0, 200) }));
      s.ws.close(closeCodeOf(reason), reason);
      // A client that does not answer the close handshake is cut off.
      cutOffAfterGrace(s.ws);
    } else {
      s.ws.terminate();
    }
    await this.finish(s);
  }

  // ---- one connection -----------------------------------------------------------------------

  private accept(ws: WebSocket): void {
    const now = this.opts.now();
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
    cutOffAfterError(ws);
  }

  private onFrame(s: Session, data: RawData, isBinary: boolean): void {
    if (s.state === "closed") return;
    const frame = data as Buffer;
    const now = this.opts.now();
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
    if (msg.type === "ping") {
      this.send(s, encode({ type: "pong", t: msg.t, serverTime: this.opts.now() }));
      return;
    }
    if (s.state !== "playing") return; // inputs during a join or map change are dropped
    if (msg.type === "hello") {
      void this.drop(s, "unexpected_type", "already authenticated");
      return;
    }
    this.opts.hooks.message(s, msg);
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
    const addr = this.opts.hooks.addressOf(claims.map);
    if (!addr) {
      await this.drop(s, "map_unavailable", `no zone serves map ${claims.map}`);
      return;
    }
    s.claims = claims;
    s.kind = kind;
    // One connection per character: the newer one wins (as rAthena kicks the older login).
    const older = this.byCharacter.get(claims.characterId);
    this.byCharacter.set(claims.characterId, s);
    this.byId.set(s.id, s);
    this.stats.sessions = this.byId.size;
    if (older) await this.drop(older, "duplicate_session", "the character connected again");
    await this.opts.hooks.enter(s, addr);
  }

  private async closed(s: Session): Promise<void> {
    this.stats.connections--;
    await this.finish(s);
  }

  private async finish(s: Session): Promise<void> {
    if (s.state === "closed") return;
    // A session still joining leaves when its join returns (see MapRouter.join).
    const joined = s.state === "playing";
    s.state = "closed";
    s.pending = [];
    clearTimeout(s.authTimer);
    this.byId.delete(s.id);
    this.stats.sessions = this.byId.size;
    if (s.claims && this.byCharacter.get(s.claims.characterId) === s)
      this.byCharacter.delete(s.claims.characterId);
    await this.opts.hooks.ended(s, joined);
  }
}
