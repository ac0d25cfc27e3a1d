// HTTP for every workload: the ops endpoints (/healthz, /readyz on the health port, /metrics on
// the metrics port, both from config.ts) and small helpers for JSON APIs on node:http: a router,
// bodies read with a size limit and validated against a TypeBox schema, errors as clear 4xx
// JSON, per-route request metrics, and a graceful close.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import type { Static, TSchema } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { Counter, collectDefaultMetrics, Histogram, Registry } from "prom-client";
import type { Logger } from "./log.ts";
import { createServingServer, type ServingTls } from "./tls.ts";

// ---- errors and bodies ------------------------------------------------------------------

export class HttpError extends Error {
  readonly status: number;
  readonly code: string;
  readonly headers: Record<string, string>;
  readonly details: unknown;
  constructor(
    status: number,
    code: string,
    message: string,
    opts: { headers?: Record<string, string>; details?: unknown } = {},
  ) {
    super(message);
    this.name = "HttpError";
    this.status = status;
    this.code = code;
    this.headers = opts.headers ?? {};
    this.details = opts.details;
  }
}

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = body === undefined ? "" : JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "cache-control": "no-store",
    "content-length": Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

/** Reads the whole body as JSON, refusing more than `limit` bytes (413) and non-JSON (415/400). */
export async function readJson(req: IncomingMessage, limit: number): Promise<unknown> {
  const type = req.headers["content-type"] ?? "";
  if (!/^application\/json\b/i.test(type)) {
    throw new HttpError(
      415,
      "unsupported_media_type",
      "the body must be JSON (content-type: application/json)",
    );
  }
  const declared = Number(req.headers["content-length"] ?? "NaN");
  if (Number.isFinite(declared) && declared > limit) {
    req.resume();
    throw new HttpError(413, "body_too_large", `the body must be at most ${limit} bytes`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) {
      req.resume();
      throw new HttpError(413, "body_too_large", `the body must be at most ${limit} bytes`);
    }
    chunks.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString("utf8"));
  } catch {
    throw new HttpError(400, "invalid_json", "the body is not valid JSON");
  }
}

/** Checks a value against a schema; the first problems become a 400 naming the fields. */
export function validate<S extends TSchema>(schema: S, value: unknown): Static<S> {
  if (Value.Check(schema, value)) return value as Static<S>;
  const problems = [...Value.Errors(schema, value)].slice(0, 5).map((e) => ({
    field: e.path === "" ? "(body)" : e.path.slice(1).replaceAll("/", "."),
    message: e.schema.description ?? e.message,
  }));
  const first = problems[0];
  throw new HttpError(
    400,
    "invalid_request",
    first ? `${first.field}: ${first.message}` : "invalid request",
    {
      details: problems,
    },
  );
}

export async function readBody<S extends TSchema>(
  req: IncomingMessage,
  schema: S,
  limit = 4096,
): Promise<Static<S>> {
  return validate(schema, await readJson(req, limit));
}

export function bearerToken(req: IncomingMessage): string {
  const h = req.headers.authorization ?? "";
  const m = /^Bearer\s+([A-Za-z0-9._~+/=-]+)$/i.exec(h);
  if (!m?.[1])
    throw new HttpError(401, "unauthenticated", "missing or malformed Authorization: Bearer token");
  return m[1];
}

// ---- routing and metrics ------------------------------------------------------------------

export interface RequestContext {
  req: IncomingMessage;
  res: ServerResponse;
  params: Record<string, string>;
  log: Logger;
}

export type Handler = (ctx: RequestContext) => Promise<void> | void;

export interface Route {
  method: string;
  /** A path such as /v1/characters/:id; the pattern itself is the metrics label. */
  path: string;
  handler: Handler;
}

interface Compiled extends Route {
  re: RegExp;
  names: string[];
}

function compile(route: Route): Compiled {
  const names: string[] = [];
  const re = new RegExp(
    `^${route.path.replace(/:([A-Za-z]+)/g, (_m, n: string) => {
      names.push(n);
      return "([^/]+)";
    })}$`,
  );
  return { ...route, re, names };
}

export interface HttpMetrics {
  requests: Counter<"route" | "method" | "status">;
  duration: Histogram<"route" | "method">;
}

export function httpMetrics(registry: Registry, prefix: string): HttpMetrics {
  return {
    requests: new Counter({
      name: `${prefix}_http_requests_total`,
      help: "HTTP requests served, by route pattern, method and status code",
      labelNames: ["route", "method", "status"],
      registers: [registry],
    }),
    duration: new Histogram({
      name: `${prefix}_http_request_duration_seconds`,
      help: "HTTP request latency by route pattern",
      labelNames: ["route", "method"],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    }),
  };
}

/** A fresh registry with the default process metrics, one per server (tests run several). */
export function newRegistry(labels: Record<string, string> = {}): Registry {
  const r = new Registry();
  r.setDefaultLabels(labels);
  collectDefaultMetrics({ register: r });
  return r;
}

const NETWORK_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EPIPE",
  "EHOSTUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
]);

