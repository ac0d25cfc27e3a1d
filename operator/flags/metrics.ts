// The flag plane's view of the world as metrics: per zone its mode, P2P peers and players, the
// epoch its pods acked and the Region's published epoch, and how long acks take. The operator
// already folds every pod's report into Zone status; these are the same numbers, so a
// dashboard and `kubectl get zones` never disagree.
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import type { ZoneMode } from "./status.ts";

export const ZONE_MODES: readonly ZoneMode[] = ["P2P", "Mixed", "Server", "Fallback"];

/** One zone as the flag plane last folded it. */
export interface ZoneView {
  namespace: string;
  region: string;
  zone: string;
  mode: ZoneMode;
  /** The lowest epoch the zone's map servers acked (0: none). */
  appliedEpoch: number;
  replicas: { desired: number; applied: number };
  peers: { connected: number; meshes: number; relayed: number } | null;
  players: { eligible: number; playing: number } | null;
}

/** One Region's flag store. */
export interface RegionView {
  namespace: string;
  region: string;
  /** The epoch live in the Region's flag store (0: nothing published yet). */
  publishedEpoch: number;
}

/** Why a zone entered fallback, as a small label set (the reasons themselves are free text). */
export type FallbackCause = "forced" | "flag_store" | "coordinator" | "mesh_quality" | "other";

export function fallbackCause(reason: string, forced: boolean): FallbackCause {
  if (forced) return "forced";
  if (/flag store/i.test(reason)) return "flag_store";
  if (/coordinator/i.test(reason)) return "coordinator";
  if (/loss|rtt|jitter|relay|mesh/i.test(reason)) return "mesh_quality";
  return "other";
}

export interface FlagPlaneMetrics {
  /** A zone's pods all acked `epoch`, `seconds` after it was published. */
  acked(seconds: number): void;
  fallbackEntered(z: { namespace: string; region: string; zone: string }, cause: FallbackCause): void;
}

export function registerFlagPlaneMetrics(
  registry: Registry,
  view: () => { zones: ZoneView[]; regions: RegionView[] },
): FlagPlaneMetrics {
  const registers = [registry];
  const zoneLabels = ["namespace", "region", "zone"] as const;
  // Each gauge reads the same view; it is cheap (a walk over the folds) and read per scrape.
  const gauge = (
    name: string,
    help: string,
    extra: string[],
    fill: (g: Gauge<string>, v: ReturnType<typeof view>) => void,
  ) =>
    new Gauge({
      name,
      help,
      labelNames: [...zoneLabels, ...extra],
      registers,
      collect() {
        this.reset();
        fill(this, view());
      },
    });
  const at = (z: ZoneView) => ({ namespace: z.namespace, region: z.region, zone: z.zone });
  gauge(
    "hybridp2p_zone_mode",
    "1 for the mode each zone is in (P2P, Mixed, Server, Fallback)",
    ["mode"],
    (g, v) => {
      for (const z of v.zones) for (const m of ZONE_MODES) g.set({ ...at(z), mode: m }, z.mode === m ? 1 : 0);
    },
  );
  gauge("hybridp2p_zone_p2p_peers", "P2P clients in a mesh, per zone", [], (g, v) => {
    for (const z of v.zones) g.set(at(z), z.peers?.connected ?? 0);
  });
  gauge("hybridp2p_zone_p2p_meshes", "P2P meshes, per zone", [], (g, v) => {
    for (const z of v.zones) g.set(at(z), z.peers?.meshes ?? 0);
  });
  gauge(
    "hybridp2p_zone_p2p_relayed_peers",
    "P2P clients with at least one pair exchanging through the server relay, per zone",
    [],
    (g, v) => {
      for (const z of v.zones) g.set(at(z), z.peers?.relayed ?? 0);
    },
  );
  gauge(
    "hybridp2p_zone_p2p_players",
    "P2P-capable players where P2P is on (state=eligible) and those playing P2P (state=playing)",
    ["state"],
    (g, v) => {
      for (const z of v.zones) {
        g.set({ ...at(z), state: "eligible" }, z.players?.eligible ?? 0);
        g.set({ ...at(z), state: "playing" }, z.players?.playing ?? 0);
      }
    },
  );
  gauge("hybridp2p_zone_applied_epoch", "The lowest flag epoch the zone's map servers acked", [], (g, v) => {
    for (const z of v.zones) g.set(at(z), z.appliedEpoch);
  });
  gauge(
    "hybridp2p_zone_replicas",
    "Map server replicas of the zone: desired, and applied (acked the live epoch)",
    ["state"],
    (g, v) => {
      for (const z of v.zones) {
        g.set({ ...at(z), state: "desired" }, z.replicas.desired);
        g.set({ ...at(z), state: "applied" }, z.replicas.applied);
      }
    },
  );
  new Gauge({
    name: "hybridp2p_flags_published_epoch",
    help: "The flag epoch live in each Region's flag store",
    labelNames: ["namespace", "region"],
    registers,
    collect() {
      this.reset();
      for (const r of view().regions)
        this.set({ namespace: r.namespace, region: r.region }, r.publishedEpoch);
    },
  });
  const ack = new Histogram({
    name: "hybridp2p_flags_publish_to_ack_seconds",
    help: "From a publish to every desired map server of a zone acking that epoch",
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60],
    registers,
  });
  const entries = new Counter({
    name: "hybridp2p_zone_fallback_entries_total",
    help: "Zones entering fallback, by cause (forced, flag_store, coordinator, mesh_quality, other)",
    labelNames: [...zoneLabels, "cause"],
    registers,
  });
  return {
    acked: (s) => ack.observe(s),
    fallbackEntered: (z, cause) => entries.inc({ ...z, cause }),
  };
}
