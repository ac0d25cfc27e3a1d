// The mesh's WebRTC stack in the browser: its own RTCPeerConnection (workloads/client/rtc.ts).
// ICE servers come from the P2P client config; without any, host candidates only.
import { type IceConfig, type RtcChannel, type RtcFactory, SdpLink, type SdpPeer } from "../client/rtc.ts";
import { type BrowserDataChannel, type BrowserPeerConnection, browser } from "./dom.ts";

export const browserRtc: RtcFactory = (_peer, ice) => new BrowserLink(ice);

class BrowserChannel implements RtcChannel {
  onOpen?: () => void;
  onClose?: () => void;
  onMessage?: (data: Uint8Array) => void;
  private readonly dc: BrowserDataChannel;

  constructor(dc: BrowserDataChannel) {
    this.dc = dc;
    dc.binaryType = "arraybuffer";
    dc.onopen = () => this.onOpen?.();
    dc.onclose = () => this.onClose?.();
    dc.onmessage = (ev) => {
      if (ev.data instanceof ArrayBuffer) this.onMessage?.(new Uint8Array(ev.data));
    };
  }

  get open(): boolean {
    return this.dc.readyState === "open";
  }

  send(data: Uint8Array): void {
    if (!this.open) return;
    try {
      this.dc.send(data);
    } catch {
      // Closing under our feet: the close event follows and the mesh drops the link.
    }
  }
}

class BrowserLink extends SdpLink<unknown> {
  private readonly pc: BrowserPeerConnection;
  protected readonly peer: SdpPeer<unknown>;

  constructor(ice: IceConfig | undefined) {
    super();
    this.pc = new browser.RTCPeerConnection({
      iceServers: ice?.servers ?? [],
      iceTransportPolicy: ice?.transportPolicy ?? "all",
    });
    this.peer = this.pc as unknown as SdpPeer<unknown>;
    this.pc.ondatachannel = (ev) => this.onChannel?.(new BrowserChannel(ev.channel));
    this.pc.onconnectionstatechange = () => this.onConnectionState?.(this.pc.connectionState);
  }

  protected createChannel(): RtcChannel {
    return new BrowserChannel(this.pc.createDataChannel("mesh", { ordered: false, maxRetransmits: 0 }));
  }

  close(): void {
    this.pc.close();
  }

  protected gathered(): Promise<void> {
    if (this.pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        if (this.pc.iceGatheringState === "complete") resolve();
      };
      this.pc.onicegatheringstatechange = done;
      // A gathering that waits on an unreachable STUN or TURN server is cut short: what was
      // gathered by then goes.
      setTimeout(resolve, 3000);
    });
  }
}
