// The browser client, served by the gateway on its client port (same origin as its WebSocket):
//   GET /            -> 302 /play/
//   GET /play/...    the static bundle (workloads/web): index.html, style.css, ES modules
//   GET /v1/region   what the page needs to find the rest of the region: the login and char
//                    servers' public URLs (the page signs up, logs in and picks a character
//                    there) and the coordinators'
// The bundle is read from a directory the image build wrote (`node workloads/web/bundle.ts DIR`),
// or built in memory at start when there is none (development, tests).
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import { extname, join, relative } from "node:path";
import { buildWebBundle, CONTENT_TYPES } from "../web/bundle.ts";

export interface RegionInfo {
  /** The login server's public URL (http(s)://...), as the browser reaches it. */
  loginUrl?: string;
  charUrl?: string;
  /** Coordinator replicas (ws(s)://...). */
  coordinators?: string[];
}

export interface WebOptions {
  /** A bundle directory; absent or missing: built in memory at start. */
  dir?: string;
  region: RegionInfo;
}

interface File {
  body: Buffer;
  type: string;
  etag: string;
}

function readDir(dir: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else out.set(relative(dir, p), readFileSync(p));
    }
  };
  walk(dir);
  return out;
}

export class WebServer {
  private readonly files = new Map<string, File>();
  private readonly region: RegionInfo;

  constructor(opts: WebOptions) {
    this.region = opts.region;
    const raw = opts.dir && existsSync(join(opts.dir, "index.html")) ? readDir(opts.dir) : buildWebBundle();
    for (const [path, body] of raw)
      this.files.set(path, {
        body,
        type: CONTENT_TYPES[extname(path)] ?? "application/octet-stream",
        etag: `"${createHash("sha256").update(body).digest("base64url").slice(0, 16)}"`,
      });
  }

  /** Serves the request when it is ours; false otherwise. */
  handle(req: IncomingMessage, res: ServerResponse, path: string): boolean {
    if (req.method !== "GET" && req.method !== "HEAD") return false;
    if (path === "/") {
      res.writeHead(302, { location: "/play/" }).end();
      return true;
    }
    if (path === "/v1/region") {
      res
        .writeHead(200, { "content-type": "application/json", "cache-control": "no-cache" })
        .end(JSON.stringify({ v: 1, ...this.region }));
      return true;
    }
    if (path === "/favicon.ico") {
      res.writeHead(204).end();
      return true;
    }
    if (path === "/play") {
      res.writeHead(301, { location: "/play/" }).end();
      return true;
    }
    if (!path.startsWith("/play/")) return false;
    const key = path === "/play/" ? "index.html" : decodeURIComponent(path.slice("/play/".length));
    const f = this.files.get(key);
    if (!f) {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
      return true;
    }
    const headers = { "content-type": f.type, etag: f.etag, "cache-control": "no-cache" };
    if (req.headers["if-none-match"] === f.etag) res.writeHead(304, headers).end();
    else res.writeHead(200, headers).end(req.method === "HEAD" ? undefined : f.body);
    return true;
  }
}
