// The regional gateway: clients connect over WebSocket, authenticate with a character token,
// and play on the map server that owns their map, reached over NATS (platform/bus/contract.ts).
//
// This file puts the parts together and wires them to the bus:
//   sessions.ts  connections and sessions: hello, rate limits, the per-session sequence, sending
//   routing.ts   which map server a session plays on: joins, leaves, map changes, handovers,
//                input batches and map modes
//   fanout.ts    AOI frames and zone events delivered to the clients
//   clientconfig.ts  the P2P client config: pushed to P2P sessions, served at GET /v1/p2p/config
//   web.ts       the browser client (a static bundle under /play/) and its bootstrap (/v1/region)
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import {
  decode as busDecode,
  encode as busEncode,
  type EventBatch,
  subjects,
} from "../../platform/bus/contract.ts";
import { listenForUpgrades } from "../../platform/http.ts";
import type { Mode } from "../../platform/protocol/messages.ts";
import type { ServingTls } from "../../platform/tls.ts";
import { coordSubjects, type LocateReply, type LocateRequest } from "../coordinator/bus.ts";
import { type ClientConfigOptions, ClientConfigs } from "./clientconfig.ts";
import { Fanout } from "./fanout.ts";
import { type MapDirectory, MapRouter } from "./routing.ts";
import {
  type Claims,
  DEFAULT_LIMITS,
  type GatewayLogger,
  type GatewayStats,
  type Limits,
  type PlayMessage,
  type Session,
  Sessions,
  type VerifyToken,
} from "./sessions.ts";
import { type WebOptions, WebServer } from "./web.ts";