/**
 * A store being away (PostgreSQL or Redis unreachable, PostgreSQL shutting down or refusing
 * connections) is a 503 the client may retry, not a 500.
 */
export function isUnavailable(err: unknown): boolean {
  const e = err as { code?: unknown; name?: unknown; message?: unknown } | null;
  if (!e || typeof e !== "object") return false;
  const code = typeof e.code === "string" ? e.code : "";
  if (NETWORK_CODES.has(code)) return true;
  // PostgreSQL: class 08 (connection exception), 57P01-57P03 (shutdown, cannot connect now).
  if (/^08...$/.test(code) || /^57P0[123]$/.test(code)) return true;
  if (e.name === "MaxRetriesPerRequestError") return true;
  const msg = typeof e.message === "string" ? e.message : "";
  return /Connection is closed|connection terminated|timeout exceeded when trying to connect|Connection terminated/i.test(
    msg,
  );
}

export interface ApiServerOptions {
  routes: Route[];
  log: Logger;
  metrics: HttpMetrics;
  /** Serve https from this certificate (platform/tls.ts); plain http without. */
  tls?: ServingTls;
}

/** A node:http(s) server dispatching to routes; errors become JSON, unknown ones a logged 500. */
export function createApiServer(opts: ApiServerOptions): Server {
  const routes = opts.routes.map(compile);
  const server = createServingServer(async (req, res) => {
    const start = process.hrtime.bigint();
    const url = new URL(req.url ?? "/", "http://x");
    let label = "unmatched";
    // Browsers on another origin (the browser client, served by the gateway) may call: the
    // credentials are Bearer tokens, never cookies, so any origin may send them.
    res.setHeader("access-control-allow-origin", "*");
    if (req.method === "OPTIONS" && req.headers["access-control-request-method"]) {
      res
        .writeHead(204, {
          "access-control-allow-methods": "GET, POST, DELETE",
          "access-control-allow-headers": "authorization, content-type",
          "access-control-max-age": "600",
        })
        .end();
      return;
    }
    try {
      const matches = routes.filter((r) => r.re.test(url.pathname));
      const route = matches.find((r) => r.method === req.method);
      if (!route) {
        if (matches.length > 0) {
          throw new HttpError(405, "method_not_allowed", `use ${matches.map((m) => m.method).join(", ")}`, {
            headers: { allow: matches.map((m) => m.method).join(", ") },
          });
        }
        throw new HttpError(404, "not_found", `no route for ${req.method} ${url.pathname}`);
      }
      label = route.path;
      const m = route.re.exec(url.pathname)!;
      const params: Record<string, string> = {};
      route.names.forEach((n, i) => {
        params[n] = decodeURIComponent(m[i + 1] ?? "");
      });
      await route.handler({ req, res, params, log: opts.log });
    } catch (err) {
      if (err instanceof HttpError) {
        if (!res.headersSent) {
          sendJson(
            res,
            err.status,
            {
              error: {
                code: err.code,
                message: err.message,
                ...(err.details ? { details: err.details } : {}),
              },
            },
            err.headers,
          );
        }
      } else if (isUnavailable(err)) {
        opts.log.warn("request failed: a backing store is unavailable", {
          route: label,
          method: req.method,
          err,
        });
        if (!res.headersSent) {
          sendJson(
            res,
            503,
            { error: { code: "unavailable", message: "temporarily unavailable; retry shortly" } },
            { "retry-after": "1" },
          );
        } else res.destroy();
      } else {
        opts.log.error("request failed", { route: label, method: req.method, err });
        if (!res.headersSent) sendJson(res, 500, { error: { code: "internal", message: "internal error" } });
        else res.destroy();
      }
    } finally {
      const secs = Number(process.hrtime.bigint() - start) / 1e9;
      const method = req.method ?? "?";
      opts.metrics.requests.inc({ route: label, method, status: String(res.statusCode) });
      opts.metrics.duration.observe({ route: label, method }, secs);
    }
  }, opts.tls);
  // Slow-loris protection and sane keep-alive behind a load balancer.
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  server.keepAliveTimeout = 65_000;
  server.maxHeadersCount = 50;
  return server;
}

export function listen(server: Server, port: number, host = "0.0.0.0"): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

/** Stops accepting, lets in-flight requests finish, then drops what is left after `timeoutMs`. */
export function closeServer(server: Server, timeoutMs = 10_000): Promise<void> {
  if (!server.listening) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => server.closeAllConnections(), timeoutMs);
    timer.unref();
    server.close(() => {
      clearTimeout(timer);
      resolve();
    });
    server.closeIdleConnections();
  });
}

// ---- ops endpoints ------------------------------------------------------------------------

/** Parses a bind address "host:port", ":port" or "port"; "" or "0" means off (undefined). */
export function parseBindAddress(addr: string): { host: string; port: number } | undefined {
  if (addr === "" || addr === "0") return undefined;
  const i = addr.lastIndexOf(":");
  const host = i > 0 ? addr.slice(0, i) : "0.0.0.0";
  const port = Number(i >= 0 ? addr.slice(i + 1) : addr);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`bad bind address: ${addr}`);
  return { host: host.replace(/^\[|\]$/g, ""), port };
}

