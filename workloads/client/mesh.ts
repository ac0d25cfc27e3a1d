// MeshClient: a P2P client's side of the coordinator (workloads/coordinator). It joins with its
// character token, gateway session and entity; heartbeats its position and link quality; holds
// a werift data channel with each mesh mate the coordinator names (the lower peer id offers);
// and probes its links for round trip, loss and jitter, which the coordinator's fallback
// verdicts read.
//
// It falls back to the server relay (status "fallback": every link closed, the game client
// walks through the gateway) when the coordinator stops answering heartbeats or its socket
// closes, or when the coordinator puts the zone in fallback; it reconnects by itself (any
// replica, with backoff) and goes back to "p2p" once joined again. A pair whose link does not
// open in time is reported and relayed by the server, the rest of the mesh stays direct.
//
// The WebRTC stack and the WebSocket are pluggable (rtc.ts, socket.ts): werift and `ws` in
// Node by default, the browser's own in the browser client (workloads/web).
import type { RTCPeerConnectionConfig } from "werift";
import {
  decodeCoord,
  encodeCoord,
  type FromCoordinator,
  isCoordFrame,
  type ProbeMessage,
  type Quality,
  type ToCoordinator,
} from "../coordinator/messages.ts";
import type { IceConfig, RtcChannel, RtcFactory, RtcLink } from "./rtc.ts";
import type { ClientTls, Socket, SocketFactory } from "./socket.ts";

/** Loopback-friendly ICE settings (shared/notes/webrtc.md); real deployments pass their own. */
export const LOOPBACK_ICE: Partial<RTCPeerConnectionConfig> = {
  iceServers: [],
  iceUseIpv6: false,
  iceAdditionalHostAddresses: ["127.0.0.1"],
  iceFilterCandidatePair: (p) =>
    p.localCandidate.host === "127.0.0.1" && p.remoteCandidate.host === "127.0.0.1",
};

const TERMINAL_REFUSALS = new Set(["auth_failed", "session_ended"]);

export type MeshStatus = "idle" | "connecting" | "p2p" | "fallback";

export interface MeshClientOptions {
  /** Coordinator replicas (ws:// URLs); tried in turn. */
  urls: string[];
  /** The WebRTC stack. Default: werift with `ice`. */
  rtc?: RtcFactory;
  /** The WebSocket. Default: the `ws` package, with `tls`. */
  socket?: SocketFactory;
  /** wss:// trust in Node (the Region's CA; default HYBRIDP2P_CA_FILE, else the system's). */
  tls?: ClientTls;
  /** ICE servers from the P2P client config (they replace the stack's own when it names any). */
  iceConfig?: IceConfig;
  /** Mates beyond this many are not linked (the policy's mesh.maxPeers, counting this peer). */
  maxPeers?: number;
  /**
   * A link whose median round trip or probe loss stays past these (the policy's latency and
   * loss maxima) goes to the server relay.
   */
  linkLimits?: { rttMs: number; lossPercent: number };
  token: string;
  session: string;
  entity: number;
  /** The player's position, sent with heartbeats. */
  position: () => { x: number; y: number };
  /** werift's own settings (the default stack). Default LOOPBACK_ICE. */
  ice?: Partial<RTCPeerConnectionConfig> | ((peer: string) => Partial<RTCPeerConnectionConfig>);
  /** Declared spare uplink, kbit/s (host choice). Default 2000. */
  kbps?: number;
  /**
   * Links this side offers at once; the rest wait their turn. Default 6. A big mesh formed all at
   * once would run hundreds of ICE and DTLS handshakes together, each then too slow for its retry
   * period, and retried attempts only add to the load.
   */
  maxPendingOffers?: number;
  /** A link not open after this long is reported failed and relayed. Default 20 s. */
  linkTimeoutMs?: number;
  /** The offerer retries an attempt whose ICE has not connected after this long (twice at most). Default 4 s. */
  retryMs?: number;
  probeMs?: number;
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
}

interface Link {
  peer: string;
  session: string;
  entity: number;
  pc?: RtcLink;
  dc?: RtcChannel;
  open: boolean;
  /** Exchanges through the server relay (no direct connection). */
  relayed: boolean;
  /** This side makes the offers (and the retries). */
  offerer: boolean;
  /** The coordinator named the peer our mate (peerJoined); false: only its offer came. */
  named: boolean;
  timer?: NodeJS.Timeout;
  retry?: NodeJS.Timeout;
  attempts: number;
  /** The current attempt already got extra time for its DTLS handshake. */
  patient?: boolean;
  /** The offerer's attempt this side last answered. */
  answered?: number;
  /** Holds one of the offer slots (maxPendingOffers) until it opens, fails or goes. */
  slot?: boolean;
  /** The offerer's own candidates, sent once the answer is in (see offer()). */
  held?: { pc: RtcLink; candidates: string[] };
  probes: Map<number, number>;
  rtts: number[];
  outcomes: boolean[];
}

