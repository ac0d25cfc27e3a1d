// The client SDK: a legacy client (everything through the gateway over one WebSocket). The P2P
// client (p2p.ts) builds on it. Tests, the e2e suite and the bots use it.
//
// It checks the gateway's promise: server-authoritative messages arrive numbered 1, 2, 3, ...
// with no gap and no reordering, across map changes and mode switches; any break is recorded
// in `seqErrors`.
//
// The socket is pluggable (socket.ts): the `ws` package in Node by default, the browser's own
// WebSocket in the browser client (workloads/web).
import {
  type ClientMessage,
  decode,
  type Entity,
  encode,
  isSequenced,
  type MessageOf,
  type Mode,
  peekType,
  SEQ_OFFSET,
  type ServerMessage,
} from "../../platform/protocol/messages.ts";
import { type ReasonCode, reasonOfCloseCode } from "../../platform/protocol/schema.ts";
import type { ClientTls, Socket, SocketFactory } from "./socket.ts";

export interface ClientOptions {
  url: string;
  token: string;
  /** How long to wait for the welcome. Default 20 s. */
  timeoutMs?: number;
  /**
   * "full" decodes and validates every message and keeps a world view; "light" (load
   * generation) only checks sequence numbers and reads AOI timestamps.
   */
  decodeMode?: "full" | "light";
  /** The WebSocket. Default: the `ws` package (Node), with `tls`. */
  socket?: SocketFactory;
  /** wss:// trust in Node: the Region's CA (default: HYBRIDP2P_CA_FILE, else the system's). */
  tls?: ClientTls;
}

export interface Closed {
  code: number;
  reason: ReasonCode | string;
}

export type Welcome = MessageOf<"welcome">;

type Listener = (m: ServerMessage) => void;

export class ClientError extends Error {
  readonly reason: string;
  constructor(reason: string, message: string) {
    super(message);
    this.name = "ClientError";
    this.reason = reason;
  }
}

/** Offset of an AOI message's map name (after version, type and seq). */
const AOI_BODY = 6;

export class GameClient {
  readonly ws: Socket;
  readonly kind: "legacy" | "p2p";
  session = "";
  character = "";
  entity = 0;
  map = "";
  /** The map's size in cells. */
  width = 0;
  height = 0;
  mode: Mode = "server";
  lastSeq = 0;
  /** Breaks of the sequence (should stay empty). */
  readonly seqErrors: string[] = [];
  /** Entities in view, by id (full decode mode). */
  readonly world = new Map<number, Entity>();
  /** Messages received, by type. */
  readonly counts = new Map<string, number>();
  /** World event announcements received (full decode mode), oldest first. */
  readonly announcements: Array<{ event: string; text: string; t: number }> = [];
  /** Called with the AOI's server timestamp on every AOI (latency figures). */
  onAoiTime?: (t: number) => void;
  readonly closed: Promise<Closed>;
  protected readonly full: boolean;
  private n = 0;
  private readonly listeners = new Set<Listener>();

  protected constructor(ws: Socket, kind: "legacy" | "p2p", full: boolean) {
    this.ws = ws;
    this.kind = kind;
    this.full = full;
    this.closed = new Promise((resolve) => {
      ws.onClose = (code, reason) => resolve({ code, reason: reasonOfCloseCode(code) ?? reason });
    });
    ws.onMessage = (data) => this.onFrame(data);
  }

  /** Connects, says hello, and resolves once welcomed (or rejects with the gateway's reason). */
  static async connect(opts: ClientOptions): Promise<GameClient> {
    const c = new GameClient(await open(opts), "legacy", opts.decodeMode !== "light");
    await c.handshake(opts);
    return c;
  }

  protected async handshake(opts: ClientOptions): Promise<void> {
    const welcome = this.next("welcome", opts.timeoutMs ?? 20_000);
    this.send({ type: "hello", token: opts.token, kind: this.kind });
    await welcome;
  }

