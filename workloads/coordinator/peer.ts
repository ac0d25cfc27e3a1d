// MeshPeer: a P2P game client whose meshes come from the coordinator (MeshClient) instead of
// the gateway. Everything server-authoritative still arrives over the gateway's WebSocket,
// numbered; the gateway's `mode` message says when the map is in p2p mode, and only then does
// the peer join the coordinator and send movement over its data channels. When the mesh is
// down (coordinator lost, zone or pair on the server relay) it keeps playing through the
// gateway: it reports the peers it hears directly (`meshReport`), and the gateway relays the rest.
import type { RTCPeerConnectionConfig } from "werift";
import { type ClientOptions, GameClient, open } from "../client/client.ts";
import { decode, encode, type PeerMessage, type ServerMessage } from "../protocol/messages.ts";
import { MeshClient } from "./client.ts";

export interface MeshPeerOptions extends ClientOptions {
  /** Coordinator replicas (ws:// URLs). */
  coordinators: string[];
  ice?: Partial<RTCPeerConnectionConfig> | ((peer: string) => Partial<RTCPeerConnectionConfig>);
  linkTimeoutMs?: number;
}

export class MeshPeer extends GameClient {
  mesh?: MeshClient;
  /** Peer moves received over data channels. */
  peerMoves = 0;
  onPeerMessage?: (from: string, m: PeerMessage) => void;
  private readonly opts: MeshPeerOptions;
  private x = 0;
  private y = 0;
  private peerN = 0;

  protected constructor(ws: GameClient["ws"], opts: MeshPeerOptions) {
    super(ws, "p2p", true);
    this.opts = opts;
  }

  static async join(opts: MeshPeerOptions): Promise<MeshPeer> {
    const c = new MeshPeer(await open(opts.url), opts);
    await c.handshake(opts);
    c.sync();
    return c;
  }

  /**
   * Server mode: the gateway says the map is not in p2p mode, or this peer has no working mesh
   * (coordinator unreachable, zone fallback declared by the coordinator).
   */
  get serverMode(): boolean {
    return this.mode !== "p2p" || this.mesh?.status !== "p2p";
  }

  get connectedPeers(): string[] {
    return this.mesh?.connectedPeers ?? [];
  }

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
      case "mapChange":
        this.x = m.x;
        this.y = m.y;
        this.sync();
        return;
      case "mode":
        this.sync();
        return;
      default:
        return;
    }
  }

  /** Joins the coordinator while the map is in p2p mode, leaves it otherwise. */
  private sync(): void {
    if (!this.session || !this.opts) return; // before the welcome is handled
    if (this.mode === "p2p" && !this.mesh) {
      const mesh = new MeshClient({
        urls: this.opts.coordinators,
        token: this.opts.token,
        session: this.session,
        entity: this.entity,
        position: () => ({ x: this.x, y: this.y }),
        ice: this.opts.ice,
        linkTimeoutMs: this.opts.linkTimeoutMs,
      });
      mesh.onLinks = () => this.report();
      mesh.onPeerFrame = (peer, entity, frame) => this.onPeerFrame(peer, entity, frame);
      this.mesh = mesh;
      mesh.start();
    } else if (this.mode !== "p2p" && this.mesh) {
      this.stopMesh();
    }
  }

  private stopMesh(): void {
    const mesh = this.mesh;
    if (!mesh) return;
    this.mesh = undefined;
    mesh.stop(`map in ${this.mode} mode`);
    this.report();
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
