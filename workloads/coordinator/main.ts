// `hybrid-workload coordinator`: the P2P coordinator. Settings from the environment:
//   HYBRIDP2P_NATS_URL (required)            replicas share signaling state over NATS
//   HYBRIDP2P_ETCD_ENDPOINTS                  the flag plane: map directory, per-zone mesh policy,
//                                             fallback reports; without it HYBRIDP2P_COORDINATOR_MAPS
//                                             (`zone=map1,map2;zone2=map3`) and the default policy
//   HYBRIDP2P_FLAG_PREFIX, HYBRIDP2P_AUTH_KEYSET_FILE, HYBRIDP2P_COORDINATOR_PORT (7100),
//   HYBRIDP2P_LISTEN_HOST, HYBRIDP2P_COORDINATOR_ALIVE_MS (100),
//   HYBRIDP2P_COORDINATOR_REPORT_MS (2000): how often peer counts go into the flag report
//   HYBRIDP2P_REDIS_URL, HYBRIDP2P_REDIS_PREFIX (hp2p:): the login sessions; a peer is admitted
//                                             only while its session lives and is dropped when it
//                                             ends (checked every HYBRIDP2P_COORDINATOR_SESSION_CHECK_MS,
//                                             10000); HYBRIDP2P_COORDINATOR_CHECK_SESSIONS=false skips it
//   HYBRIDP2P_SERVING_TLS_DIR                 serve wss from tls.crt/tls.key there (reloaded on change)
//   HYBRIDP2P_COORDINATOR_LOCATE (true): ask the gateways where each joining session plays; false
//                                             trusts the token's map and the client's entity id, only
//                                             for a coordinator without gateways (mesh benchmarks)
// Each zone's fallback (mesh quality) and peer counts go into this pod's flag report, from
// which the operator folds the Zone's status.
import { FlagClient } from "../../platform/flags/client.ts";
import { connectFlagStore } from "../../platform/flags/etcd.ts";
import { DEFAULT_RECOVERY } from "../../platform/flags/fallback.ts";
import { DEFAULT_PREFIX, effectiveP2P } from "../../platform/flags/layout.ts";
import { registerFlagMetrics } from "../../platform/flags/metrics.ts";
import { connectNats, requireStoreAccess } from "../../platform/stores/access.ts";
import { DEFAULT_KEYSET_FILE } from "../auth/config.ts";
import { GatewayAuth } from "../auth/gateway.ts";
import { flagDirectory } from "../gateway/flags.ts";
import { ENV, type EnvReader } from "../runtime/config.ts";
import { scrapedMetrics } from "../runtime/metrics.ts";
import { createRedis } from "../runtime/redis.ts";
import { startWorkload } from "../runtime/workload.ts";
import { Coordinator } from "./coordinator.ts";
import { locateOverNats } from "./locate.ts";
import { DEFAULT_AREA_CELLS, DEFAULT_THRESHOLDS, type MeshPolicy, policyFromFlags } from "./mesh.ts";

export const DEFAULT_COORDINATOR_PORT = 7100;

interface CoordinatorConfig {
  natsUrl: string;
  etcdEndpoints: string[];
  flagPrefix: string;
  staticMaps?: Record<string, string[]>;
  keysetFile: string;
  port: number;
  host: string;
  aliveMs: number;
  reportMs: number;
  redisUrl?: string;
  redisPrefix: string;
  sessionCheckMs: number;
  locate: boolean;
}

