// The probe and metrics endpoints: /healthz and /readyz on the health address, /metrics on
// the metrics address (both may be the same address).
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Registry } from "prom-client";

export interface Probes {
  healthz: () => boolean;
  readyz: () => boolean;
}

/** Parses "host:port", ":port" or "port"; "0" as a whole address means disabled. */
export function parseBindAddress(addr: string): { host: string; port: number } | undefined {
  if (addr === "" || addr === "0") return undefined;
  const i = addr.lastIndexOf(":");
  const host = i > 0 ? addr.slice(0, i) : "0.0.0.0";
  const port = Number(i >= 0 ? addr.slice(i + 1) : addr);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`bad bind address: ${addr}`);
  return { host: host.replace(/^\[|\]$/g, ""), port };
}

export interface Servers {
  healthPort?: number;
  metricsPort?: number;
  close(): Promise<void>;
}

export async function startServers(o: {
  healthAddress: string;
  metricsAddress: string;
  probes: Probes;
  registry: Registry;
}): Promise<Servers> {
  const health = parseBindAddress(o.healthAddress);
  const metrics = parseBindAddress(o.metricsAddress);
  const same =
    health && metrics && health.host === metrics.host && health.port === metrics.port && health.port !== 0;
  const handler = (serveProbes: boolean, serveMetrics: boolean) =>
    createServer((req, res) => {
      const path = (req.url ?? "/").split("?")[0];
      const probe = path === "/healthz" ? o.probes.healthz : path === "/readyz" ? o.probes.readyz : undefined;
      if (serveProbes && probe) {
        const ok = probe();
        res.writeHead(ok ? 200 : 503, { "content-type": "text/plain" }).end(ok ? "ok" : "not ready");
      } else if (serveMetrics && path === "/metrics") {
        o.registry.metrics().then(
          (text) => res.writeHead(200, { "content-type": o.registry.contentType }).end(text),
          (err: unknown) => res.writeHead(500).end(String(err)),
        );
      } else {
        res.writeHead(404).end();
      }
    });
  const listen = async (server: Server, a: { host: string; port: number }): Promise<number> => {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(a.port, a.host, () => resolve());
    });
    return (server.address() as AddressInfo).port;
  };
  const servers: Server[] = [];
  const out: Servers = {
    close: () =>
      Promise.all(
        servers.map(
          (s) =>
            new Promise<void>((r) => {
              s.close(() => r());
              s.closeAllConnections();
            }),
        ),
      ).then(() => {}),
  };
  if (same) {
    const s = handler(true, true);
    servers.push(s);
    out.healthPort = out.metricsPort = await listen(s, health);
    return out;
  }
  if (health) {
    const s = handler(true, false);
    servers.push(s);
    out.healthPort = await listen(s, health);
  }
  if (metrics) {
    const s = handler(false, true);
    servers.push(s);
    out.metricsPort = await listen(s, metrics);
  }
  return out;
}
