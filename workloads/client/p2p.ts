// The P2P client: a legacy client that, while its map is in p2p mode, also holds WebRTC data
// channels (werift) with the peers the gateway names, and exchanges movement over them
// directly. Signaling (offer and answer, ICE candidates inside the SDP) is relayed by the
// gateway. Everything server-authoritative still comes over the WebSocket, numbered, so a
// mode switch (a `mode` message in the same sequence) never loses or reorders any of it: on
// leaving p2p mode the client closes its channels and walks through the server again.
import { type RTCDataChannel, RTCPeerConnection, type RTCPeerConnectionConfig } from "werift";
import { decode, encode, type PeerMessage, type ServerMessage } from "../protocol/messages.ts";
import { type ClientOptions, GameClient, open } from "./client.ts";

/** Loopback-friendly ICE settings (shared/notes/webrtc.md); real deployments pass their own. */
export const LOOPBACK_ICE: Partial<RTCPeerConnectionConfig> = {
  iceServers: [],
  iceUseIpv6: false,
  iceAdditionalHostAddresses: ["127.0.0.1"],
  iceFilterCandidatePair: (p) =>
    p.localCandidate.host === "127.0.0.1" && p.remoteCandidate.host === "127.0.0.1",
};

interface Link {
  peer: string;
  entity: number;
  pc: RTCPeerConnection;
  dc?: RTCDataChannel;
  open: boolean;
  timer?: NodeJS.Timeout;
}

interface Signal {
  kind: "offer" | "answer";
  sdp: string;
}

export interface P2PClientOptions extends ClientOptions {
  ice?: Partial<RTCPeerConnectionConfig>;
  /** An offer not answered with an open channel in this long is made again. Default 10 s. */
  linkTimeoutMs?: number;
}

export class P2PClient extends GameClient {
  /** Peer moves received over data channels. */
  peerMoves = 0;
  /** Called for every valid peer message. */
  onPeerMessage?: (from: string, m: PeerMessage) => void;
  private readonly links = new Map<string, Link>();
  /** The mesh the gateway named last: peer session to entity. */
  private readonly wanted = new Map<string, number>();
  private ice: Partial<RTCPeerConnectionConfig> = LOOPBACK_ICE;
  private linkTimeoutMs = 10_000;
  private peerN = 0;

  static override async connect(opts: P2PClientOptions): Promise<P2PClient> {
    const c = new P2PClient(await open(opts.url, opts.timeoutMs), "p2p", true);
    if (opts.ice) c.ice = opts.ice;
    if (opts.linkTimeoutMs) c.linkTimeoutMs = opts.linkTimeoutMs;
    await c.handshake(opts);
    return c;
  }

  /** Peers with an open data channel. */
  get connectedPeers(): string[] {
    return [...this.links.values()].filter((l) => l.open).map((l) => l.peer);
  }

  /**
   * Moves. In p2p mode the position goes to the mesh directly and to the server as a report
   * (legacy clients see it through the gateway); otherwise the server walks the character.
   */
  override move(x: number, y: number): number {
    if (this.mode !== "p2p") return super.move(x, y);
    const frame = Buffer.from(
      encode({ type: "peerMove", entity: this.entity, x, y, t: Date.now(), n: ++this.peerN }),
    );
    for (const l of this.links.values()) if (l.open && l.dc?.readyState === "open") l.dc.send(frame);
    return this.reportPos(x, y);
  }

  override async close() {
    this.closeLinks();
    return super.close();
  }

  protected override apply(m: ServerMessage): void {
    super.apply(m);
    switch (m.type) {
      case "mode":
        if (m.mode !== "p2p") this.closeLinks();
        return;
      case "peers":
        this.reconcile(m.peers);
        return;
      case "signal":
        void this.onSignal(m.peer, m.data).catch(() => this.drop(m.peer));
        return;
      default:
        return;
    }
  }

  private reconcile(peers: { session: string; entity: number }[]): void {
    this.wanted.clear();
    for (const p of peers) this.wanted.set(p.session, p.entity);
    for (const peer of [...this.links.keys()]) if (!this.wanted.has(peer)) this.drop(peer);
    for (const [peer, entity] of this.wanted) {
      const known = this.links.get(peer);
      if (known)
        known.entity = entity; // a new map owner numbers entities anew
      // The lower session id offers; the other answers when the offer arrives.
      else if (this.session < peer) this.startOffer(peer, entity);
    }
    this.report();
  }

