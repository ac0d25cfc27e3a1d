// RO bots: clients of the RO protocol (PACKETVER 20101124) for load and tries
// (`hybridctl bots --protocol ro`) and the RO benchmark. They go the way an RO client goes:
// 0x0064 on the login endpoint, 0x0065/0x0067/0x0066 on the char endpoint it names, 0x0436 on
// the map endpoint the char server names (always at the host they were configured with, as a
// client that ignores the ip fields), then walk and talk. They use the server's own codec
// (platform/protocol/ro); the independent test client is testkit/ro/client.ts.
//
// RO has no sign-up of its own here: bots sign up over the login server's HTTP API first.
import type { Socket } from "node:net";
import {
  type ClientPacket,
  decode,
  encode,
  PacketFramer,
  packetName,
  type ServerPacket,
} from "../../platform/protocol/ro/codec.ts";
import { connectRo } from "../../platform/protocol/ro/connect.ts";
import { AuthClient } from "../auth/client.ts";
import { LatencyHistogram } from "./bots.ts";
import { nodeFetch } from "./https.ts";
import type { ClientTls } from "./socket.ts";

type Waiter = { match: (p: ServerPacket) => boolean; resolve: (p: ServerPacket) => void };

/** One TCP connection to an RO endpoint. */
export class RoConnection {
  readonly socket: Socket;
  private readonly framer = new PacketFramer({ maxPacket: 0xffff, maxBuffered: 4 << 20 });
  private raw?: { n: number; resolve: (b: Buffer) => void };
  private pendingBytes = Buffer.alloc(0);
  private waiters: Waiter[] = [];
  /** Called with every packet (after waiters are served). */
  onPacket?: (p: ServerPacket) => void;
  readonly closed: Promise<void>;

  private constructor(socket: Socket) {
    this.socket = socket;
    this.closed = new Promise((r) => socket.on("close", () => r()));
    socket.on("error", () => {});
    socket.on("data", (d) => this.data(d));
  }

  static async open(host: string, port: number, timeoutMs = 15_000): Promise<RoConnection> {
    return new RoConnection(await connectRo(host, port, timeoutMs));
  }

  private data(d: Buffer): void {
    let chunk = d;
    if (this.raw) {
      this.pendingBytes = Buffer.concat([this.pendingBytes, chunk]);
      if (this.pendingBytes.length < this.raw.n) return;
      const r = this.raw;
      this.raw = undefined;
      r.resolve(this.pendingBytes.subarray(0, r.n));
      chunk = this.pendingBytes.subarray(r.n);
      this.pendingBytes = Buffer.alloc(0);
    }
    let frames: { id: number; data: Buffer }[];
    try {
      frames = this.framer.push(chunk);
    } catch {
      this.socket.destroy();
      return;
    }
    for (const f of frames) {
      if (packetName(f.id) === undefined) continue; // a packet bots do not read
      let p: ServerPacket;
      try {
        p = decode(f.data, "s2c");
      } catch {
        continue;
      }
      const w = this.waiters.find((x) => x.match(p));
      if (w) {
        this.waiters = this.waiters.filter((x) => x !== w);
        w.resolve(p);
      }
      this.onPacket?.(p);
    }
  }

  send(p: ClientPacket): void {
    if (!this.socket.destroyed) this.socket.write(encode(p));
  }

  /** The next `n` raw bytes (the char server's bare account id). */
  rawBytes(n: number): Promise<Buffer> {
    return new Promise((resolve) => {
      this.raw = { n, resolve };
    });
  }