const WINDOW = 20;

export class MeshClient {
  status: MeshStatus = "idle";
  reason = "";
  /** The coordinator's name for this peer, and its replica. */
  peerId = "";
  replica = "";
  zone = "";
  /** Mesh -> host peer, as the coordinator chose them. */
  readonly hosts = new Map<string, string>();
  /** Called on every status change. */
  onStatus?: (status: MeshStatus, reason: string) => void;
  /** Called when the set of open links changes. */
  onLinks?: () => void;
  /** A frame from a mate that is not a probe (the game's peer messages). */
  onPeerFrame?: (peer: string, entity: number, frame: Uint8Array) => void;
  private readonly opts: MeshClientOptions;
  private readonly links = new Map<string, Link>();
  private ws?: Socket;
  private rtc?: RtcFactory;
  private socket?: SocketFactory;
  private running = false;
  private urlIndex = 0;
  private backoff: number;
  private heartbeatMs = 200;
  private timeoutMs = 1500;
  private lastAck = 0;
  private unanswered = 0;
  private hbTimer?: NodeJS.Timeout;
  private probeTimer?: NodeJS.Timeout;
  private retryTimer?: NodeJS.Timeout;
  private probeN = 0;
  private zoneP2P = true;
  /** The current connection attempt (a stale one's socket is dropped). */
  private attempt?: object;
  /** Links waiting to be offered, and offers under way. */
  private readonly offerQueue: Link[] = [];
  private offering = 0;

  constructor(opts: MeshClientOptions) {
    this.opts = opts;
    this.backoff = opts.reconnectMinMs ?? 100;
  }

  /** Peers with an open data channel. */
  get connectedPeers(): string[] {
    return [...this.links.values()].filter((l) => l.open).map((l) => l.peer);
  }

  /** Gateway sessions of the peers heard directly (the gateway stops relaying their moves). */
  get connectedSessions(): string[] {
    return [...this.links.values()].filter((l) => l.open).map((l) => l.session);
  }

  /** Mates the coordinator named, open or not. */
  get mates(): string[] {
    return [...this.links.keys()];
  }

  get relayedPeers(): string[] {
    return [...this.links.values()].filter((l) => l.relayed).map((l) => l.peer);
  }

  /** Each link's state (diagnostics: what a stuck link is waiting for). */
  linkStates(): {
    peer: string;
    open: boolean;
    relayed: boolean;
    attempts: number;
    ice?: string;
    connection?: string;
    signaling?: string;
  }[] {
    return [...this.links.values()].map((l) => ({
      peer: l.peer,
      open: l.open,
      relayed: l.relayed,
      attempts: l.attempts,
      ice: l.pc?.iceState,
      connection: l.pc?.connectionState,
      signaling: l.pc?.signalingState,
    }));
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.setStatus("connecting", "joining the coordinator");
    void this.stacks().then(
      () => this.connect(),
      (err) => this.stop(`no WebRTC stack: ${(err as Error).message}`),
    );
  }

  /** The default stacks (werift, ws) load only when none is given: the browser never loads them. */
  private async stacks(): Promise<void> {
    this.rtc ??= this.opts.rtc ?? (await import("./werift.ts")).weriftRtc(this.opts.ice ?? LOOPBACK_ICE);
    this.socket ??= this.opts.socket ?? (await import("./ws.ts")).nodeSocketWith(this.opts.tls);
  }

  /** New ICE settings (a new P2P client config): links made from now on use them. */
  setIceConfig(ice: IceConfig | undefined): void {
    this.opts.iceConfig = ice;
  }

  /** Leaves the mesh: says goodbye, closes every link, stops reconnecting. */
  stop(reason = "stopped"): void {
    this.running = false;
    this.attempt = undefined;
    clearTimeout(this.retryTimer);
    this.stopTimers();
    this.closeLinks();
    const ws = this.ws;
    this.ws = undefined;
    if (ws?.open) {
      ws.send(encodeCoord({ type: "leave" }));
      ws.close(1000);
    } else ws?.terminate();
    this.setStatus("idle", reason);
  }

