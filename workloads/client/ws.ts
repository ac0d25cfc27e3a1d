// The SDK's sockets in Node: the `ws` package (permessage-deflate off, as the servers have it),
// over TLS for wss:// URLs with the CA the options or HYBRIDP2P_CA_FILE name.
import { readFileSync } from "node:fs";
import { WebSocket } from "ws";
import type { ClientTls, Socket, SocketFactory } from "./socket.ts";

export const CA_FILE_ENV = "HYBRIDP2P_CA_FILE";

/** Node's TLS options for a client: the CA (given, from its file, or from HYBRIDP2P_CA_FILE) and the name. */
export function nodeTlsOptions(t: ClientTls = {}): { ca?: string | Buffer; servername?: string } {
  let ca: string | Buffer | undefined = t.ca === undefined ? undefined : Buffer.from(t.ca);
  const file = t.caFile ?? (ca === undefined ? process.env[CA_FILE_ENV] || undefined : undefined);
  if (ca === undefined && file) {
    try {
      ca = readFileSync(file);
    } catch (err) {
      const from = t.caFile ? "the CA file" : `${CA_FILE_ENV}`;
      throw new Error(
        `${from} ${file} cannot be read: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
      );
    }
  }
  return { ...(ca ? { ca } : {}), ...(t.serverName ? { servername: t.serverName } : {}) };
}

const CERT_CODES =
  /^(UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED_CERT_IN_CHAIN|DEPTH_ZERO_SELF_SIGNED_CERT|UNABLE_TO_GET_ISSUER_CERT(_LOCALLY)?|CERT_\w+|ERR_TLS_CERT_ALTNAME_INVALID)$/;

/**
 * A certificate the client does not trust, said plainly (the code stays on the error): the
 * usual cause is a Region's own CA the client was not given.
 */
export function explainTlsError(url: string, err: unknown): unknown {
  const code = (err as { code?: unknown })?.code;
  if (typeof code !== "string" || !CERT_CODES.test(code)) return err;
  const e = new Error(
    `${url}: the server's certificate is not trusted (${code}: ${(err as Error).message}); ` +
      `give the Region's CA (its <region>-serving-tls Secret's ca.crt) with --ca-file, ${CA_FILE_ENV} or the SDK's caFile`,
    { cause: err },
  ) as Error & { code: string };
  e.code = code;
  return e;
}

/** A socket factory with these TLS settings (read once, here). */
export function nodeSocketWith(t?: ClientTls): SocketFactory {
  const tls = nodeTlsOptions(t);
  return (url, timeoutMs) =>
    new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { perMessageDeflate: false, handshakeTimeout: timeoutMs, ...tls });
      ws.binaryType = "nodebuffer";
      const sock: Socket = {
        get open() {
          return ws.readyState === WebSocket.OPEN;
        },
        get buffered() {
          return ws.bufferedAmount;
        },
        send: (data) => ws.send(data),
        close: (code, reason) => ws.close(code, reason),
        terminate: () => ws.terminate(),
      };
      ws.on("message", (data: Buffer, isBinary) => {
        if (isBinary) sock.onMessage?.(data);
      });
      ws.on("close", (code, reason) => sock.onClose?.(code, reason.toString()));
      ws.once("open", () => resolve(sock));
      ws.once("error", (err) => reject(explainTlsError(url, err)));
      ws.on("error", () => ws.terminate());
    });
}

/** The default: the system's trust, or the CA HYBRIDP2P_CA_FILE names (read at each connection). */
export const nodeSocket: SocketFactory = (url, timeoutMs) => nodeSocketWith()(url, timeoutMs);