export type ReadinessCheck = () => Promise<void> | void;

export interface OpsServerOptions {
  /** Port of /healthz, /livez and /readyz (0: a free one; undefined: not served). */
  healthPort?: number;
  /** Port of /metrics; the same port as healthPort serves both from one listener. */
  metricsPort?: number;
  host?: string;
  /** Per-endpoint hosts, when they differ (the operator's bind addresses); default `host`. */
  healthHost?: string;
  metricsHost?: string;
  registry: Registry;
  /** Named checks; /readyz is 200 only when all pass (each is given `checkTimeoutMs`). */
  checks: Record<string, ReadinessCheck>;
  checkTimeoutMs?: number;
  log: Logger;
}

export interface OpsServer {
  healthPort?: number;
  metricsPort?: number;
  /** Readiness off (draining before shutdown) or back on. */
  setReady(ready: boolean): void;
  close(): Promise<void>;
}

async function runCheck(check: ReadinessCheck, timeoutMs: number): Promise<string | undefined> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      Promise.resolve().then(check),
      new Promise((_r, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
    return undefined;
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  } finally {
    clearTimeout(timer);
  }
}

export async function startOpsServer(opts: OpsServerOptions): Promise<OpsServer> {
  let ready = true;
  const timeout = opts.checkTimeoutMs ?? 2000;
  const health = async (req: IncomingMessage, res: ServerResponse): Promise<boolean> => {
    const path = (req.url ?? "/").split("?")[0];
    if (path === "/healthz" || path === "/livez") {
      sendJson(res, 200, { status: "ok" });
      return true;
    }
    if (path === "/readyz") {
      const results: Record<string, string> = {};
      let ok = ready;
      if (!ready) results.shutdown = "draining";
      await Promise.all(
        Object.entries(opts.checks).map(async ([name, check]) => {
          const problem = await runCheck(check, timeout);
          results[name] = problem ?? "ok";
          if (problem) ok = false;
        }),
      );
      if (!ok) opts.log.warn("not ready", { checks: results });
      sendJson(res, ok ? 200 : 503, { status: ok ? "ready" : "not ready", checks: results });
      return true;
    }
    return false;
  };
  const metrics = async (req: IncomingMessage, res: ServerResponse): Promise<boolean> => {
    if ((req.url ?? "/").split("?")[0] !== "/metrics") return false;
    const body = await opts.registry.metrics();
    res.writeHead(200, { "content-type": opts.registry.contentType });
    res.end(body);
    return true;
  };
  const serve = (handlers: Array<(req: IncomingMessage, res: ServerResponse) => Promise<boolean>>) =>
    createServer(async (req, res) => {
      try {
        for (const h of handlers) if (await h(req, res)) return;
        sendJson(res, 404, { error: { code: "not_found", message: "not found" } });
      } catch (err) {
        opts.log.error("ops endpoint failed", { err });
        if (!res.headersSent) sendJson(res, 500, { error: { code: "internal", message: "internal error" } });
      }
    });
  const healthHost = opts.healthHost ?? opts.host ?? "0.0.0.0";
  const metricsHost = opts.metricsHost ?? opts.host ?? "0.0.0.0";
  const servers: Server[] = [];
  let healthPort: number | undefined;
  let metricsPort: number | undefined;
  if (
    opts.healthPort !== undefined &&
    opts.healthPort === opts.metricsPort &&
    opts.healthPort !== 0 &&
    healthHost === metricsHost
  ) {
    const s = serve([health, metrics]);
    servers.push(s);
    healthPort = metricsPort = await listen(s, opts.healthPort, healthHost);
  } else {
    if (opts.healthPort !== undefined) {
      const h = serve([health]);
      servers.push(h);
      healthPort = await listen(h, opts.healthPort, healthHost);
    }
    if (opts.metricsPort !== undefined) {
      const m = serve([metrics]);
      servers.push(m);
      metricsPort = await listen(m, opts.metricsPort, metricsHost);
    }
  }
  return {
    healthPort,
    metricsPort,
    setReady(r) {
      ready = r;
    },
    async close() {
      await Promise.all(servers.map((s) => closeServer(s, 1000)));
    },
  };
}

/**
 * An HTTP server that only upgrades to WebSocket (426 for anything else), listening on
 * `host:port` (0: a free port); with `tls`, an HTTPS one (wss). Resolves with the server and
 * the port it got.
 */
export async function listenForUpgrades(
  port: number,
  host: string,
  onUpgrade: (req: IncomingMessage, socket: Duplex, head: Buffer) => void,
  /** Plain HTTP requests; returns false for those it does not serve (answered 426). */
  onRequest?: (req: IncomingMessage, res: ServerResponse) => boolean,
  tls?: ServingTls,
): Promise<{ server: Server; port: number }> {
  const server = createServingServer((req, res) => {
    if (onRequest?.(req, res)) return;
    res.writeHead(426, { "content-type": "text/plain" }).end("WebSocket only\n");
  }, tls);
  server.on("upgrade", onUpgrade);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  const a = server.address();
  return { server, port: typeof a === "object" && a ? a.port : port };
}
