// The mesh's WebRTC stack in Node: werift (pure TypeScript). `extra` is werift's own settings
// (LOOPBACK_ICE and a loopback STUN server in tests); ICE servers from the P2P client config
// replace its iceServers when the config names any.
import { type RTCDataChannel, RTCPeerConnection, type RTCPeerConnectionConfig } from "werift";
import { type IceConfig, type RtcChannel, type RtcFactory, SdpLink, type SdpPeer } from "./rtc.ts";

export type WeriftIce =
  | Partial<RTCPeerConnectionConfig>
  | ((peer: string) => Partial<RTCPeerConnectionConfig>);

export function weriftRtc(extra: WeriftIce): RtcFactory {
  return (peer, ice) => {
    const base = typeof extra === "function" ? extra(peer) : extra;
    return new WeriftLink({ ...base, ...fromConfig(ice) });
  };
}

function fromConfig(ice: IceConfig | undefined): Partial<RTCPeerConnectionConfig> {
  if (!ice || ice.servers.length === 0) return {};
  return {
    // werift takes one URL per server entry.
    iceServers: ice.servers.flatMap((s) =>
      s.urls.map((urls) => ({ urls, username: s.username, credential: s.credential })),
    ),
    iceTransportPolicy: ice.transportPolicy,
  };
}

class WeriftChannel implements RtcChannel {
  onOpen?: () => void;
  onClose?: () => void;
  onMessage?: (data: Uint8Array) => void;
  private readonly dc: RTCDataChannel;

  constructor(dc: RTCDataChannel) {
    this.dc = dc;
    dc.stateChanged.subscribe((st) => {
      if (st === "open") this.onOpen?.();
      else if (st === "closed") this.onClose?.();
    });
    dc.onMessage.subscribe((data) => {
      if (typeof data !== "string") this.onMessage?.(data);
    });
  }

  get open(): boolean {
    return this.dc.readyState === "open";
  }

  send(data: Uint8Array): void {
    if (this.open) this.dc.send(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
  }
}

class WeriftLink extends SdpLink<unknown> {
  private readonly pc: RTCPeerConnection;
  protected readonly peer: SdpPeer<unknown>;

  constructor(config: Partial<RTCPeerConnectionConfig>) {
    super();
    this.pc = new RTCPeerConnection(config);
    this.peer = this.pc as unknown as SdpPeer<unknown>;
    this.pc.onDataChannel.subscribe((dc) => this.onChannel?.(new WeriftChannel(dc)));
    this.pc.connectionStateChange.subscribe((s) => this.onConnectionState?.(s));
  }

  protected createChannel(): RtcChannel {
    return new WeriftChannel(this.pc.createDataChannel("mesh", { ordered: false, maxRetransmits: 0 }));
  }

  close(): void {
    void this.pc.close().catch(() => undefined);
  }

  protected gathered(): Promise<void> {
    if (this.pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const { unSubscribe } = this.pc.iceGatheringStateChange.subscribe((s) => {
        if (s === "complete") {
          unSubscribe();
          resolve();
        }
      });
    });
  }
}
