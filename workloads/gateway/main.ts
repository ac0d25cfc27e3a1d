// `hybrid-workload gateway`: configuration from the environment, then serve clients until
// SIGTERM (which closes every session with `server_shutdown` after they left their maps).
import { X509Certificate } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { FlagClient } from "../../platform/flags/client.ts";
import { connectFlagStore } from "../../platform/flags/etcd.ts";
import type { ZoneReport } from "../../platform/flags/layout.ts";
import { registerFlagMetrics } from "../../platform/flags/metrics.ts";
import { createLogger, type Logger } from "../../platform/log.ts";
import { connectNats, requireStoreAccess } from "../../platform/stores/access.ts";
import { GatewayAuth } from "../auth/gateway.ts";
import { RoTickets } from "../auth/ro-tickets.ts";
import { CoordinatorWatch } from "../coordinator/watch.ts";
import { scrapedMetrics } from "../runtime/metrics.ts";
import { createRedis } from "../runtime/redis.ts";
import { configOrExit, runUntilSignalled } from "../runtime/shutdown.ts";
import { startOps } from "../runtime/workload.ts";
import { type GatewayConfig, gatewayConfigFromEnv } from "./config.ts";
import { consumeEvents } from "./events.ts";
import { flagDirectory, flagGate } from "./flags.ts";
import { Gateway, type MapDirectory, staticDirectory } from "./gateway.ts";
import { startRoMap } from "./ro.ts";

