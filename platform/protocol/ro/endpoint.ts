// A TCP endpoint speaking the RO protocol: the shared part of the login, char and map
// endpoints. Per connection: a framer (lengths.ts), the decoder, and packets handed to the
// handler one at a time, in order (a handler's promise settles before the next packet).
//
// Robustness, per connection only: a packet whose id has a known length but no handler here is
// skipped and logged; an id with no known length, a malformed or oversized packet, a handler
// that throws, or a client that does not read (more than `maxBufferedBytes` unsent) closes
// that connection and nothing else. Idle connections are closed after `idleTimeoutMs`.
import { createServer, type Server, type Socket } from "node:net";
import type { Logger } from "../../log.ts";
import {
  type ClientPacket,
  decode,
  encode,
  PacketFramer,
  packetName,
  RoProtocolError,
  type ServerPacket,
} from "./codec.ts";

export interface RoConnection<S = unknown> {
  readonly id: number;
  readonly remoteAddress: string;
  /** Whatever the handler keeps for this connection. */
  state: S;
  send(p: ServerPacket): void;
  /** Bytes as they are (the char server's bare account id after 0x0065). */
  sendRaw(bytes: Uint8Array): void;
  /** Ends the connection once what was sent is flushed. */
  end(reason: string): void;
  readonly open: boolean;
  readonly bufferedBytes: number;
  /** Resolves when the connection is gone. */
  readonly done: Promise<void>;
}

export interface RoHandler<S> {
  /** A new connection: returns its initial state. */
  open(c: RoConnection<S>): S;
  packet(c: RoConnection<S>, p: ClientPacket): void | Promise<void>;
  closed?(c: RoConnection<S>): void;
}

export interface RoEndpointOptions<S> {
  name: string;
  port: number;
  host?: string;
  log: Logger;
  handler: RoHandler<S>;
  maxConnections?: number;
  /** Closed when nothing arrives for this long. Default 5 minutes (clients ping every 12 s). */
  idleTimeoutMs?: number;
  /** Largest packet accepted from a client. Default 2048 bytes. */
  maxPacket?: number;
  maxBufferedBytes?: number;
}

export interface RoEndpoint {
  port: number;
  readonly connections: number;
  /** Packets skipped (no handler), and connections closed for a protocol error. */
  readonly stats: { skipped: number; protocolErrors: number; accepted: number };
  close(): Promise<void>;
}

export async function startRoEndpoint<S>(opts: RoEndpointOptions<S>): Promise<RoEndpoint> {
  const log = opts.log.child({ endpoint: opts.name });
  const sockets = new Set<Socket>();
  const stats = { skipped: 0, protocolErrors: 0, accepted: 0 };
  let nextId = 1;
  const maxBuffered = opts.maxBufferedBytes ?? 512 * 1024;
  const server: Server = createServer({ noDelay: true }, (socket) => {
    if (sockets.size >= (opts.maxConnections ?? 10_000)) {
      socket.destroy();
      return;
    }
    sockets.add(socket);
    stats.accepted++;
    const framer = new PacketFramer({ maxPacket: opts.maxPacket ?? 2048 });
    let open = true;
    let chain: Promise<void> = Promise.resolve();
    let resolveDone: () => void = () => {};
    const done = new Promise<void>((r) => {
      resolveDone = r;
    });
    const skippedIds = new Set<number>();
    const write = (b: Uint8Array) => {
      if (!open) return;
      if (socket.writableLength > maxBuffered) {
        log.warn("RO client does not read; closing", { conn: c.id });
        kill();
        return;
      }
      socket.write(b);
    };
    const c: RoConnection<S> = {
      id: nextId++,
      remoteAddress: (socket.remoteAddress ?? "").replace(/^::ffff:/, ""),
      state: undefined as S,
      send: (p) => write(encode(p)),
      sendRaw: (b) => write(b),
      end: (reason) => {
        if (!open) return;
        log.debug("RO connection ended", { conn: c.id, reason });
        open = false;
        socket.end();
        setTimeout(() => socket.destroy(), 2000).unref();
      },
      get open() {
        return open;
      },
      get bufferedBytes() {
        return socket.writableLength;
      },
      done,
    };
    const kill = () => {
      open = false;
      socket.destroy();
    };
    socket.setTimeout(opts.idleTimeoutMs ?? 300_000, () => {
      log.debug("RO connection idle; closing", { conn: c.id });
      kill();
    });
    socket.on("error", () => kill());
    socket.on("close", () => {
      open = false;
      sockets.delete(socket);
      resolveDone();
      // After the packets in flight: the handler sees its last packet before the close.
      chain = chain.then(() => opts.handler.closed?.(c)).catch(() => undefined);
    });
    try {
      c.state = opts.handler.open(c);
    } catch (err) {
      log.error("RO handler failed to open a connection", { err });
      kill();
      return;
    }
    socket.on("data", (chunk) => {
      if (!open) return;
      let frames: { id: number; data: Buffer }[];
      try {
        frames = framer.push(chunk);
      } catch (err) {
        stats.protocolErrors++;
        log.warn("RO protocol error; closing the connection", { conn: c.id, err: String(err) });
        kill();
        return;
      }
      for (const f of frames) {
        if (packetName(f.id) === undefined) {
          stats.skipped++;
          if (!skippedIds.has(f.id)) {
            skippedIds.add(f.id);
            log.info("RO packet skipped: no handler for this id", {
              conn: c.id,
              id: `0x${f.id.toString(16).padStart(4, "0")}`,
              bytes: f.data.length,
            });
          }
          continue;
        }
        let p: ClientPacket;
        try {
          p = decode(f.data, "c2s");
        } catch (err) {
          stats.protocolErrors++;
          const unexpected = err instanceof RoProtocolError && err.reason === "unknown_packet";
          log.warn(unexpected ? "RO server packet from a client; closing" : "RO malformed packet; closing", {
            conn: c.id,
            err: String(err),
          });
          kill();
          return;
        }
        chain = chain
          .then(() => (open ? opts.handler.packet(c, p) : undefined))
          .catch((err) => {
            log.error("RO handler failed; closing the connection", { conn: c.id, packet: p.type, err });
            kill();
          });
      }
    });
  });
  server.maxConnections = opts.maxConnections ?? 10_000;
  const port = await new Promise<number>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.host ?? "0.0.0.0", () => {
      server.off("error", reject);
      const a = server.address();
      resolve(typeof a === "object" && a ? a.port : opts.port);
    });
  });
  log.info("RO endpoint listening", { port });
  return {
    port,
    get connections() {
      return sockets.size;
    },
    stats,
    async close() {
      await new Promise<void>((r) => {
        server.close(() => r());
        for (const s of sockets) s.end();
        setTimeout(() => {
          for (const s of sockets) s.destroy();
        }, 1000).unref();
      });
    },
  };
}

/** The RO client's millisecond tick: a u32 that wraps. */
export function roTick(now = performance.now()): number {
  return Math.floor(now) >>> 0;
}