  /** Sends a frame to every open link. */
  broadcast(frame: Uint8Array): void {
    for (const l of this.links.values()) if (l.open && l.dc?.open) l.dc.send(frame);
  }

  /** The link quality reported with heartbeats. */
  quality(): Quality {
    const open = [...this.links.values()].filter((l) => l.open);
    const medians = open.filter((l) => l.rtts.length > 0).map((l) => median(l.rtts));
    let lost = 0;
    let total = 0;
    let jitter = 0;
    let jn = 0;
    for (const l of open) {
      total += l.outcomes.length;
      lost += l.outcomes.filter((ok) => !ok).length;
      for (let i = 1; i < l.rtts.length; i++) {
        jitter += Math.abs(l.rtts[i]! - l.rtts[i - 1]!);
        jn++;
      }
    }
    return {
      rttMs: medians.length ? median(medians) : 0,
      lossPercent: total ? (100 * lost) / total : 0,
      jitterMs: jn ? jitter / jn : 0,
      kbps: this.opts.kbps ?? 2000,
      open: open.length,
    };
  }

  // ---- the coordinator connection ---------------------------------------------------------------

  private connect(): void {
    if (!this.running) return;
    const url = this.opts.urls[this.urlIndex % this.opts.urls.length]!;
    const attempt = {};
    this.attempt = attempt;
    this.socket!(url, 10_000).then(
      (ws) => {
        if (this.attempt !== attempt || !this.running) {
          ws.terminate();
          return;
        }
        this.ws = ws;
        ws.onMessage = (data) => {
          if (this.ws !== ws) return;
          let m: FromCoordinator;
          try {
            m = decodeCoord(data, "s2c");
          } catch {
            ws.terminate();
            return;
          }
          this.onMessage(m);
        };
        ws.onClose = () => {
          if (this.ws !== ws) return;
          this.ws = undefined;
          this.lost("coordinator unreachable");
        };
        const p = this.opts.position();
        this.send({
          type: "join",
          token: this.opts.token,
          session: this.opts.session,
          entity: this.opts.entity,
          ...p,
        });
      },
      () => {
        if (this.attempt === attempt) this.lost("coordinator unreachable");
      },
    );
  }

