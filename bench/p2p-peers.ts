// bench:p2p's peer processes: each hosts a share of the werift peers, so that one process on two
// cores is not what the benchmark measures. Driven by bench/p2p.ts over the IPC channel
// (child_process.fork): one request, one reply, in order. Times are absolute
// (performance.timeOrigin + performance.now(), comparable across processes on one machine).

import type { KeysetDocument } from "../workloads/auth/keyset.ts";
import { LOOPBACK_ICE, MeshClient } from "../workloads/client/mesh.ts";
import { P2PClient } from "../workloads/client/p2p.ts";
import type { RtcFactory } from "../workloads/client/rtc.ts";
import { devToken } from "../workloads/client/token.ts";
import { browserRtc } from "../workloads/web/rtc.ts";

/**
 * werift: the SDK's default (pure TypeScript). libdatachannel: node-datachannel's W3C
 * RTCPeerConnection (native), through the browser client's adapter: what a peer costs in CPU
 * with a native WebRTC stack, as browsers have.
 */
export type Stack = "werift" | "libdatachannel";

export type PeerRequest =
  | { op: "init"; keyset: KeysetDocument; stunPort: number; stack: Stack }
  | { op: "mesh"; peers: MeshSpot[]; map: string; coordUrl: string }
  | { op: "go" }
  | { op: "status" }
  | { op: "stop" }
  | { op: "play"; ids: string[]; map: string; gwUrl: string; coordUrl: string }
  | { op: "pstatus" }
  | { op: "arm" }
  | { op: "fell" }
  | { op: "finish"; sent: string[] }
  | { op: "exit" };

/** A mesh-formation peer and where it stands (bench/p2p.ts places them). */
export interface MeshSpot {
  id: string;
  x: number;
  y: number;
}

/** One link count per peer: its mates, and those open or relayed. */
export interface PeerStatus {
  mates: number;
  settled: boolean;
  relayed: number;
  joined: number;
  /** Peers told no mate at all (not yet in a mesh). */
  lonely: number;
}

const now = () => performance.timeOrigin + performance.now();

let keyset: KeysetDocument;
let ice = LOOPBACK_ICE;
let rtc: RtcFactory | undefined;
/** Offers in flight per peer: werift's handshakes are CPU-bound (few at once), native ones are not. */
let maxPendingOffers = 6;
let meshes: MeshClient[] = [];
let players: P2PClient[] = [];
const heard = new Map<P2PClient, Set<string>>();
const fellAt = new Map<P2PClient, number>();
/** When each player left the P2P path (its mesh gone: it plays through the gateway from then on). */
const leftAt = new Map<P2PClient, number>();
let armed = false;
let walker: NodeJS.Timeout | undefined;

function status(ps: { mates: string[]; connectedPeers: string[]; relayedPeers: string[] }[]): PeerStatus {
  let mates = 0;
  let relayed = 0;
  let settled = true;
  let lonely = 0;
  for (const p of ps) {
    mates += p.mates.length;
    if (p.mates.length === 0) lonely++;
    relayed += p.relayedPeers.length;
    if (p.connectedPeers.length + p.relayedPeers.length !== p.mates.length) settled = false;
  }
  return { mates, settled, relayed, joined: 0, lonely };
}

async function handle(m: PeerRequest): Promise<unknown> {
  switch (m.op) {
    case "init":
      keyset = m.keyset;
      ice = { ...LOOPBACK_ICE, iceServers: [{ urls: `stun:127.0.0.1:${m.stunPort}` }] };
      if (m.stack === "libdatachannel") {
        const { RTCPeerConnection } = await import("node-datachannel/polyfill");
        (globalThis as unknown as { RTCPeerConnection: unknown }).RTCPeerConnection = RTCPeerConnection;
        rtc = browserRtc;
        maxPendingOffers = 64;
      }
      return {};
    case "mesh":
      meshes = [];
      for (const { id, x, y } of m.peers) {
        meshes.push(
          new MeshClient({
            urls: [m.coordUrl],
            token: await devToken({ keyset, characterId: id, map: m.map }),
            session: `s-${id}`,
            entity: Number.parseInt(id.replace(/\D/g, ""), 10) || 1,
            position: () => ({ x, y }),
            ice,
            rtc,
            maxPendingOffers,
            linkTimeoutMs: 60_000,
          }),
        );
      }
      return {};
    case "go": {
      const t0 = now();
      for (const c of meshes) {
        c.start();
      }
      return { at: t0 };
    }
    case "status": {
      const s = status(meshes);
      s.joined = meshes.filter((c) => c.status === "p2p").length;
      return s;
    }
    case "stop":
      for (const c of meshes) c.stop();
      meshes = [];
      return {};
    case "play": {
      players = [];
      for (const id of m.ids) {
        const token = await devToken({ keyset, characterId: id, map: m.map });
        const p = await P2PClient.connect({
          url: m.gwUrl,
          token,
          coordinators: [m.coordUrl],
          ice,
          rtc,
          maxPendingOffers,
          linkTimeoutMs: 60_000,
        });
        heard.set(p, new Set());
        p.onMessage((msg) => {
          if (msg.type === "chatMsg") heard.get(p)!.add(msg.text);
          if (msg.type === "mode" && msg.mode !== "p2p" && !fellAt.has(p)) fellAt.set(p, now());
        });
        p.onMeshChange = () => {
          if (armed && p.serverMode && !leftAt.has(p)) leftAt.set(p, now());
        };
        players.push(p);
      }
      let tick = 0;
      // Each peer walks now and then: movement over the mesh, positions reported to the gateway.
      walker = setInterval(() => {
        tick++;
        const p = players[tick % players.length];
        p?.move(20 + (tick % 30), 20 + (tick % 7));
      }, 100);
      return {};
    }
    case "pstatus": {
      const s = status(
        players.map((p) => ({
          mates: p.mesh?.mates ?? [],
          connectedPeers: p.connectedPeers,
          relayedPeers: p.mesh?.relayedPeers ?? [],
        })),
      );
      s.joined = players.filter((p) => !p.serverMode).length;
      return s;
    }
    case "arm":
      fellAt.clear();
      leftAt.clear();
      armed = true;
      return {};
    case "fell":
      if (fellAt.size === players.length) armed = false;
      return {
        count: fellAt.size,
        last: Math.max(0, ...fellAt.values()),
        // A player whose mesh was already down when the gateway said so left no later than that.
        left: Math.max(0, ...players.map((p) => leftAt.get(p) ?? fellAt.get(p) ?? 0)),
      };
    case "finish": {
      clearInterval(walker);
      let lost = 0;
      const deadline = Date.now() + 10_000;
      const missing = () =>
        players.reduce((n, p) => n + m.sent.filter((t) => !heard.get(p)!.has(t)).length, 0);
      while (missing() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      lost = missing();
      for (const p of players) lost += p.seqErrors.length;
      await Promise.all(players.map((p) => p.close()));
      players = [];
      return { lost };
    }
    case "exit":
      setTimeout(() => process.exit(0), 10);
      return {};
  }
}

process.on("message", (m: PeerRequest) => {
  handle(m).then(
    (r) => process.send!({ ok: true, r }),
    (err) => process.send!({ ok: false, err: String(err) }),
  );
});
