// Opening a TCP connection to an RO endpoint, for clients: the RO bots (workloads/client/ro.ts)
// and the test client (testkit/ro/client.ts). Nothing of the codec is here, so the test client
// stays independent of the server's packet tables.
import { connect, type Socket } from "node:net";

/** Connects with Nagle off; rejects on a socket error, or after `timeoutMs` (the socket destroyed). */
export function connectRo(host: string, port: number, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host, port, noDelay: true });
    const t = setTimeout(() => {
      s.destroy();
      reject(new Error(`no connection to ${host}:${port}`));
    }, timeoutMs);
    s.once("connect", () => {
      clearTimeout(t);
      resolve(s);
    });
    s.once("error", (e) => {
      clearTimeout(t);
      reject(e);
    });
  });
}
