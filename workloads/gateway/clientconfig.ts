// The P2P client configuration (platform/protocol/p2pconfig.ts), built by the gateway from the
// live flag snapshot and the player's session: served over HTTP (`GET /v1/p2p/config`, the
// character token as Bearer, with ETag) and pushed over the session (`p2pConfig`) whenever its
// version changes: a new flag snapshot, the session's mode, its map, or new TURN credentials.
//
// TURN credentials follow the TURN REST API (coturn's `use-auth-secret`): the username is
// `<expiry>:<character>`, the password base64(HMAC-SHA1(secret, username)). They are minted per
// time window (half the TTL), so a document stays the same, ETag included, within a window and
// every credential handed out is valid for at least half the TTL.
import { createHash, createHmac } from "node:crypto";
import { readFileSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import { inRollout, type ZoneFlags } from "../../platform/flags/layout.ts";
import { encode, type Mode } from "../../platform/protocol/messages.ts";
import {
  type IceServer,
  type P2PClientConfig,
  type P2PTransport,
  TRANSPORTS,
} from "../../platform/protocol/p2pconfig.ts";
import type { EnvReader } from "../runtime/config.ts";
import type { Claims, Session, Sessions } from "./sessions.ts";

export interface IceSettings {
  /** STUN servers (stun: URLs), handed to every client as they are. */
  stun: string[];
  /** TURN servers (turn:/turns: URLs); used with the shared secret. */
  turn: string[];
  turnSecret?: string;
  /** Credential lifetime. Default 3600 s. */
  turnTtlSeconds?: number;
}

export interface ClientConfigOptions {
  /** The zone's published flags (undefined: no flag store, or the zone has none). */
  zoneFlags?: (zone: string) => ZoneFlags | undefined;
  /** The epoch of the live flag snapshot (0 without one). */
  epoch?: () => number;
  ice?: IceSettings;
  /** Public coordinator URLs for the clients (empty: clients bring their own). */
  coordinators?: string[];
  /** The gateway's own P2P gate for a zone (flags and latches), for a character not playing here. */
  gate?: (zone: string) => Mode;
  now?: () => number;
}

/** The design's starting figures, for a zone without flags (development, tests). */
const DEFAULTS: Pick<P2PClientConfig, "transports" | "mesh" | "fallback" | "recovery"> = {
  transports: ["webrtc-datachannel", "websocket-relay"],
  mesh: { maxPeers: 40, maxLinks: 8, peerTTLSeconds: 30, refreshSeconds: 10 },
  fallback: {
    latencyMs: { warn: 100, critical: 200, max: 300 },
    lossPercent: { warn: 1, critical: 2, max: 5 },
    jitterMs: { warn: 20, critical: 50 },
    coordinatorTimeoutMs: 1500,
    minPeers: 2,
  },
  recovery: { mode: "Auto", initialSeconds: 5, maxSeconds: 300 },
};

/** What a config is built from: the player and where and how it plays. */
export interface ConfigSubject {
  characterId: string;
  zone: string;
  map: string;
  mode: Mode;
  reason: string;
}

/** TURN REST API credentials for `user`, valid until `expiry` (unix seconds). */
export function turnCredentials(
  secret: string,
  user: string,
  expiry: number,
): { username: string; credential: string } {
  const username = `${expiry}:${user}`;
  return { username, credential: createHmac("sha1", secret).update(username).digest("base64") };
}

/** The expiry of the credentials minted at `nowMs`: the end of the next half-TTL window. */
export function turnExpiry(nowMs: number, ttlSeconds: number): number {
  const half = Math.max(1, Math.floor(ttlSeconds / 2));
  return (Math.floor(nowMs / 1000 / half) + 2) * half;
}

export function buildClientConfig(
  subject: ConfigSubject,
  doc: ZoneFlags | undefined,
  opts: { epoch: number; ice?: IceSettings; coordinators?: string[]; nowMs: number },
): P2PClientConfig {
  const mapFlags = doc?.maps.find((m) => m.name === subject.map);
  const enabled = doc ? doc.enabled && (mapFlags?.p2p ?? doc.maps.length === 0) : subject.mode !== "server";
  const percent = doc?.rolloutPercent ?? 100;
  const known = new Set<string>(TRANSPORTS);
  const transports = (doc?.transports.filter((t) => known.has(t)) ?? DEFAULTS.transports) as P2PTransport[];
  const servers: IceServer[] = [];
  const ice = opts.ice;
  if (ice && ice.stun.length > 0) servers.push({ urls: [...ice.stun] });
  let expiresAt: string | undefined;
  const turnAllowed = transports.includes("webrtc-turn");
  if (ice?.turnSecret && ice.turn.length > 0 && turnAllowed) {
    const expiry = turnExpiry(opts.nowMs, ice.turnTtlSeconds ?? 3600);
    servers.push({ urls: [...ice.turn], ...turnCredentials(ice.turnSecret, subject.characterId, expiry) });
    expiresAt = new Date(expiry * 1000).toISOString();
  }
  const relayOnly = turnAllowed && !transports.includes("webrtc-datachannel") && expiresAt !== undefined;
  const body: Omit<P2PClientConfig, "version"> = {
    v: 1,
    epoch: opts.epoch,
    zone: subject.zone,
    map: subject.map,
    enabled,
    mode: subject.mode,
    reason: subject.reason,
    rollout: { percent, included: inRollout(subject.characterId, percent) },
    transports,
    ice: { servers, transportPolicy: relayOnly ? "relay" : "all", ...(expiresAt ? { expiresAt } : {}) },
    coordinators: [...(opts.coordinators ?? [])],
    mesh: doc ? { ...doc.mesh } : { ...DEFAULTS.mesh },
    fallback: doc ? structuredClone(doc.thresholds) : structuredClone(DEFAULTS.fallback),
    recovery: doc
      ? {
          mode: doc.recovery.mode,
          initialSeconds: doc.recovery.initialSeconds,
          maxSeconds: doc.recovery.maxSeconds,
        }
      : { ...DEFAULTS.recovery },
  };
  // The version covers everything but the epoch and the reason: a publish that changes nothing
  // for this player is not a new version for it.
  const { epoch: _epoch, reason: _reason, ...content } = body;
  const version = createHash("sha256").update(JSON.stringify(content)).digest("base64url").slice(0, 16);
  return { version, ...body };
}

/**
 * The gateway's side: per session, the version last pushed; HTTP GET for a character token.
 * `push` is called whenever something the config depends on may have changed.
 */
export class ClientConfigs {
  private readonly opts: ClientConfigOptions;
  private readonly sessions: Sessions;
  private readonly sent = new WeakMap<Session, string>();
  private timer?: NodeJS.Timeout;

  constructor(sessions: Sessions, opts: ClientConfigOptions) {
    this.sessions = sessions;
    this.opts = opts;
  }

  private now(): number {
    return (this.opts.now ?? Date.now)();
  }

  /** The config of a session playing on a map, or of a character by its token's map. */
  configFor(subject: ConfigSubject): P2PClientConfig {
    return buildClientConfig(subject, this.opts.zoneFlags?.(subject.zone), {
      epoch: this.opts.epoch?.() ?? 0,
      ice: this.opts.ice,
      coordinators: this.opts.coordinators,
      nowMs: this.now(),
    });
  }

  private subjectOf(s: Session, reason: string): ConfigSubject | undefined {
    if (s.kind !== "p2p" || !s.claims || !s.addr) return undefined;
    return { characterId: s.claims.characterId, zone: s.addr.zone, map: s.addr.map, mode: s.mode, reason };
  }

  /** Sends the session its config when it changed since the last one it got (P2P sessions only). */
  push(s: Session, reason = ""): void {
    const subject = this.subjectOf(s, reason);
    if (!subject) return;
    const c = this.configFor(subject);
    if (this.sent.get(s) === c.version) return;
    this.sent.set(s, c.version);
    const text = JSON.stringify(c);
    this.sessions.deliver(s, (seq) => encode({ type: "p2pConfig", seq, config: text }));
  }

  /** Keeps TURN credentials fresh: every half TTL, each P2P session gets a new version. */
  start(all: () => Iterable<Session>): void {
    const ice = this.opts.ice;
    if (!ice?.turnSecret || ice.turn.length === 0) return;
    const halfMs = Math.max(1, Math.floor((ice.turnTtlSeconds ?? 3600) / 2)) * 1000;
    this.timer = setInterval(() => {
      for (const s of all()) if (s.state === "playing") this.push(s, "credentials renewed");
    }, halfMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /**
   * `GET /v1/p2p/config`: the config for the token's character where it plays now (its session on
   * this gateway), else on the token's map. `If-None-Match` with the current version gives 304.
   */
  async serve(
    req: IncomingMessage,
    res: ServerResponse,
    verify: (token: string) => Promise<Claims>,
    zoneOf: (map: string) => string | undefined,
  ): Promise<void> {
    const m = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? "");
    let claims: Claims;
    try {
      if (!m?.[1]) throw new Error("missing Authorization: Bearer <character token>");
      claims = await verify(m[1]);
    } catch (err) {
      json(res, 401, { error: { code: "unauthenticated", message: (err as Error).message } });
      return;
    }
    const s = this.sessions.byCharacterId(claims.characterId);
    let subject = s ? this.subjectOf(s, "") : undefined;
    if (!subject) {
      const zone = zoneOf(claims.map);
      if (!zone) {
        json(res, 404, { error: { code: "map_unavailable", message: `no zone serves map ${claims.map}` } });
        return;
      }
      const doc = this.opts.zoneFlags?.(zone);
      let mode = this.opts.gate?.(zone) ?? "server";
      if (mode === "p2p" && doc && !inRollout(claims.characterId, doc.rolloutPercent)) mode = "server";
      subject = { characterId: claims.characterId, zone, map: claims.map, mode, reason: "not playing here" };
    }
    const c = this.configFor(subject);
    const etag = `"${c.version}"`;
    const headers = { etag, "cache-control": "private, no-cache" };
    if (req.headers["if-none-match"] === etag) {
      res.writeHead(304, headers).end();
      return;
    }
    json(res, 200, c, headers);
  }
}

export function json(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
) {
  res.writeHead(status, { "content-type": "application/json", ...headers }).end(JSON.stringify(body));
}

/** What the gateway hands P2P clients and the browser client, from its environment. */
export interface P2PClientSettings {
  ice: IceSettings;
  /** Public coordinator URLs (ws:// or wss://) for the clients. */
  coordinators: string[];
  /** Serve the browser client (/play/) and its bootstrap (/v1/region). */
  web: boolean;
  /** A bundle directory (`node workloads/web/bundle.ts DIR`); unset: built at start. */
  webDir?: string;
  /** The login and char servers' public URLs, for the browser client. */
  loginUrl?: string;
  charUrl?: string;
  /** How often the canary's counts (P2P-capable and P2P-playing players per zone) are reported. */
  playersReportMs: number;
}

const list = (raw: string | undefined) =>
  (raw ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);

/**
 *   HYBRIDP2P_GATEWAY_STUN_URLS, HYBRIDP2P_GATEWAY_TURN_URLS      comma-separated stun:/turn: URLs
 *   HYBRIDP2P_GATEWAY_TURN_SECRET_FILE                           the TURN server's shared secret
 *   HYBRIDP2P_GATEWAY_TURN_TTL_SECONDS (3600)                    TURN credential lifetime
 *   HYBRIDP2P_GATEWAY_COORDINATOR_URLS                           coordinators as clients reach them
 *   HYBRIDP2P_GATEWAY_WEB (true), HYBRIDP2P_GATEWAY_WEB_DIR      the browser client
 *   HYBRIDP2P_GATEWAY_LOGIN_URL, HYBRIDP2P_GATEWAY_CHAR_URL      login and char servers for it
 *   HYBRIDP2P_GATEWAY_PLAYERS_REPORT_MS (2000)                    how often the canary counts are reported
 */
export function p2pClientSettingsFromEnv(r: EnvReader): P2PClientSettings {
  const turn = list(r.str("HYBRIDP2P_GATEWAY_TURN_URLS"));
  const secretFile = r.str("HYBRIDP2P_GATEWAY_TURN_SECRET_FILE");
  let turnSecret: string | undefined;
  if (secretFile) {
    try {
      turnSecret = readFileSync(secretFile, "utf8").trim();
    } catch (err) {
      r.problem("HYBRIDP2P_GATEWAY_TURN_SECRET_FILE", `cannot be read: ${(err as Error).message}`);
    }
  }
  if (turn.length > 0 && !secretFile)
    r.problem("HYBRIDP2P_GATEWAY_TURN_SECRET_FILE", "is required with HYBRIDP2P_GATEWAY_TURN_URLS");
  for (const u of turn)
    if (!/^turns?:/.test(u)) r.problem("HYBRIDP2P_GATEWAY_TURN_URLS", `${u} is not a turn: or turns: URL`);
  const stun = list(r.str("HYBRIDP2P_GATEWAY_STUN_URLS"));
  for (const u of stun)
    if (!/^stuns?:/.test(u)) r.problem("HYBRIDP2P_GATEWAY_STUN_URLS", `${u} is not a stun: URL`);
  const coordinators = list(r.str("HYBRIDP2P_GATEWAY_COORDINATOR_URLS"));
  for (const u of coordinators)
    if (!/^wss?:\/\//.test(u))
      r.problem("HYBRIDP2P_GATEWAY_COORDINATOR_URLS", `${u} is not a ws:// or wss:// URL`);
  const web = r.bool("HYBRIDP2P_GATEWAY_WEB", true);
  return {
    ice: {
      stun,
      turn,
      turnSecret,
      turnTtlSeconds: r.int("HYBRIDP2P_GATEWAY_TURN_TTL_SECONDS", { default: 3600, min: 60, max: 86_400 }),
    },
    coordinators,
    web,
    webDir: r.str("HYBRIDP2P_GATEWAY_WEB_DIR"),
    loginUrl: r.str("HYBRIDP2P_GATEWAY_LOGIN_URL")
      ? r.url("HYBRIDP2P_GATEWAY_LOGIN_URL", ["http", "https"])
      : undefined,
    charUrl: r.str("HYBRIDP2P_GATEWAY_CHAR_URL")
      ? r.url("HYBRIDP2P_GATEWAY_CHAR_URL", ["http", "https"])
      : undefined,
    playersReportMs: r.int("HYBRIDP2P_GATEWAY_PLAYERS_REPORT_MS", { default: 2000, min: 100, max: 60_000 }),
  };
}
