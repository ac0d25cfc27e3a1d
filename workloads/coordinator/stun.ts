// A STUN binding responder on loopback, for tests and benchmarks with werift peers.
//
// Why: werift always queries a STUN server while gathering (stun.l.google.com when none is
// configured) and waits up to 5 s for it. On a machine without Internet access that makes
// gathering take 5 s whenever the lookup hangs, which under a few dozen concurrent gatherings
// is most of the time (the DNS lookups queue on libuv's four threads). A responder at an IP
// address answers at once and needs no DNS.
import { createSocket } from "node:dgram";
import type { RTCPeerConnectionConfig } from "werift";
import { LOOPBACK_ICE } from "../client/mesh.ts";

const BINDING_REQUEST = 0x0001;
const BINDING_RESPONSE = 0x0101;
const XOR_MAPPED_ADDRESS = 0x0020;
const MAGIC = 0x2112a442;

export interface LoopbackStun {
  /** LOOPBACK_ICE with this responder as the STUN server. */
  ice: Partial<RTCPeerConnectionConfig>;
  close(): Promise<void>;
}

export async function startLoopbackStun(): Promise<LoopbackStun> {
  const s = createSocket("udp4");
  s.on("message", (msg, from) => {
    if (msg.length < 20 || msg.readUInt16BE(0) !== BINDING_REQUEST || msg.readUInt32BE(4) !== MAGIC) return;
    // Header (type, length, cookie and transaction id echoed) + XOR-MAPPED-ADDRESS (IPv4).
    const out = Buffer.alloc(32);
    out.writeUInt16BE(BINDING_RESPONSE, 0);
    out.writeUInt16BE(12, 2);
    msg.copy(out, 4, 4, 20);
    out.writeUInt16BE(XOR_MAPPED_ADDRESS, 20);
    out.writeUInt16BE(8, 22);
    out.writeUInt8(0x01, 25);
    out.writeUInt16BE(from.port ^ (MAGIC >>> 16), 26);
    const ip = from.address.split(".").reduce((a, b) => a * 256 + Number(b), 0);
    out.writeUInt32BE((ip ^ MAGIC) >>> 0, 28);
    s.send(out, from.port, from.address);
  });
  s.on("error", () => undefined);
  await new Promise<void>((resolve) => s.bind(0, "127.0.0.1", () => resolve()));
  const port = s.address().port;
  return {
    ice: { ...LOOPBACK_ICE, iceServers: [{ urls: `stun:127.0.0.1:${port}` }] },
    close: () => new Promise<void>((resolve) => s.close(() => resolve())),
  };
}
