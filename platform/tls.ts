// Serving TLS for the player-facing listeners (gateway and coordinator: wss; login and char
// servers: https), in this one place. The certificate is a kubernetes.io/tls Secret mounted as a
// directory (tls.crt, tls.key, ca.crt), named by HYBRIDP2P_SERVING_TLS_DIR: what the operator
// makes per Region, or what cert-manager writes. Both rotate it in place (a Secret volume swaps
// a symlink), so the files are read again periodically and a changed pair becomes the server's
// secure context for new connections; open ones keep theirs.
import { readFileSync } from "node:fs";
import { createServer as createHttpServer, type RequestListener, type Server } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import { join } from "node:path";
import type { Logger } from "./log.ts";

export const SERVING_TLS_DIR_ENV = "HYBRIDP2P_SERVING_TLS_DIR";

export interface ServingTls {
  /** The directory holding tls.crt and tls.key (a mounted kubernetes.io/tls Secret). */
  dir: string;
  /** How often the files are checked for a new certificate. Default 30 s; 0: never. */
  reloadMs?: number;
  log?: Logger;
}

export interface KeyPair {
  cert: string;
  key: string;
}

/** Reads tls.crt and tls.key from the directory; a missing or unreadable file is a clear error. */
export function readKeyPair(dir: string): KeyPair {
  const read = (name: string) => {
    try {
      return readFileSync(join(dir, name), "utf8");
    } catch (err) {
      throw new Error(
        `serving TLS: cannot read ${join(dir, name)} (${(err as NodeJS.ErrnoException).code ?? String(err)}); ` +
          `${SERVING_TLS_DIR_ENV} must name a directory with tls.crt and tls.key`,
      );
    }
  };
  return { cert: read("tls.crt"), key: read("tls.key") };
}

/**
 * An HTTP server, or an HTTPS one serving the pair in `tls.dir` (reloaded when it changes).
 * The https server is an http.Server to its users: the same request and upgrade events.
 */
export function createServingServer(handler: RequestListener, tls?: ServingTls): Server {
  if (!tls) return createHttpServer(handler);
  let pair = readKeyPair(tls.dir);
  const server = createHttpsServer({ ...pair, minVersion: "TLSv1.2" }, handler);
  const every = tls.reloadMs ?? 30_000;
  if (every > 0) {
    const timer = setInterval(() => {
      let next: KeyPair;
      try {
        next = readKeyPair(tls.dir);
      } catch (err) {
        tls.log?.warn("serving TLS: keeping the current certificate", { err: String(err) });
        return;
      }
      if (next.cert === pair.cert && next.key === pair.key) return;
      try {
        // Throws when the key does not match the certificate (a half-written pair): keep the
        // old one and try again on the next tick.
        server.setSecureContext({ ...next, minVersion: "TLSv1.2" });
        pair = next;
        tls.log?.info("serving TLS: certificate reloaded", { dir: tls.dir });
      } catch (err) {
        tls.log?.warn("serving TLS: new certificate refused; keeping the current one", { err: String(err) });
      }
    }, every);
    timer.unref();
    server.once("close", () => clearInterval(timer));
  }
  return server;
}

/** The URL scheme of a listener: wss/https with TLS, ws/http without. */
export function schemeOf(tls: ServingTls | undefined, kind: "ws" | "http"): string {
  return tls ? `${kind}s` : kind;
}
