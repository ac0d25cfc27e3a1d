// The few browser APIs the browser client uses, typed here: the project type-checks against
// Node's types only (a DOM lib would change Node's globals for every other file).

export interface El {
  id: string;
  textContent: string | null;
  value: string;
  hidden: boolean;
  className: string;
  disabled: boolean;
  innerHTML: string;
  dataset: Record<string, string | undefined>;
  addEventListener(type: string, fn: (ev: Ev) => void): void;
  appendChild(child: El): El;
  querySelector(sel: string): El | null;
  scrollTop: number;
  scrollHeight: number;
  focus(): void;
}

export interface Ev {
  preventDefault(): void;
  key: string;
  offsetX: number;
  offsetY: number;
  target: unknown;
}

export interface Canvas extends El {
  width: number;
  height: number;
  getContext(kind: "2d"): Ctx2D;
}

export interface Ctx2D {
  fillStyle: string;
  strokeStyle: string;
  lineWidth: number;
  font: string;
  textAlign: string;
  fillRect(x: number, y: number, w: number, h: number): void;
  strokeRect(x: number, y: number, w: number, h: number): void;
  beginPath(): void;
  arc(x: number, y: number, r: number, a0: number, a1: number): void;
  fill(): void;
  stroke(): void;
  fillText(text: string, x: number, y: number): void;
}

export interface BrowserDataChannel {
  binaryType: string;
  readonly readyState: string;
  send(data: Uint8Array): void;
  close(): void;
  onopen: (() => void) | null;
  onclose: (() => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
}

export interface BrowserPeerConnection {
  readonly iceConnectionState: string;
  readonly connectionState: string;
  readonly signalingState: string;
  readonly iceGatheringState: string;
  readonly remoteDescription: unknown;
  readonly localDescription: { sdp: string } | null;
  createDataChannel(label: string, opts: { ordered: boolean; maxRetransmits: number }): BrowserDataChannel;
  createOffer(): Promise<{ type: string; sdp?: string }>;
  createAnswer(): Promise<{ type: string; sdp?: string }>;
  setLocalDescription(d: { type: string; sdp?: string }): Promise<void>;
  setRemoteDescription(d: { type: string; sdp: string }): Promise<void>;
  addIceCandidate(c: unknown): Promise<void>;
  close(): void;
  ondatachannel: ((ev: { channel: BrowserDataChannel }) => void) | null;
  onconnectionstatechange: (() => void) | null;
  onicegatheringstatechange: (() => void) | null;
}

export interface Browser {
  document: {
    getElementById(id: string): El | null;
    createElement(tag: string): El;
    addEventListener(type: string, fn: (ev: Ev) => void): void;
  };
  location: { protocol: string; host: string; search: string };
  RTCPeerConnection: new (config: {
    iceServers: { urls: string[]; username?: string; credential?: string }[];
    iceTransportPolicy: string;
  }) => BrowserPeerConnection;
  requestAnimationFrame(fn: () => void): void;
}

export const browser = globalThis as unknown as Browser;

export function byId<T extends El = El>(id: string): T {
  const el = browser.document.getElementById(id);
  if (!el) throw new Error(`no element #${id}`);
  return el as T;
}