export function readConfig(r: EnvReader): CoordinatorConfig {
  const etcd = (r.str(ENV.etcdEndpoints) ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  const rawMaps = r.str("HYBRIDP2P_COORDINATOR_MAPS");
  if (etcd.length === 0 && !rawMaps)
    r.problem(ENV.etcdEndpoints, "is required unless HYBRIDP2P_COORDINATOR_MAPS is set");
  let staticMaps: Record<string, string[]> | undefined;
  if (rawMaps) {
    staticMaps = {};
    for (const part of rawMaps.split(";").filter((p) => p.trim())) {
      const [zone, maps] = part.split("=");
      if (!zone?.trim() || !maps?.trim())
        r.problem("HYBRIDP2P_COORDINATOR_MAPS", "must look like zone=map1,map2");
      else
        staticMaps[zone.trim()] = maps
          .split(",")
          .map((m) => m.trim())
          .filter(Boolean);
    }
  }
  return {
    natsUrl: r.url(ENV.natsUrl, ["nats", "tls"], { required: true }),
    etcdEndpoints: etcd,
    flagPrefix: r.str("HYBRIDP2P_FLAG_PREFIX", DEFAULT_PREFIX),
    staticMaps,
    keysetFile: r.str("HYBRIDP2P_AUTH_KEYSET_FILE", DEFAULT_KEYSET_FILE),
    port: r.port("HYBRIDP2P_COORDINATOR_PORT", DEFAULT_COORDINATOR_PORT),
    host: r.str("HYBRIDP2P_LISTEN_HOST", "0.0.0.0"),
    aliveMs: r.int("HYBRIDP2P_COORDINATOR_ALIVE_MS", { default: 100, min: 10, max: 10_000 }),
    reportMs: r.int("HYBRIDP2P_COORDINATOR_REPORT_MS", { default: 2000, min: 100, max: 60_000 }),
    redisUrl:
      r.bool("HYBRIDP2P_COORDINATOR_CHECK_SESSIONS", true) && r.str(ENV.redisUrl)
        ? r.url(ENV.redisUrl, ["redis", "rediss"])
        : undefined,
    redisPrefix: r.str("HYBRIDP2P_REDIS_PREFIX", "hp2p:"),
    locate: r.bool("HYBRIDP2P_COORDINATOR_LOCATE", true),
    sessionCheckMs: r.int("HYBRIDP2P_COORDINATOR_SESSION_CHECK_MS", {
      default: 10_000,
      min: 100,
      max: 600_000,
    }),
  };
}

const STATIC_POLICY: MeshPolicy = {
  maxPeers: 30,
  maxLinks: 8,
  peerTTLMs: 30_000,
  refreshMs: 10_000,
  areaCells: DEFAULT_AREA_CELLS,
  areaMargin: 4,
  thresholds: DEFAULT_THRESHOLDS,
  recovery: DEFAULT_RECOVERY,
  heartbeatMs: 500,
  warmupMs: 30_000,
  sustainMs: 3000,
};

export async function run(): Promise<void> {
  let cfg!: CoordinatorConfig;
  const w = await startWorkload("coordinator", { readConfig: (r) => (cfg = readConfig(r)) });
  const { log, config } = w;
  const pod = config.podName;
  const redis = cfg.redisUrl
    ? createRedis(requireStoreAccess("dragonfly", cfg.redisUrl), { log, name: `coordinator-${pod}` })
    : undefined;
  if (!redis) log.warn("login sessions are not checked: peers stay admitted after a logout");
  // The stores may come up after this pod: wait (alive, not ready) rather than crash.
  if (redis && cfg.redisUrl) await w.startup.redis(redis, cfg.redisUrl);
  const auth = await GatewayAuth.open({
    keysetFile: cfg.keysetFile,
    redis,
    redisPrefix: cfg.redisPrefix,
    log,
  });
  w.shutdown.add("keyset", () => {
    auth.close();
    redis?.disconnect();
  });
  const nc = await w.startup.waitFor("nats", cfg.natsUrl, () =>
    connectNats(requireStoreAccess("nats", cfg.natsUrl), {
      name: `coordinator-${pod}`,
      maxReconnectAttempts: -1,
    }),
  );
  let flags: FlagClient | undefined;
  let zoneOf: (map: string) => string | undefined;
  let policy: (zone: string) => MeshPolicy | undefined;
  if (cfg.etcdEndpoints.length > 0) {
    const f = new FlagClient({
      client: connectFlagStore(requireStoreAccess("etcd", cfg.etcdEndpoints.join(","))),
      nats: nc, // the report channel
      prefix: cfg.flagPrefix,
      namespace: config.namespace,
      service: "coordinator",
      pod,
      log,
    });
    flags = f;
    await f.start();
    registerFlagMetrics(w.registry, f);
    const dir = flagDirectory(f);
    zoneOf = (m) => dir.zoneOf(m);
    // The zone's own flags, not the pod's latch: one zone's fallback must not stop the others.
    policy = (zone) => {
      const doc = f.zoneFlags(zone);
      return doc && effectiveP2P(doc, "coordinator") ? policyFromFlags(doc) : undefined;
    };
  } else {
    const byMap = new Map<string, string>();
    for (const [zone, maps] of Object.entries(cfg.staticMaps ?? {})) for (const m of maps) byMap.set(m, zone);
    zoneOf = (m) => byMap.get(m);
    policy = () => STATIC_POLICY;
  }
  const coordinator = new Coordinator({
    nc,
    region: config.region,
    replica: pod,
    verify: (t) => auth.verify(t),
    sessionLive: redis ? (c) => auth.sessionLive(c) : undefined,
    sessionCheckMs: cfg.sessionCheckMs,
    locate: cfg.locate ? locateOverNats(nc, config.region) : undefined,
    zoneOf,
    policy,
    aliveMs: cfg.aliveMs,
    log,
    tls: config.servingTlsDir ? { dir: config.servingTlsDir, log } : undefined,
    // The coordinator's own latches recover the zone; the report only says what they decided.
    onZoneMode: () => flags?.reportZones(coordinator.zoneReports()),
  });
  // Peer counts change with every join: reported at most once per interval (the flag client
  // writes only when the report changed).
  const reportTimer = flags
    ? setInterval(() => flags?.reportZones(coordinator.zoneReports()), cfg.reportMs)
    : undefined;
  const port = await coordinator.listen(cfg.port, cfg.host);
  const { gauge, total } = scrapedMetrics(w.registry);
  gauge("hybridp2p_coordinator_peers", "Peers connected to this replica", () => coordinator.stats.peers);
  total(
    "hybridp2p_coordinator_signals_forwarded_total",
    "Signaling messages forwarded",
    () => coordinator.stats.signalsForwarded,
  );
  total(
    "hybridp2p_coordinator_signals_refused_total",
    "Signaling messages refused: not a mesh mate",
    () => coordinator.stats.signalsRefused,
  );
  gauge("hybridp2p_coordinator_relayed_peers", "Peers with a pair on the server relay", () =>
    coordinator.zoneStates().reduce((n, z) => n + z.relayed, 0),
  );
  gauge(
    "hybridp2p_coordinator_zones_fallback",
    "Zones this replica holds in fallback",
    () => coordinator.zoneStates().filter((z) => z.mode === "fallback").length,
  );
  w.checks.nats = () => {
    if (nc.isClosed()) throw new Error("NATS connection closed");
  };
  w.shutdown.add("coordinator", () => {
    clearInterval(reportTimer);
    return coordinator.close();
  });
  w.shutdown.add("flags", async () => flags?.close());
  w.shutdown.add("nats", () => nc.drain().catch(() => undefined));
  w.ready();
  log.info("coordinator started", {
    port,
    region: config.region,
    tls: config.servingTlsDir !== undefined,
  });
}