  /** Offers, and offers again if no channel opens in time (a lost offer or answer). */
  private startOffer(peer: string, entity: number): void {
    void this.offer(peer, entity).catch(() => this.drop(peer));
    const l = this.links.get(peer);
    if (!l) return;
    l.timer = setTimeout(() => {
      if (this.links.get(peer) !== l || l.open) return;
      this.drop(peer);
      const e = this.wanted.get(peer);
      if (e !== undefined && this.mode === "p2p") this.startOffer(peer, e);
    }, this.linkTimeoutMs);
  }

  private link(peer: string, entity: number): Link {
    const pc = new RTCPeerConnection(this.ice);
    const l: Link = { peer, entity, pc, open: false };
    this.links.set(peer, l);
    pc.onDataChannel.subscribe((dc) => this.wire(l, dc));
    pc.connectionStateChange.subscribe((s) => {
      if (s === "failed" || s === "closed") this.drop(peer);
    });
    return l;
  }

  private wire(l: Link, dc: RTCDataChannel): void {
    l.dc = dc;
    const opened = () => {
      if (l.open || this.links.get(l.peer) !== l) return;
      l.open = true;
      this.report();
    };
    dc.stateChanged.subscribe((s) => {
      if (s === "open") opened();
      else if (s === "closed") this.drop(l.peer);
    });
    if (dc.readyState === "open") opened();
    dc.onMessage.subscribe((data) => {
      if (typeof data === "string") return;
      let m: PeerMessage;
      try {
        m = decode(data, "p2p");
      } catch {
        return; // a peer is not trusted: its garbage is ignored
      }
      // A peer speaks only for its own entity.
      if (m.type !== "peerMove" || m.entity !== l.entity) return;
      this.peerMoves++;
      const e = this.world.get(m.entity);
      if (e) this.world.set(m.entity, { ...e, x: m.x, y: m.y });
      this.onPeerMessage?.(l.peer, m);
    });
  }

  private async offer(peer: string, entity: number): Promise<void> {
    const l = this.link(peer, entity);
    // Movement is superseded by the next one: unordered, no retransmits.
    this.wire(l, l.pc.createDataChannel("move", { ordered: false, maxRetransmits: 0 }));
    await l.pc.setLocalDescription(await l.pc.createOffer());
    await gathered(l.pc);
    this.signal(peer, { kind: "offer", sdp: l.pc.localDescription!.sdp });
  }

  private async onSignal(peer: string, data: string): Promise<void> {
    const s = JSON.parse(data) as Signal;
    if (s.kind === "offer") {
      const entity = this.wanted.get(peer);
      if (entity === undefined || this.session < peer) return; // not our mesh, or we offer
      // A new offer replaces whatever came before (the offerer gave up on it).
      this.drop(peer);
      const l = this.link(peer, entity);
      await l.pc.setRemoteDescription({ type: "offer", sdp: s.sdp });
      await l.pc.setLocalDescription(await l.pc.createAnswer());
      await gathered(l.pc);
      this.signal(peer, { kind: "answer", sdp: l.pc.localDescription!.sdp });
    } else if (s.kind === "answer") {
      const l = this.links.get(peer);
      if (l && l.pc.signalingState === "have-local-offer")
        await l.pc.setRemoteDescription({ type: "answer", sdp: s.sdp });
    }
  }

  private signal(peer: string, s: Signal): void {
    this.send({ type: "signal", peer, data: JSON.stringify(s) });
  }

  /** Tells the gateway which peers it hears directly (it stops relaying their moves). */
  private report(): void {
    this.send({ type: "meshReport", connected: this.connectedPeers });
  }

  private drop(peer: string): void {
    const l = this.links.get(peer);
    if (!l) return;
    clearTimeout(l.timer);
    this.links.delete(peer);
    void l.pc.close().catch(() => undefined);
    if (l.open) this.report();
  }

  private closeLinks(): void {
    for (const l of this.links.values()) {
      clearTimeout(l.timer);
      void l.pc.close().catch(() => undefined);
    }
    this.links.clear();
    this.wanted.clear();
  }
}

function gathered(pc: RTCPeerConnection): Promise<void> {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const { unSubscribe } = pc.iceGatheringStateChange.subscribe((s) => {
      if (s === "complete") {
        unSubscribe();
        resolve();
      }
    });
  });
}
