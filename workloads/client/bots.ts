// Bots: many SDK clients that log in (through the login and char servers, or with development
// tokens) and play (walk, talk), for tests, the e2e suite, load generation (`hybridctl bots`)
// and the gateway benchmark. They check the sequence of every server-authoritative message and
// record AOI latency. P2P bots also mesh through the coordinator, as P2P players do.

import type { RTCPeerConnectionConfig } from "werift";
import { AuthClient } from "../auth/client.ts";
import type { KeysetDocument } from "../auth/keyset.ts";
import { GameClient } from "./client.ts";
import { nodeFetch } from "./https.ts";
import { P2PClient } from "./p2p.ts";
import type { ClientTls } from "./socket.ts";
import { devToken } from "./token.ts";
import { nodeSocketWith } from "./ws.ts";

/** Latency histogram with 0.1 ms buckets up to 10 s (mergeable across processes). */
export class LatencyHistogram {
  static readonly BUCKETS = 100_000;
  readonly counts: Uint32Array;
  total = 0;

  constructor(counts?: ArrayLike<number>) {
    this.counts = new Uint32Array(LatencyHistogram.BUCKETS);
    if (counts) {
      this.counts.set(counts);
      for (let i = 0; i < this.counts.length; i++) this.total += this.counts[i]!;
    }
  }

  record(ms: number): void {
    const b = Math.min(LatencyHistogram.BUCKETS - 1, Math.max(0, Math.round(ms * 10)));
    this.counts[b]!++;
    this.total++;
  }

  merge(other: LatencyHistogram): void {
    for (let i = 0; i < this.counts.length; i++) this.counts[i]! += other.counts[i]!;
    this.total += other.total;
  }

  /** The q-quantile in ms (0 when empty). */
  quantile(q: number): number {
    if (this.total === 0) return 0;
    const want = Math.ceil(q * this.total);
    let seen = 0;
    for (let i = 0; i < this.counts.length; i++) {
      seen += this.counts[i]!;
      if (seen >= want) return i / 10;
    }
    return (LatencyHistogram.BUCKETS - 1) / 10;
  }

  reset(): void {
    this.counts.fill(0);
    this.total = 0;
  }
}

export interface BotOptions {
  count: number;
  gatewayUrl: string;
  /** The maps the bots play on (round robin); a token binds each bot to its map. */
  maps: string[];
  /** The zone, for names and reports. */
  zone?: string;
  /** Keyset (document or file) whose active key signs development tokens; or use `accounts`. */
  keyset?: KeysetDocument | string;
  /** Log in through the login and char servers instead (signing up and creating the
   * character on first use): the way real players get their tokens. The char server then
   * decides the map (the character's saved map or the start point), not `maps`. */
  accounts?: { loginUrl: string; charUrl: string; password?: string };
  /** Share of P2P clients, 0 to 1 (default 0); more than 0 needs `coordinators`. */
  p2pShare?: number;
  /** Coordinator replicas (wss:// URLs; ws:// without TLS) the P2P bots mesh through. */
  coordinators?: string[];
  /** ICE settings of the P2P bots (default LOOPBACK_ICE, mesh.ts). */
  ice?: Partial<RTCPeerConnectionConfig>;
  /** Each bot walks every this many ms (0: never). Default 1000. */
  moveEveryMs?: number;
  /** Each bot says something every this many ms (0: never). Default 0. */
  chatEveryMs?: number;
  /** "light" for load generation (default), "full" to keep world views. */
  decodeMode?: "full" | "light";
  /** Character ids are `<prefix><n>`. Default "bot". */
  idPrefix?: string;
  /** Connections opened at once. Default 100. */
  concurrency?: number;
  /** Stop opening more after a failure? Default false (count it and go on). */
  failFast?: boolean;
  /** Stop opening connections after this long (load generation on a saturated target). */
  connectWithinMs?: number;
  /**
   * Trust for wss:// and https:// (the gateway, coordinators, login and char servers): the
   * Region's CA. Default: the file HYBRIDP2P_CA_FILE names, else the system's trust.
   */
  tls?: ClientTls;
}

export interface BotStats {
  connected: number;
  failed: number;
  closed: number;
  aoi: number;
  messages: number;
  seqErrors: number;
  p50Ms: number;
  p99Ms: number;
}