export async function startGateway(cfg: GatewayConfig, log: Logger): Promise<{ close(): Promise<void> }> {
  const pod = cfg.runtime.podName;
  // The ops server first: alive while the stores are waited for, not ready until the gateway serves.
  const { startup, registry, checks, ops, ready } = await startOps(cfg.runtime, log, {
    labels: { service: "gateway", pod },
  });
  const redis = cfg.redisUrl
    ? createRedis(requireStoreAccess("dragonfly", cfg.redisUrl), { log, name: `gateway-${pod}` })
    : undefined;
  const roRedis = cfg.ro
    ? (redis ??
      createRedis(requireStoreAccess("dragonfly", cfg.ro.redisUrl), { log, name: `gateway-${pod}-ro` }))
    : undefined;
  if (redis && cfg.redisUrl) await startup.redis(redis, cfg.redisUrl);
  if (roRedis && roRedis !== redis && cfg.ro) await startup.redis(roRedis, cfg.ro.redisUrl);
  const auth = await GatewayAuth.open({
    keysetFile: cfg.keysetFile,
    redis,
    redisPrefix: cfg.redisPrefix,
    log,
  });
  const nats = requireStoreAccess("nats", cfg.natsUrl);
  const nc = await startup.waitFor("nats", cfg.natsUrl, () =>
    connectNats(nats, { name: `gateway-${pod}`, maxReconnectAttempts: -1 }),
  );
  const control = await startup.waitFor("nats", cfg.natsUrl, () =>
    connectNats(nats, {
      name: `gateway-${pod}-control`,
      maxReconnectAttempts: -1,
    }),
  );
  let flags: FlagClient | undefined;
  let directory: MapDirectory;
  if (cfg.etcdEndpoints.length > 0) {
    flags = new FlagClient({
      client: connectFlagStore(requireStoreAccess("etcd", cfg.etcdEndpoints.join(","))),
      nats: control, // the report channel
      prefix: cfg.flagPrefix,
      namespace: cfg.runtime.namespace,
      service: "gateway",
      pod,
      log,
    });
    await flags.start();
    directory = flagDirectory(flags);
  } else {
    directory = staticDirectory(cfg.staticMaps ?? {});
  }
  const f = flags;
  // P2P also needs a live coordinator (it forms the meshes): its replicas' liveness gates P2P
  // per zone, and its silence puts the gateway into fallback.
  let gateway: Gateway | undefined;
  const tls = cfg.runtime.servingTlsDir ? { dir: cfg.runtime.servingTlsDir, log } : undefined;
  const watch =
    f && cfg.watchCoordinator
      ? new CoordinatorWatch({
          nc,
          region: cfg.runtime.region,
          flags: f,
          onChange: () => gateway?.refreshModes(),
          log,
        })
      : undefined;
  gateway = new Gateway({
    nc,
    control,
    region: cfg.runtime.region,
    id: pod,
    verify: (t) => auth.verify(t),
    sessionLive: redis ? (c) => auth.sessionLive(c) : undefined,
    sessionCheckMs: cfg.sessionCheckMs,
    directory,
    p2pGate: f ? (watch ? watch.gate(flagGate(f)) : flagGate(f)) : undefined,
    rolloutPercent: f ? (zone) => f.zoneFlags(zone)?.rolloutPercent ?? 100 : undefined,
    clientConfig: {
      zoneFlags: f ? (zone) => f.zoneFlags(zone) : undefined,
      epoch: f ? () => f.snapshot().epoch : undefined,
      ice: cfg.p2pClient.ice,
      coordinators: cfg.p2pClient.coordinators,
    },
    web: cfg.p2pClient.web
      ? {
          dir: cfg.p2pClient.webDir,
          region: {
            loginUrl: cfg.p2pClient.loginUrl,
            charUrl: cfg.p2pClient.charUrl,
            coordinators: cfg.p2pClient.coordinators,
          },
        }
      : undefined,
    limits: cfg.limits,
    log,
    tls,
  });
  const gw = gateway;
  // The canary: each zone's P2P-capable players and those playing P2P, in this pod's report
  // (the operator sums the gateways' counts into the Zone's status).
  const playersTimer = f
    ? setInterval(() => {
        const zones = new Map<string, ZoneReport>();
        for (const [zone, players] of gw.p2pPlayers()) zones.set(zone, { players });
        f.reportZones(zones);
      }, cfg.p2pClient.playersReportMs)
    : undefined;
  f?.on("snapshot", () => gw.refreshModes());
  f?.on("state", () => gw.refreshModes());
  watch?.start();
  const events = await consumeEvents(
    nc,
    cfg.runtime.region,
    pod,
    (batch, zone) => gw.onEvents(batch, zone),
    (err) => log.warn("bad event batch", { err }),
  );
  const port = await gw.listen(cfg.port, cfg.host);
  const ro =
    cfg.ro && roRedis
      ? await startRoMap({
          port: cfg.ro.port,
          host: cfg.ro.host,
          log,
          tickets: new RoTickets(roRedis, cfg.redisPrefix),
          gatewayUrl: `${tls ? "wss" : "ws"}://${cfg.host === "0.0.0.0" || cfg.host === "::" ? "127.0.0.1" : cfg.host}:${port}`,
          gatewayTls: tls ? loopbackTls(tls.dir) : undefined,
          maxConnections: cfg.limits.maxConnections,
        })
      : undefined;
  if (flags) registerFlagMetrics(registry, flags);
  const { gauge, total } = scrapedMetrics(registry);
  gauge("hybridp2p_gateway_connections", "Open client connections", () => gw.stats.connections);
  gauge("hybridp2p_gateway_sessions", "Authenticated sessions", () => gw.stats.sessions);
  // Fan-out: frames sent per second over sessions (the dashboards divide one by the other).
  total("hybridp2p_gateway_frames_sent_total", "Frames sent to clients", () => gw.stats.framesOut);
  total(
    "hybridp2p_gateway_slow_clients_dropped_total",
    "Clients dropped for not reading",
    () => gw.stats.droppedSlow,
  );
  total(
    "hybridp2p_gateway_bad_frame_closes_total",
    "Connections closed for a bad frame",
    () => gw.stats.closedBadFrame,
  );
  total(
    "hybridp2p_gateway_rate_limited_closes_total",
    "Connections closed for flooding",
    () => gw.stats.rateLimited,
  );
  checks.nats = () => {
    if (nc.isClosed() || control.isClosed()) throw new Error("NATS connection closed");
  };
  ready();
  log.info("gateway started", {
    port,
    roMapPort: ro?.port,
    region: cfg.runtime.region,
    tls: tls !== undefined,
  });
  return {
    async close() {
      // Readiness off, then a pause so the Service stops sending new clients, then sessions go.
      ops.setReady(false);
      await new Promise((r) => setTimeout(r, cfg.runtime.drainDelayMs));
      await ro?.close();
      clearInterval(playersTimer);
      await gw.close();
      watch?.stop();
      await events.stop();
      await flags?.close();
      await nc.drain().catch(() => undefined);
      await control.drain().catch(() => undefined);
      redis?.disconnect();
      if (roRedis !== redis) roRedis?.disconnect();
      auth.close();
      await ops.close();
    },
  };
}

/**
 * How the RO bridge dials this gateway's own wss listener on loopback: against the Region's CA
 * (ca.crt beside the pair; the system's trust when the issuer left none), checked for the
 * certificate's first DNS name, as 127.0.0.1 is rarely among its names.
 */
function loopbackTls(dir: string): { ca?: string; servername?: string } {
  const caFile = join(dir, "ca.crt");
  const cert = new X509Certificate(readFileSync(join(dir, "tls.crt")));
  const dns = /(?:^|, )DNS:([^,]+)/.exec(cert.subjectAltName ?? "")?.[1];
  return {
    ...(existsSync(caFile) ? { ca: readFileSync(caFile, "utf8") } : {}),
    ...(dns ? { servername: dns } : {}),
  };
}

export async function run(): Promise<void> {
  const cfg = configOrExit("gateway", () => gatewayConfigFromEnv());
  const log = createLogger("gateway", { level: cfg.runtime.logLevel, fields: { pod: cfg.runtime.podName } });
  await runUntilSignalled(log, cfg.runtime.shutdownTimeoutMs, () => startGateway(cfg, log));
}