  /** Subscribes to every decoded server message (full mode); returns the unsubscribe. */
  onMessage(fn: Listener): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** The next message of a type (optionally matching), or a rejection when the connection closes. */
  next<K extends ServerMessage["type"]>(
    type: K,
    timeoutMs = 20_000,
    match: (m: Extract<ServerMessage, { type: K }>) => boolean = () => true,
  ): Promise<Extract<ServerMessage, { type: K }>> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(new ClientError("timeout", `no ${type} within ${timeoutMs} ms`));
      }, timeoutMs);
      const off = this.onMessage((m) => {
        if (m.type === "error") {
          clearTimeout(timer);
          off();
          reject(new ClientError(m.reason, m.message));
        } else if (m.type === type && match(m as Extract<ServerMessage, { type: K }>)) {
          clearTimeout(timer);
          off();
          resolve(m as Extract<ServerMessage, { type: K }>);
        }
      });
      void this.closed.then((c) => {
        clearTimeout(timer);
        off();
        reject(new ClientError(String(c.reason), `connection closed (${c.code})`));
      });
    });
  }

  send(msg: ClientMessage): void {
    if (this.ws.open) this.ws.send(encode(msg));
  }

  /** Walks to a cell (server-side movement). Returns the input counter. */
  move(x: number, y: number): number {
    const n = ++this.n;
    this.send({ type: "move", n, x, y });
    return n;
  }

  stop(): number {
    const n = ++this.n;
    this.send({ type: "stop", n });
    return n;
  }

  chat(text: string): number {
    const n = ++this.n;
    this.send({ type: "chat", n, text });
    return n;
  }

  attack(target: number): number {
    const n = ++this.n;
    this.send({ type: "attack", n, target });
    return n;
  }

  /** Reports the client's own position (P2P sessions in p2p mode). */
  protected reportPos(x: number, y: number): number {
    const n = ++this.n;
    this.send({ type: "pos", n, x, y });
    return n;
  }

  /** Round trip to the gateway, in ms. */
  async ping(): Promise<number> {
    const t = performance.now();
    const pong = this.next("pong", 10_000, (p) => p.t === t);
    this.send({ type: "ping", t });
    await pong;
    return performance.now() - t;
  }

  close(): Promise<Closed> {
    if (this.ws.open) this.ws.close(1000);
    return this.closed;
  }

  private count(type: string): void {
    this.counts.set(type, (this.counts.get(type) ?? 0) + 1);
  }

  private checkSeq(seq: number): void {
    if (seq !== this.lastSeq + 1) this.seqErrors.push(`expected seq ${this.lastSeq + 1}, got ${seq}`);
    this.lastSeq = seq;
  }

  private onFrame(frame: Uint8Array): void {
    if (!this.full) {
      const type = peekType(frame);
      if (type === undefined) return;
      this.count(type);
      const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
      if (isSequenced(type)) this.checkSeq(view.getUint32(SEQ_OFFSET, true));
      if (type === "aoi" && this.onAoiTime) {
        const at = AOI_BODY + 2 + view.getUint16(AOI_BODY, true) + 4;
        this.onAoiTime(view.getFloat64(at, true));
      }
      if (type === "welcome" || type === "error" || type === "pong") {
        const m = decode(frame, "s2c");
        this.apply(m);
        this.dispatch(m);
      }
      return;
    }
    let m: ServerMessage;
    try {
      m = decode(frame, "s2c");
    } catch (err) {
      this.seqErrors.push(`undecodable frame: ${(err as Error).message}`);
      return;
    }
    this.count(m.type);
    if ("seq" in m) this.checkSeq(m.seq);
    this.apply(m);
    this.dispatch(m);
  }

  private dispatch(m: ServerMessage): void {
    for (const fn of [...this.listeners]) fn(m);
  }

  /** Keeps the world view and the client's state current. */
  protected apply(m: ServerMessage): void {
    switch (m.type) {
      // Taken here, not after the handshake resolves: later messages of the same read need it.
      case "welcome":
        this.session = m.session;
        this.character = m.character;
        this.entity = m.entity;
        this.map = m.map;
        this.width = m.width;
        this.height = m.height;
        this.mode = m.mode;
        return;
      case "aoi":
        for (const e of m.enter) this.world.set(e.id, e);
        for (const e of m.update) this.world.set(e.id, e);
        for (const id of m.leave) this.world.delete(id);
        this.onAoiTime?.(m.t);
        return;
      case "mode":
        this.mode = m.mode;
        return;
      case "mapChange":
        this.map = m.map;
        this.entity = m.entity;
        this.width = m.width;
        this.height = m.height;
        this.mode = m.mode;
        this.world.clear();
        return;
      case "viewReset":
        this.world.clear();
        return;
      case "announce":
        this.announcements.push({ event: m.event, text: m.text, t: m.t });
        return;
      case "respawn": {
        const e = this.world.get(m.entity);
        if (e) this.world.set(m.entity, { ...e, x: m.x, y: m.y });
        return;
      }
      default:
        return;
    }
  }
}

/** Opens the socket (default: the `ws` package, loaded only when no other is given). */
export async function open(
  opts: Pick<ClientOptions, "url" | "timeoutMs" | "socket" | "tls">,
): Promise<Socket> {
  const factory = opts.socket ?? (await import("./ws.ts")).nodeSocketWith(opts.tls);
  return factory(opts.url, opts.timeoutMs ?? 20_000);
}