export interface BotFleet {
  readonly clients: GameClient[];
  readonly latency: LatencyHistogram;
  stats(): BotStats;
  /** Zeroes the latency histogram (start of a measurement window). */
  resetLatency(): void;
  /** Why the first bot that failed did (an untrusted certificate, a refused login, ...). */
  firstError(): string | undefined;
  stop(): Promise<void>;
}

/** Opens `count` bots (in waves of `concurrency`) and lets them play until stopped. */
export async function runBots(o: BotOptions): Promise<BotFleet> {
  const latency = new LatencyHistogram();
  const clients: GameClient[] = [];
  let failed = 0;
  let firstError: string | undefined;
  let closed = 0;
  const timers: NodeJS.Timeout[] = [];
  const prefix = o.idPrefix ?? "bot";
  const p2pEvery = o.p2pShare && o.p2pShare > 0 ? Math.round(1 / o.p2pShare) : 0;
  if ((o.keyset === undefined) === (o.accounts === undefined)) {
    throw new Error(
      "runBots needs exactly one of keyset (development tokens) or accounts (login and char servers)",
    );
  }
  const coordinators = o.coordinators ?? [];
  if (p2pEvery > 0 && coordinators.length === 0)
    throw new Error("runBots needs coordinators for P2P bots (p2pShare > 0): they mesh through them");
  // Read once: a CA file that is missing fails here, before any bot.
  const http = nodeFetch(o.tls);
  const socket = nodeSocketWith(o.tls);
  const tokenFor = async (i: number): Promise<string> => {
    if (o.accounts) {
      // Account and character names have a 4-character minimum.
      const name = `${prefix}${i}`.padEnd(4, "_").slice(0, 23);
      const auth = new AuthClient({ ...o.accounts, fetch: http });
      await auth.loginOrSignUp(name, o.accounts.password ?? `${name}-bot-password`);
      return (await auth.enterAs(name)).token;
    }
    return devToken({
      keyset: o.keyset!,
      characterId: `${prefix}${i}`,
      characterName: `${prefix}${i}`.slice(0, 24),
      map: o.maps[i % o.maps.length]!,
    });
  };
  const open = async (i: number) => {
    const token = await tokenFor(i);
    const p2p = p2pEvery > 0 && i % p2pEvery === 0;
    const opts = {
      url: o.gatewayUrl,
      token,
      socket,
      decodeMode: p2p ? "full" : (o.decodeMode ?? "light"),
      timeoutMs: Math.max(1000, Math.min(20_000, deadline - Date.now())),
    } as const;
    const c = p2p
      ? await P2PClient.connect({ ...opts, coordinators, ice: o.ice })
      : await GameClient.connect(opts);
    c.onAoiTime = (t) => latency.record(Date.now() - t);
    void c.closed.then(() => closed++);
    clients.push(c);
    const every = o.moveEveryMs ?? 1000;
    // Spread the bots' actions over the period so load is even.
    if (every > 0) {
      const t = setTimeout(() => {
        const iv = setInterval(
          () => c.move(10 + Math.floor(Math.random() * 80), 10 + Math.floor(Math.random() * 80)),
          every,
        );
        timers.push(iv);
      }, Math.random() * every);
      timers.push(t);
    }
    const chat = o.chatEveryMs ?? 0;
    if (chat > 0) timers.push(setInterval(() => c.chat(`hi from ${prefix}${i}`), chat));
  };
  const concurrency = o.concurrency ?? 100;
  const deadline = Date.now() + (o.connectWithinMs ?? Number.POSITIVE_INFINITY);
  let next = 0;
  const worker = async () => {
    while (next < o.count && Date.now() < deadline) {
      const i = next++;
      try {
        await open(i);
      } catch (err) {
        failed++;
        firstError ??= err instanceof Error ? err.message : String(err);
        if (o.failFast) throw err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, o.count) }, worker));
  return {
    clients,
    latency,
    stats() {
      let aoi = 0;
      let messages = 0;
      let seqErrors = 0;
      for (const c of clients) {
        aoi += c.counts.get("aoi") ?? 0;
        for (const n of c.counts.values()) messages += n;
        seqErrors += c.seqErrors.length;
      }
      return {
        connected: clients.length - closed,
        failed,
        closed,
        aoi,
        messages,
        seqErrors,
        p50Ms: latency.quantile(0.5),
        p99Ms: latency.quantile(0.99),
      };
    },
    resetLatency: () => latency.reset(),
    firstError: () => firstError,
    async stop() {
      for (const t of timers) clearTimeout(t);
      await Promise.all(clients.map((c) => c.close()));
    },
  };
}
