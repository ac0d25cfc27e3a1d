// What the mesh needs from a WebRTC stack, so one MeshClient runs on werift (Node: the SDK and
// the bots, werift.ts) and on a browser's own RTCPeerConnection (workloads/web/rtc.ts). One
// RtcLink is one peer connection with one data channel for the game's peer messages.
//
// Signaling is not trickled: an offer or answer is sent once ICE gathering has completed, with
// every candidate in the SDP (one message each way, which the coordinator forwards).
import type { IceServer } from "../../platform/protocol/p2pconfig.ts";

export interface RtcChannel {
  readonly open: boolean;
  send(data: Uint8Array): void;
  /** Set by the mesh. */
  onOpen?: () => void;
  onClose?: () => void;
  onMessage?: (data: Uint8Array) => void;
}

export interface RtcLink {
  /** The offerer's side: creates the data channel (unordered, no retransmits), returns the offer. */
  offer(): Promise<string>;
  /** The answerer's side: takes the offer, returns the answer (the channel arrives by onChannel). */
  answer(offerSdp: string): Promise<string>;
  acceptAnswer(sdp: string): Promise<void>;
  addCandidate(candidate: string): Promise<void>;
  readonly iceState: string;
  readonly connectionState: string;
  readonly signalingState: string;
  readonly hasRemoteDescription: boolean;
  /** Set by the mesh: the channel created by offer(), or received from the offerer. */
  onChannel?: (ch: RtcChannel) => void;
  /** Set by the mesh: the connection's state ("connected", "failed", "closed", ...). */
  onConnectionState?: (state: string) => void;
  close(): void;
}

/** ICE settings from the P2P client config (the gateway's STUN and TURN servers). */
export interface IceConfig {
  servers: IceServer[];
  transportPolicy: "all" | "relay";
}

/** Makes a link to `peer` with the given ICE settings (undefined: the stack's own defaults). */
export type RtcFactory = (peer: string, ice: IceConfig | undefined) => RtcLink;

/** The signaling steps and states every stack shares, by their W3C names (werift keeps them). */
export interface SdpPeer<D> {
  createOffer(): Promise<D>;
  createAnswer(): Promise<D>;
  setLocalDescription(d: D): Promise<unknown>;
  setRemoteDescription(d: { type: "offer" | "answer"; sdp: string }): Promise<unknown>;
  addIceCandidate(c: never): Promise<unknown>;
  readonly localDescription?: { sdp: string } | null;
  readonly remoteDescription?: unknown;
  readonly iceConnectionState: string;
  readonly connectionState: string;
  readonly signalingState: string;
}

/** One stack's link: offer, answer, candidates and states written once over its SdpPeer. */
export abstract class SdpLink<D> implements RtcLink {
  onChannel?: (ch: RtcChannel) => void;
  onConnectionState?: (state: string) => void;
  protected abstract readonly peer: SdpPeer<D>;
  /** The game's channel: unordered, no retransmits (a move is superseded by the next one). */
  protected abstract createChannel(): RtcChannel;
  /** Resolves when ICE gathering has completed (non-trickle signaling). */
  protected abstract gathered(): Promise<void>;
  abstract close(): void;

  get iceState(): string {
    return this.peer.iceConnectionState;
  }
  get connectionState(): string {
    return this.peer.connectionState;
  }
  get signalingState(): string {
    return this.peer.signalingState;
  }
  get hasRemoteDescription(): boolean {
    return this.peer.remoteDescription !== null && this.peer.remoteDescription !== undefined;
  }

  async offer(): Promise<string> {
    this.onChannel?.(this.createChannel());
    await this.peer.setLocalDescription(await this.peer.createOffer());
    await this.gathered();
    return this.peer.localDescription!.sdp;
  }

  async answer(offerSdp: string): Promise<string> {
    await this.peer.setRemoteDescription({ type: "offer", sdp: offerSdp });
    await this.peer.setLocalDescription(await this.peer.createAnswer());
    await this.gathered();
    return this.peer.localDescription!.sdp;
  }

  async acceptAnswer(sdp: string): Promise<void> {
    await this.peer.setRemoteDescription({ type: "answer", sdp });
  }

  async addCandidate(candidate: string): Promise<void> {
    await this.peer.addIceCandidate(JSON.parse(candidate) as never);
  }
}