  /** The coordinator is gone: server relay for everything, then try again (next replica). */
  private lost(reason: string): void {
    this.stopTimers();
    this.closeLinks();
    if (!this.running) return;
    this.setStatus("fallback", reason);
    this.urlIndex++;
    const delay = this.backoff;
    this.backoff = Math.min(this.backoff * 2, this.opts.reconnectMaxMs ?? 2000);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  private stopTimers(): void {
    clearInterval(this.hbTimer);
    clearInterval(this.probeTimer);
    this.hbTimer = undefined;
    this.probeTimer = undefined;
  }

  private send(m: ToCoordinator): void {
    if (this.ws?.open) this.ws.send(encodeCoord(m));
  }

  private heartbeat(): void {
    // Misses are heartbeats sent and not answered: a stalled event loop here sends none, so it
    // is not mistaken for a silent coordinator.
    const missed = () => this.unanswered >= this.missLimit() && Date.now() - this.lastAck > this.timeoutMs;
    if (missed()) {
      // After a stall, timers run before the sockets are read: the acks may be waiting there.
      // Judge once they have been read (a zero timeout runs after the next poll phase).
      const ws = this.ws;
      setTimeout(() => {
        if (this.ws !== ws || ws === undefined || !missed()) return;
        // Heartbeat misses, not ICE consent: the coordinator (or the way to it) stopped answering.
        this.ws = undefined;
        ws.terminate();
        this.lost("coordinator stopped answering heartbeats");
      }, 0);
      return;
    }
    const p = this.opts.position();
    this.unanswered++;
    this.send({ type: "heartbeat", t: Date.now(), ...p, q: this.quality() });
  }

  private missLimit(): number {
    return Math.max(2, Math.floor(this.timeoutMs / this.heartbeatMs));
  }

  private onMessage(m: FromCoordinator): void {
    switch (m.type) {
      case "joined":
        this.peerId = m.peer;
        this.zone = m.zone;
        this.replica = m.replica;
        this.heartbeatMs = m.heartbeatMs;
        this.timeoutMs = m.timeoutMs;
        this.lastAck = Date.now();
        this.unanswered = 0;
        this.backoff = this.opts.reconnectMinMs ?? 100;
        this.zoneP2P = true;
        this.stopTimers();
        this.hbTimer = setInterval(() => this.heartbeat(), this.heartbeatMs);
        this.probeTimer = setInterval(() => this.probe(), this.opts.probeMs ?? 1000);
        this.setStatus("p2p", `joined ${m.zone} on ${m.replica}`);
        return;
      case "ack":
        this.lastAck = Date.now();
        this.unanswered = 0;
        return;
      case "zoneMode":
        this.zoneP2P = m.mode === "p2p";
        if (!this.zoneP2P) this.closeLinks();
        this.setStatus(this.zoneP2P ? "p2p" : "fallback", m.reason || `zone ${m.mode}`);
        return;
      case "peerJoined": {
        const known = this.links.get(m.peer);
        if (known) {
          // Its offer came first: now we know who it is.
          known.named = true;
          known.session = m.session;
          known.entity = m.entity;
          if (known.open) this.onLinks?.();
          return;
        }
        // A mesh larger than the policy allows (a coordinator of another policy): the extra
        // mates are not linked; their moves come through the server.
        if (this.opts.maxPeers !== undefined && this.links.size >= this.opts.maxPeers - 1) return;
        const l = this.newLink(m.peer, m.session, m.entity, m.offerer);
        l.named = true;
        if (m.offerer) this.queueOffer(l);
        return;
      }
      case "peerLeft":
        this.drop(m.peer);
        return;
      case "offerFrom":
        void this.answer(m.peer, m.n, m.sdp).catch(() => {
          const l = this.links.get(m.peer);
          if (l) this.fail(l);
        });
        return;
      case "answerFrom": {
        const l = this.links.get(m.peer);
        // Only the answer to the current attempt: one to a replaced offer would never connect.
        if (l?.pc?.signalingState === "have-local-offer" && m.n === l.attempts) {
          const pc = l.pc;
          void pc.acceptAnswer(m.sdp).then(
            () => {
              if (l.pc !== pc || l.held?.pc !== pc) return;
              for (const candidate of l.held.candidates)
                this.send({ type: "candidate", peer: l.peer, candidate });
              l.held = undefined;
            },
            () => this.fail(l),
          );
        }
        return;
      }
      case "candidateFrom": {
        const l = this.links.get(m.peer);
        if (l?.pc) void l.pc.addCandidate(m.candidate).catch(() => undefined);
        return;
      }
      case "relay": {
        const l = this.links.get(m.peer);
        if (l) this.toRelay(l);
        return;
      }
      case "host":
        this.hosts.set(m.mesh, m.peer);
        return;
      case "refused":
        // The token or its login session is no good: retrying cannot help. Other refusals
        // (P2P off in the zone, the gateway not holding the session yet) may pass.
        if (TERMINAL_REFUSALS.has(m.reason)) this.stop(`refused: ${m.reason}: ${m.message}`);
        else this.reason = `${m.reason}: ${m.message}`;
        return;
    }
  }

  private setStatus(s: MeshStatus, reason: string): void {
    this.reason = reason;
    if (s === this.status) return;
    this.status = s;
    this.onStatus?.(s, reason);
  }

  // ---- links ---------------------------------------------------------------------------------------

  private newLink(peer: string, session: string, entity: number, offerer: boolean): Link {
    const l: Link = {
      peer,
      session,
      entity,
      open: false,
      relayed: false,
      offerer,
      named: false,
      attempts: 0,
      probes: new Map(),
      rtts: [],
      outcomes: [],
    };
    this.links.set(peer, l);
    l.timer = setTimeout(() => {
      if (!l.open && this.links.get(peer) === l) this.fail(l);
    }, this.opts.linkTimeoutMs ?? 20_000);
    return l;
  }

  private connection(l: Link): RtcLink {
    const pc = this.rtc!(l.peer, this.opts.iceConfig);
    l.pc = pc;
    pc.onChannel = (dc) => this.wire(l, pc, dc);
    pc.onConnectionState = (s) => {
      if (l.pc !== pc || this.links.get(l.peer) !== l || l.relayed) return; // a replaced attempt
      if (s !== "failed" && s !== "closed") return;
      if (l.open) this.drop(l.peer);
      // Not open yet: the offerer tries again (or gives up after its attempts); the answerer
      // waits for the next offer, since closing the offerer's last attempt also ends this one.
      else if (l.offerer) this.retryOffer(l, pc, true);
    };
    return pc;
  }

  private async offer(l: Link): Promise<void> {
    const pc = this.connection(l);
    // The offer goes without its candidates, which follow once the answer is in. Otherwise the
    // answerer can reach us at once, finishes ICE and sends its first DTLS flight before we have
    // the answer to accept it with, and the handshake waits a whole retransmission timeout (1 s).
    const { sdp, candidates } = holdCandidates(await pc.offer());
    if (this.links.get(l.peer) !== l || l.pc !== pc) return;
    l.held = { pc, candidates };
    this.send({ type: "offer", peer: l.peer, n: l.attempts, sdp });
    clearTimeout(l.retry);
    l.retry = setTimeout(() => this.retryOffer(l, pc), this.opts.retryMs ?? 4000);
  }

  /**
   * An attempt whose ICE has not connected after retryMs is replaced by a fresh one (new
   * connection, new offer): a lost signaling message or a stuck check list costs one retry
   * period, not the whole link timeout.
   */
  private retryOffer(l: Link, pc: RtcLink, failed = false): void {
    if (this.links.get(l.peer) !== l || l.pc !== pc || l.open || l.relayed) return;
    if (l.attempts >= 2) {
      if (failed) this.fail(l);
      return;
    }
    // ICE through but DTLS or SCTP not done yet: a loaded machine may just be slow; give it
    // two more periods before starting over (a stuck DTLS handshake does not recover). Only
    // with the answer in: werift says "completed" as soon as gathering is, so a lost offer or
    // answer would otherwise wait three periods.
    const ice = pc.iceState;
    const through = pc.hasRemoteDescription && (ice === "connected" || ice === "completed");
    if (!failed && through && !l.patient) {
      l.patient = true;
      l.retry = setTimeout(() => this.retryOffer(l, pc), 2 * (this.opts.retryMs ?? 4000));
      return;
    }
    l.attempts++;
    l.patient = false;
    l.pc = undefined; // before closing: the old attempt's "closed" must not count as this one's
    pc.close();
    void this.offer(l).catch(() => this.fail(l));
  }

  private async answer(peer: string, n: number, sdp: string): Promise<void> {
    // An offer may come before the coordinator named the peer to us (views converge): the
    // coordinator only forwards it between mates of one zone, so it is accepted.
    const l = this.links.get(peer) ?? this.newLink(peer, "", 0, false);
    if (l.relayed || l.open) return;
    if (l.pc && l.answered !== undefined && n <= l.answered) return; // stale or repeated
    // A newer offer for a link not yet open is the offerer's retry: it replaces our attempt.
    l.answered = n;
    // The link timeout counts from the first offer (the offerer may have queued it a while).
    if (n === 0) {
      clearTimeout(l.timer);
      l.timer = setTimeout(() => {
        if (!l.open && this.links.get(peer) === l) this.fail(l);
      }, this.opts.linkTimeoutMs ?? 20_000);
    }
    const old = l.pc;
    l.pc = undefined;
    old?.close();
    const pc = this.connection(l);
    const answer = await pc.answer(sdp);
    if (!this.current(l, pc)) return;
    this.send({ type: "answer", peer, n, sdp: answer });
  }

  /** Whether `pc` is still the link's live attempt. */
  private current(l: Link, pc: RtcLink): boolean {
    return this.links.get(l.peer) === l && l.pc === pc;
  }

  private wire(l: Link, pc: RtcLink, dc: RtcChannel): void {
    const current = () => this.links.get(l.peer) === l && l.pc === pc;
    const opened = () => {
      if (l.open || !current()) return;
      l.open = true;
      l.dc = dc;
      clearTimeout(l.timer);
      clearTimeout(l.retry);
      this.send({ type: "link", peer: l.peer, state: "open" });
      this.onLinks?.();
      this.releaseSlot(l);
    };
    dc.onOpen = opened;
    dc.onClose = () => {
      if (current() && l.open) this.drop(l.peer);
    };
    dc.onMessage = (data) => {
      if (isCoordFrame(data)) this.onProbe(l, data);
      else this.onPeerFrame?.(l.peer, l.entity, data);
    };
    if (dc.open) opened();
  }

  private onProbe(l: Link, frame: Uint8Array): void {
    let m: ProbeMessage;
    try {
      m = decodeCoord(frame, "p2p");
    } catch {
      return; // a peer is not trusted
    }
    if (m.type === "probe") {
      if (l.dc?.open) l.dc.send(encodeCoord({ type: "probeAck", n: m.n, t: m.t }));
      return;
    }
    const sent = l.probes.get(m.n);
    if (sent === undefined) return;
    l.probes.delete(m.n);
    push(l.rtts, performance.now() - sent);
    push(l.outcomes, true);
  }

  private probe(): void {
    const now = performance.now();
    const limits = this.opts.linkLimits;
    for (const l of [...this.links.values()]) {
      if (!l.open || !l.dc?.open) continue;
      if (limits && l.rtts.length >= 5) {
        const lost = l.outcomes.filter((ok) => !ok).length;
        if (median(l.rtts) > limits.rttMs || (100 * lost) / l.outcomes.length > limits.lossPercent) {
          this.fail(l);
          continue;
        }
      }
      // Unanswered for three periods: lost.
      for (const [n, t] of l.probes)
        if (now - t > 3 * (this.opts.probeMs ?? 1000)) {
          l.probes.delete(n);
          push(l.outcomes, false);
        }
      const n = ++this.probeN;
      l.probes.set(n, now);
      l.dc.send(encodeCoord({ type: "probe", n, t: Date.now() }));
    }
  }

  /** The direct connection could not be made: report it; the pair goes through the server relay. */
  private queueOffer(l: Link): void {
    this.offerQueue.push(l);
    this.pumpOffers();
  }

  /** Starts queued offers while slots are free (a link that went meanwhile is skipped). */
  private pumpOffers(): void {
    const max = this.opts.maxPendingOffers ?? 6;
    while (this.offering < max && this.offerQueue.length > 0) {
      const l = this.offerQueue.shift()!;
      if (this.links.get(l.peer) !== l || l.open || l.relayed) continue;
      l.slot = true;
      this.offering++;
      // The link timeout counts from its first offer, not from its time in the queue.
      clearTimeout(l.timer);
      l.timer = setTimeout(() => {
        if (!l.open && this.links.get(l.peer) === l) this.fail(l);
      }, this.opts.linkTimeoutMs ?? 20_000);
      void this.offer(l).catch(() => this.fail(l));
    }
  }

  private releaseSlot(l: Link): void {
    if (!l.slot) return;
    l.slot = false;
    this.offering--;
    this.pumpOffers();
  }

  private fail(l: Link): void {
    if (this.links.get(l.peer) !== l || l.relayed) return;
    // Only an offer came, and the coordinator never named the peer our mate (the offerer's
    // view moved on: its links were recomputed): nothing to relay, the link just goes.
    if (!l.named) {
      this.drop(l.peer);
      return;
    }
    this.send({ type: "link", peer: l.peer, state: "failed" });
    this.toRelay(l);
  }

  private toRelay(l: Link): void {
    this.releaseSlot(l);
    const wasOpen = l.open;
    l.relayed = true;
    l.open = false;
    clearTimeout(l.timer);
    clearTimeout(l.retry);
    l.pc?.close();
    l.pc = undefined;
    l.dc = undefined;
    if (wasOpen) this.onLinks?.();
  }

  private drop(peer: string): void {
    const l = this.links.get(peer);
    if (!l) return;
    this.links.delete(peer);
    this.releaseSlot(l);
    clearTimeout(l.timer);
    clearTimeout(l.retry);
    l.pc?.close();
    if (l.open) {
      this.send({ type: "link", peer, state: "closed" });
      this.onLinks?.();
    }
  }

  private closeLinks(): void {
    const hadOpen = this.connectedPeers.length > 0;
    const links = [...this.links.values()];
    this.links.clear(); // first: the connections' "closed" events then find nothing to do
    this.offerQueue.length = 0;
    this.offering = 0;
    for (const l of links) {
      clearTimeout(l.timer);
      clearTimeout(l.retry);
      l.pc?.close();
    }
    if (hadOpen) this.onLinks?.();
  }
}

function push<T>(xs: T[], x: T): void {
  xs.push(x);
  if (xs.length > WINDOW) xs.shift();
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/**
 * Splits an SDP into the SDP without its candidates and the candidates, as trickled ICE
 * candidates (JSON of RTCIceCandidateInit) for the data channel's media section.
 */
export function holdCandidates(sdp: string): { sdp: string; candidates: string[] } {
  const lines = sdp.split(/\r?\n/);
  const mid = lines.find((x) => x.startsWith("a=mid:"))?.slice("a=mid:".length) ?? "0";
  const candidates = lines
    .filter((x) => x.startsWith("a=candidate:"))
    .map((x) => JSON.stringify({ candidate: x.slice(2), sdpMid: mid, sdpMLineIndex: 0 }));
  const kept = lines.filter((x) => !x.startsWith("a=candidate:") && x !== "a=end-of-candidates");
  return { sdp: kept.join("\r\n"), candidates };
}
