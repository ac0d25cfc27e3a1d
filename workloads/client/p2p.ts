// The SDK's P2P client: a GameClient that plays through the gateway and, while its P2P client
// config (platform/protocol/p2pconfig.ts, pushed by the gateway in the session's sequence) says
// so, also joins the coordinator's mesh (MeshClient, mesh.ts) and sends its movement to its
// mates over WebRTC data channels.
//
// The config decides, not built-in settings: whether to mesh at all (mode p2p, P2P enabled, a
// WebRTC transport allowed), the coordinators (unless given), the ICE servers (STUN, TURN with
// short-lived credentials), the mesh size, the coordinator timeout and the per-link latency and
// loss limits. A new config version with other ICE servers or coordinators rejoins the mesh.
//
// Everything server-authoritative (combat, chat, loot, mode switches) stays on the gateway's
// numbered stream, so leaving p2p mode (a `mode` message in that stream) loses or reorders
// nothing: the client leaves the mesh and walks through the server again. While the mesh is
// down (coordinator lost, zone or pair on the server relay) it keeps reporting its position to
// the gateway; it tells the gateway which peers it hears directly (`meshReport`), and the
// gateway relays the moves of the rest.
import type { RTCPeerConnectionConfig } from "werift";
import { decode, encode, type PeerMessage, type ServerMessage } from "../../platform/protocol/messages.ts";
import { meshWanted, type P2PClientConfig, parseP2PConfig } from "../../platform/protocol/p2pconfig.ts";
import { type ClientOptions, GameClient, open } from "./client.ts";
import { MeshClient } from "./mesh.ts";
import type { RtcFactory } from "./rtc.ts";

export interface P2PClientOptions extends ClientOptions {
  /** Coordinator replicas (wss:// URLs; ws:// where a Region runs without TLS). Default: the config's. */
  coordinators?: string[];
  /** werift's own settings (the default WebRTC stack). Default LOOPBACK_ICE (mesh.ts). */
  ice?: Partial<RTCPeerConnectionConfig> | ((peer: string) => Partial<RTCPeerConnectionConfig>);
  /** Another WebRTC stack (the browser's). */
  rtc?: RtcFactory;
  linkTimeoutMs?: number;
  /** Links offered at once (MeshClient's maxPendingOffers). */
  maxPendingOffers?: number;
}

export class P2PClient extends GameClient {
  /** The coordinator connection, while the config says to mesh. */
  mesh?: MeshClient;
  /** The P2P client config last received (undefined until the gateway sent one). */
  config?: P2PClientConfig;
  /** Configs received (versions), in order. */
  readonly configVersions: string[] = [];
  /** Peer moves received over data channels. */
  peerMoves = 0;
  /** Called for every valid peer message. */
  onPeerMessage?: (from: string, m: PeerMessage) => void;
  /** Called with every new config. */
  onConfig?: (c: P2PClientConfig) => void;
  /** Called when the mesh's state or links change. */
  onMeshChange?: () => void;
  private readonly opts: P2PClientOptions;
  private x = 0;
  private y = 0;
  private peerN = 0;
  /** What the running mesh was built with (a change rejoins). */
  private meshKey = "";

  protected constructor(ws: GameClient["ws"], opts: P2PClientOptions) {
    super(ws, "p2p", true);
    this.opts = opts;
  }

  static override async connect(opts: P2PClientOptions): Promise<P2PClient> {
    const c = new P2PClient(await open(opts), opts);
    await c.handshake(opts);
    c.sync();
    return c;
  }

  /**
   * Server mode: the gateway says the map is not in p2p mode, or this client has no working
   * mesh (coordinator unreachable, zone fallback declared by the coordinator).
   */
  get serverMode(): boolean {
    return this.mode !== "p2p" || this.mesh?.status !== "p2p";
  }

  /** What to show: P2P (in a working mesh), Fallback (P2P held off), or Server. */
  get badge(): "P2P" | "Server" | "Fallback" {
    if (!this.serverMode) return "P2P";
    if (this.mode === "fallback" || this.mesh?.status === "fallback") return "Fallback";
    return "Server";
  }

  /** Where this client last put itself (welcome, map change, its own moves). */
  get position(): { x: number; y: number } {
    return { x: this.x, y: this.y };
  }

  /** Mates with an open data channel, by peer id (the coordinator's: the character id). */
  get connectedPeers(): string[] {
    return this.mesh?.connectedPeers ?? [];
  }