export { type MapDirectory, staticDirectory } from "./routing.ts";

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
  /** Where the P2P client config comes from (flags, ICE servers, coordinators). Default: no flags. */
  clientConfig?: ClientConfigOptions;
  /** The browser client and its bootstrap, served over HTTP(S) on the client port. */
  web?: WebOptions;
  /** Serve wss (and the HTTP routes over https) from this certificate; plain ws without. */
  tls?: ServingTls;
  limits?: Partial<Limits>;
  log?: GatewayLogger;
  /** Milliseconds between input flushes per map (the map's tick). */
  inputFlushMs?: number;
  now?: () => number;
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
  private readonly log: GatewayLogger;
  private readonly sessions: Sessions;
  private readonly router: MapRouter;
  private readonly fanout: Fanout;
  private readonly configs: ClientConfigs;
  private readonly web?: WebServer;
  private readonly subs: Subscription[] = [];
  private http?: Server;
  private sessionTimer?: NodeJS.Timeout;
  private closing = false;

  constructor(opts: GatewayOptions) {
    this.opts = opts;
    const limits = { ...DEFAULT_LIMITS, ...opts.limits };
    const log = opts.log ?? silent;
    this.log = log;
    const now = opts.now ?? Date.now;
    // The hooks reach the router lazily: it needs the sessions to exist first.
    this.sessions = new Sessions({
      verify: opts.verify,
      limits,
      stats: this.stats,
      log,
      now,
      hooks: {
        addressOf: (map) => this.router.addressOf(map),
        enter: (s, addr) => this.router.enter(s, addr),
        message: (s, msg) => this.onPlayMessage(s, msg),
        ended: (s, joined) => this.router.exit(s, joined),
      },
    });
    this.configs = new ClientConfigs(this.sessions, {
      gate: opts.p2pGate,
      ...opts.clientConfig,
      now: opts.clientConfig?.now ?? now,
    });
    this.web = opts.web ? new WebServer(opts.web) : undefined;
    this.router = new MapRouter({
      control: opts.control ?? opts.nc,
      region: opts.region,
      gateway: opts.id,
      directory: opts.directory,
      p2pGate: opts.p2pGate,
      rolloutPercent: opts.rolloutPercent,
      configChanged: (s, reason) => this.configs.push(s, reason),
      joinTimeoutMs: limits.joinTimeoutMs,
      inputFlushMs: opts.inputFlushMs ?? 50,
      sessions: this.sessions,
      log,
      now,
    });
    this.fanout = new Fanout({ sessions: this.sessions, router: this.router, log, now });
  }

  /** Whether it serves wss (and https for its HTTP routes). */
  get tls(): boolean {
    return this.opts.tls !== undefined;
  }

  /** Subscribes to the region's AOI frames and owner notices, then listens for clients. */
  async listen(port = 0, host = "127.0.0.1"): Promise<number> {
    this.subscribe();
    const live = this.opts.sessionLive;
    if (live) {
      const every = this.opts.sessionCheckMs ?? 10_000;
      // A sweep per second checks the sessions that are due, so the checks spread out in time.
      this.sessionTimer = setInterval(() => this.sessions.recheck(every, live), Math.min(1000, every));
      this.sessionTimer.unref();
    }
    this.configs.start(() => this.sessions.all());
    const l = await listenForUpgrades(
      port,
      host,
      (req, socket, head) => this.upgrade(req, socket, head),
      (req, res) => this.request(req, res),
      this.opts.tls,
    );
    this.http = l.server;
    return l.port;
  }

  /**
   * Plain HTTP on the client port: the P2P client config (`GET /v1/p2p/config`), the browser
   * client and its bootstrap. False for anything else (answered 426: WebSocket only).
   */
  request(req: IncomingMessage, res: ServerResponse): boolean {
    const path = new URL(req.url ?? "/", "http://x").pathname;
    if (path === "/v1/p2p/config" && (req.method === "GET" || req.method === "HEAD")) {
      void this.configs
        .serve(req, res, this.opts.verify, (map) => this.opts.directory.zoneOf(map))
        .catch((err) => {
          this.log.warn("p2p config request failed", { err: String(err) });
          if (!res.headersSent) res.writeHead(500).end();
        });
      return true;
    }
    return this.web?.handle(req, res, path) ?? false;
  }

  /** Handles an HTTP upgrade from a server the caller owns. */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    this.sessions.upgrade(req, socket, head);
  }

  private subscribe(): void {
    if (this.subs.length > 0) return;
    const { nc, region, id } = this.opts;
    // AOI frames are deltas over core NATS: those sent while the connection was down are gone.
    void (async () => {
      for await (const st of nc.status()) {
        if (this.closing) break;
        if (st.type === "reconnect") this.resyncViews();
      }
    })();
    this.subs.push(
      nc.subscribe(subjects.aoiForGateway(region, id), {
        callback: (err, msg) => {
          if (!err) this.fanout.aoi(msg.subject, msg.data);
        },
      }),
      nc.subscribe(subjects.ownersForRegion(region), {
        callback: (err, msg) => {
          if (!err) this.router.ownerNotice(msg.subject, msg.data);
        },
      }),
      // The coordinator asks where a session plays before meshing it: only the gateway holding
      // the session answers, with the map it is on now (not the one its token named).
      nc.subscribe(coordSubjects.locate(region), {
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

  private resyncViews(): void {
    this.stats.resyncs++;
    this.router.resync();
  }

  /** Where a playing session is: its character, map and entity id. */
  private locate(sessionId: string): LocateReply | undefined {
    const s = this.sessions.get(sessionId);
    if (s?.state !== "playing" || !s.claims || !s.addr) return undefined;
    return { v: 1, characterId: s.claims.characterId, map: s.addr.map, entity: s.entity };
  }

  private onPlayMessage(s: Session, msg: PlayMessage): void {
    if (msg.type === "meshReport") this.fanout.meshReport(s, msg.connected);
    else this.router.input(s, msg);
  }

  /** Delivers one zone event batch (from the JetStream consumer, see events.ts). */
  onEvents(batch: EventBatch, zone: string): void {
    this.fanout.events(batch, zone);
  }

  /** The canary per zone: P2P-capable players where P2P is on, and those playing P2P. */
  p2pPlayers(): Map<string, { eligible: number; playing: number }> {
    return this.router.p2pPlayers();
  }

  /** Re-evaluates every map's mode (call when the gateway's own flags change). */
  refreshModes(): void {
    this.router.refreshModes();
  }

  /** Moves a playing session to another map (see MapRouter.transfer). */
  transfer(sessionId: string, map: string, at?: { x: number; y: number }): Promise<void> {
    return this.router.transfer(sessionId, map, at);
  }

  async close(): Promise<void> {
    this.closing = true;
    this.configs.stop();
    for (const sub of this.subs) sub.unsubscribe();
    this.subs.length = 0;
    await this.sessions.stop();
    this.router.stop();
    await new Promise<void>((r) => (this.http ? this.http.close(() => r()) : r()));
    this.http?.closeAllConnections();
    clearInterval(this.sessionTimer);
  }
}
