// The one WebSocket shape the client SDK uses, so the same GameClient and MeshClient run in Node
// (the `ws` package, ws.ts) and in a browser (its own WebSocket, w3cSocket below).

export interface Socket {
  readonly open: boolean;
  /** Bytes queued and not yet sent. */
  readonly buffered: number;
  send(data: Uint8Array): void;
  /** A closing handshake. */
  close(code?: number, reason?: string): void;
  /** Gone now, no handshake. */
  terminate(): void;
  /** Set once, before any message can arrive (the factory resolves before the first read). */
  onMessage?: (data: Uint8Array) => void;
  onClose?: (code: number, reason: string) => void;
}

/**
 * TLS of the SDK's wss:// and https:// connections in Node (ws.ts, https.ts); a browser uses
 * its own trust store. Without a CA, the system's trust (public CAs).
 */
export interface ClientTls {
  /** PEM CA certificate(s) to trust: the Region's CA (its `<region>-serving-tls` ca.crt). */
  ca?: string | Uint8Array;
  /** A PEM file of them (what `--ca-file` names). Default: the file HYBRIDP2P_CA_FILE names. */
  caFile?: string;
  /** Check the server's certificate for this name instead of the URL's host (dialling an IP). */
  serverName?: string;
}

/** Opens a socket; resolves once it is open, rejects when it cannot be. */
export type SocketFactory = (url: string, timeoutMs: number) => Promise<Socket>;

interface W3CWebSocket {
  binaryType: string;
  readonly readyState: number;
  readonly bufferedAmount: number;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
}

/** A socket on the platform's own WebSocket (browsers; Node 22+ has one too). */
export const w3cSocket: SocketFactory = (url, timeoutMs) =>
  new Promise((resolve, reject) => {
    const Ctor = (globalThis as unknown as { WebSocket: new (url: string) => W3CWebSocket }).WebSocket;
    const ws = new Ctor(url);
    ws.binaryType = "arraybuffer";
    let closed = false;
    const sock: Socket = {
      get open() {
        return ws.readyState === 1;
      },
      get buffered() {
        return ws.bufferedAmount;
      },
      send: (data) => ws.send(data),
      close: (code, reason) => ws.close(code, reason),
      terminate: () => {
        ws.close();
        finish(1006, "terminated");
      },
    };
    const finish = (code: number, reason: string) => {
      if (closed) return;
      closed = true;
      sock.onClose?.(code, reason);
    };
    const timer = setTimeout(() => {
      ws.close();
      reject(new Error(`${url}: not open within ${timeoutMs} ms`));
    }, timeoutMs);
    ws.onopen = () => {
      clearTimeout(timer);
      resolve(sock);
    };
    ws.onerror = () => {
      clearTimeout(timer);
      reject(new Error(`${url}: connection failed`));
    };
    ws.onclose = (ev) => {
      clearTimeout(timer);
      finish(ev.code, ev.reason);
    };
    ws.onmessage = (ev) => {
      if (ev.data instanceof ArrayBuffer) sock.onMessage?.(new Uint8Array(ev.data));
    };
  });