  next<T extends ServerPacket["type"]>(
    types: T | T[],
    timeoutMs = 15_000,
    match: (p: Extract<ServerPacket, { type: T }>) => boolean = () => true,
  ): Promise<Extract<ServerPacket, { type: T }>> {
    const want = Array.isArray(types) ? types : [types];
    return new Promise((resolve, reject) => {
      const w: Waiter = {
        match: (p) => (want as string[]).includes(p.type) && match(p as Extract<ServerPacket, { type: T }>),
        resolve: (p) => {
          clearTimeout(timer);
          resolve(p as Extract<ServerPacket, { type: T }>);
        },
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w);
        reject(new Error(`no ${want.join("/")} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.push(w);
      void this.closed.then(() => {
        if (!this.waiters.includes(w)) return;
        this.waiters = this.waiters.filter((x) => x !== w);
        clearTimeout(timer);
        reject(new Error(`connection closed before ${want.join("/")}`));
      });
    });
  }

  close(): void {
    this.socket.destroy();
  }
}

/** A player on the map endpoint, after login and character select. */
export interface RoPlayer {
  conn: RoConnection;
  accountId: number;
  x: number;
  y: number;
}

/**
 * Logs in (0x0064), enters the char server it is sent to (creating a character in slot 0 the
 * first time), selects it and enters the map server: the whole way of an RO client.
 */
export async function roEnter(o: {
  host: string;
  loginPort: number;
  username: string;
  password: string;
  characterName: string;
}): Promise<RoPlayer> {
  const login = await RoConnection.open(o.host, o.loginPort);
  const ok = login.next(["loginOk", "loginRefused"]);
  login.send({
    type: "login",
    version: 20101124,
    username: o.username,
    password: o.password,
    clientType: 22,
  });
  const l = await ok;
  login.close();
  if (l.type !== "loginOk") throw new Error(`RO login refused (error ${l.error})`);
  const server = l.items[0];
  if (!server) throw new Error("RO login listed no char server");
  const char = await RoConnection.open(o.host, server.port);
  try {
    const echo = char.rawBytes(4);
    const list = char.next(["charList", "charRefused"]);
    char.send({
      type: "charEnter",
      accountId: l.accountId,
      loginId1: l.loginId1,
      loginId2: l.loginId2,
      unknown: 0,
      sex: l.sex,
    });
    await echo;
    const chars = await list;
    if (chars.type !== "charList") throw new Error("RO char server refused the login ids");
    if (!chars.items.some((c) => c.slot === 0)) {
      const made = char.next(["charCreated", "charCreateFailed"]);
      char.send({
        type: "charCreate",
        name: o.characterName,
        str: 5,
        agi: 5,
        vit: 5,
        int: 5,
        dex: 5,
        luk: 5,
        slot: 0,
        hairColor: 1,
        hairStyle: 1,
      });
      const m = await made;
      if (m.type !== "charCreated") throw new Error(`RO character not created (error ${m.error})`);
    }
    const sel = char.next("mapServer");
    char.send({ type: "charSelect", slot: 0 });
    const addr = await sel;
    const map = await RoConnection.open(o.host, addr.port);
    const acc = map.next(["mapAccept", "mapRefused"], 30_000);
    map.send({
      type: "mapEnter",
      accountId: l.accountId,
      charId: addr.charId,
      loginId1: l.loginId1,
      clientTick: Date.now() >>> 0,
      sex: l.sex,
    });
    const a = await acc;
    if (a.type !== "mapAccept") {
      map.close();
      throw new Error("RO map server refused the character");
    }
    map.send({ type: "loadEnd" });
    return { conn: map, accountId: l.accountId, x: a.pos.x, y: a.pos.y };
  } finally {
    char.close();
  }
}

export interface RoBotOptions {
  count: number;
  /** Where the RO endpoints are reached (the host a client is configured with). */
  host: string;
  loginPort: number;
  /** The login server's HTTP API (https://), where bots sign up. */
  signUpUrl: string;
  /** Trust for signUpUrl: the Region's CA (default HYBRIDP2P_CA_FILE, else the system's). */
  tls?: ClientTls;
  /** Account and character names are `<prefix><n>`. Default "robot". */
  prefix?: string;
  password?: string;
  /** Each bot walks every this many ms (0: never). Default 1000. */
  moveEveryMs?: number;
  /** How far a walk goes from where the bot stands, in cells. Default 5. */
  walkRange?: number;
  chatEveryMs?: number;
  concurrency?: number;
}

export interface RoBotStats {
  connected: number;
  failed: number;
  closed: number;
  moves: number;
  /** Walk request to the own move (0x0087) or stop (0x0088) answering it. */
  p50Ms: number;
  p99Ms: number;
}

export interface RoBotFleet {
  readonly players: RoPlayer[];
  readonly latency: LatencyHistogram;
  stats(): RoBotStats;
  resetLatency(): void;
  stop(): Promise<void>;
}

/** Opens `count` RO bots and lets them walk until stopped. */
export async function runRoBots(o: RoBotOptions): Promise<RoBotFleet> {
  const latency = new LatencyHistogram();
  const players: RoPlayer[] = [];
  const timers: NodeJS.Timeout[] = [];
  let failed = 0;
  let closed = 0;
  let moves = 0;
  const prefix = o.prefix ?? "robot";
  const auth = new AuthClient({ loginUrl: o.signUpUrl, charUrl: o.signUpUrl, fetch: nodeFetch(o.tls) });
  const range = o.walkRange ?? 5;
  const open = async (i: number) => {
    const name = `${prefix}${i}`.padEnd(4, "_").slice(0, 23);
    const password = o.password ?? `${name}-ro-password`;
    await auth.signUp(name, password).catch(() => undefined); // taken: it exists from an earlier run
    const p = await roEnter({
      host: o.host,
      loginPort: o.loginPort,
      username: name,
      password,
      characterName: name,
    });
    players.push(p);
    void p.conn.closed.then(() => closed++);
    let sentAt = 0;
    p.conn.onPacket = (pk) => {
      if (pk.type === "ownMove" || (pk.type === "moveStop" && pk.id === p.accountId)) {
        if (sentAt > 0) latency.record(performance.now() - sentAt);
        sentAt = 0;
        if (pk.type === "ownMove") {
          p.x = pk.move.x1;
          p.y = pk.move.y1;
        } else {
          p.x = pk.x;
          p.y = pk.y;
        }
      }
    };
    const every = o.moveEveryMs ?? 1000;
    if (every > 0) {
      const t = setTimeout(() => {
        timers.push(
          setInterval(() => {
            const dx = Math.round((Math.random() * 2 - 1) * range);
            const dy = Math.round((Math.random() * 2 - 1) * range);
            sentAt = performance.now();
            moves++;
            p.conn.send({
              type: "walk",
              dest: {
                x: Math.max(1, Math.min(1000, p.x + dx)),
                y: Math.max(1, Math.min(1000, p.y + dy)),
                dir: 0,
              },
            });
          }, every),
        );
      }, Math.random() * every);
      timers.push(t);
    }
    const chat = o.chatEveryMs ?? 0;
    if (chat > 0)
      timers.push(setInterval(() => p.conn.send({ type: "chat", text: `${name} : hi from ${name}` }), chat));
  };
  let next = 0;
  const worker = async () => {
    while (next < o.count) {
      const i = next++;
      try {
        await open(i);
      } catch {
        failed++;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(o.concurrency ?? 20, o.count) }, worker));
  return {
    players,
    latency,
    stats: () => ({
      connected: players.length - closed,
      failed,
      closed,
      moves,
      p50Ms: latency.quantile(0.5),
      p99Ms: latency.quantile(0.99),
    }),
    resetLatency: () => latency.reset(),
    async stop() {
      for (const t of timers) clearTimeout(t);
      for (const p of players) {
        p.conn.send({ type: "quit", kind: 0 });
        p.conn.close();
      }
    },
  };
}