  /**
   * Moves. In p2p mode the position goes to the mesh directly and to the gateway as a report
   * (legacy clients see it through the gateway); otherwise the server walks the character.
   */
  override move(x: number, y: number): number {
    this.x = x;
    this.y = y;
    if (this.mode !== "p2p") return super.move(x, y);
    if (this.mesh?.status === "p2p")
      this.mesh.broadcast(
        encode({ type: "peerMove", entity: this.entity, x, y, t: Date.now(), n: ++this.peerN }),
      );
    return this.reportPos(x, y);
  }

  override async close() {
    this.stopMesh();
    return super.close();
  }

  protected override apply(m: ServerMessage): void {
    super.apply(m);
    switch (m.type) {
      case "welcome":
        this.x = m.x;
        this.y = m.y;
        this.sync();
        return;
      case "mapChange":
        // A new map or owner numbers entities anew: join again, so mates learn the new entity.
        this.x = m.x;
        this.y = m.y;
        this.stopMesh();
        this.sync();
        return;
      case "mode":
        this.sync();
        return;
      case "p2pConfig": {
        let c: P2PClientConfig;
        try {
          c = parseP2PConfig(m.config);
        } catch (err) {
          this.seqErrors.push(String(err));
          return;
        }
        if (c.version === this.config?.version) return;
        this.config = c;
        this.configVersions.push(c.version);
        this.onConfig?.(c);
        this.sync();
        return;
      }
      default:
        return;
    }
  }

  /** Joins the coordinator while the mode and the config say to mesh, leaves it otherwise. */
  private sync(): void {
    if (!this.session || !this.opts) return; // before the welcome is handled
    const c = this.config;
    // The gateway sends the config right after the welcome: until then, nothing to act on.
    const want = this.mode === "p2p" && c !== undefined && meshWanted({ ...c, mode: this.mode });
    const urls = this.opts.coordinators?.length ? this.opts.coordinators : (c?.coordinators ?? []);
    const key = want ? JSON.stringify([urls, c!.ice.servers, c!.ice.transportPolicy, c!.mesh.maxPeers]) : "";
    if (this.mesh && (!want || key !== this.meshKey)) this.stopMesh();
    if (!want || this.mesh || urls.length === 0) return;
    this.meshKey = key;
    const mesh = new MeshClient({
      urls,
      token: this.opts.token,
      session: this.session,
      entity: this.entity,
      position: () => ({ x: this.x, y: this.y }),
      ice: this.opts.ice,
      rtc: this.opts.rtc,
      socket: this.opts.socket,
      tls: this.opts.tls,
      iceConfig:
        c!.ice.servers.length > 0
          ? { servers: c!.ice.servers, transportPolicy: c!.ice.transportPolicy }
          : undefined,
      maxPeers: c!.mesh.maxPeers,
      linkLimits: { rttMs: c!.fallback.latencyMs.max, lossPercent: c!.fallback.lossPercent.max },
      linkTimeoutMs: this.opts.linkTimeoutMs,
      maxPendingOffers: this.opts.maxPendingOffers,
    });
    mesh.onLinks = () => {
      this.report();
      this.onMeshChange?.();
    };
    mesh.onStatus = () => this.onMeshChange?.();
    mesh.onPeerFrame = (peer, entity, frame) => this.onPeerFrame(peer, entity, frame);
    this.mesh = mesh;
    mesh.start();
  }

  private stopMesh(): void {
    const mesh = this.mesh;
    if (!mesh) return;
    this.mesh = undefined;
    mesh.stop(`map in ${this.mode} mode`);
    this.report();
    this.onMeshChange?.();
  }

  private onPeerFrame(peer: string, entity: number, frame: Uint8Array): void {
    let m: PeerMessage;
    try {
      m = decode(frame, "p2p");
    } catch {
      return; // a peer is not trusted: its garbage is ignored
    }
    // A peer speaks only for its own entity.
    if (m.type !== "peerMove" || m.entity !== entity) return;
    this.peerMoves++;
    const e = this.world.get(m.entity);
    if (e) this.world.set(m.entity, { ...e, x: m.x, y: m.y });
    this.onPeerMessage?.(peer, m);
  }

  /** Tells the gateway which peers it hears directly (it stops relaying their moves). */
  private report(): void {
    const connected = (this.mesh?.connectedSessions ?? []).filter((s) => s !== "").slice(0, 64);
    this.send({ type: "meshReport", connected });
  }
}
