// The flag store's key layout and document shapes: the contract between the operator (which
// compiles and publishes flags, and folds reports into status) and every workload (which reads
// flags and reports back). docs/flags.md describes it in prose; this module is the source.
//
//   <prefix>flags/current                                  pointer to the live epoch (FlagPointer)
//   <prefix>flags/epochs/<dir>/zones/<namespace>/<zone>    one ZoneFlags document per zone
//   <prefix>status/reports/<namespace>/<zone|_>/<pod>      one PodReport per pod, under an etcd lease
//   <prefix>ownership/publisher                           the publisher's fencing token (FenceRecord)
//   <prefix>ownership/maps/...                            reserved for map ownership
//
// <dir> is `<epoch, 12 digits>-<fence token>`: a publish writes its documents under a fresh
// directory in as many transactions as needed, then flips flags/current in one guarded
// transaction. Readers follow the pointer and read that directory at the pointer's revision.

export const DEFAULT_PREFIX = "/hybridp2p/v1/";

/** The services that carry flags. Any other name is unknown, hence P2P-disabled. */
export const KNOWN_SERVICES = [
  "map-server",
  "gateway",
  "coordinator",
  "char-server",
  "login-server",
] as const;
export type KnownService = (typeof KNOWN_SERVICES)[number];

export function isKnownService(s: string): s is KnownService {
  return (KNOWN_SERVICES as readonly string[]).includes(s);
}

/** Zone placeholder in a report key for a pod that serves a whole region (gateway, coordinator, ...). */
export const REGION_SCOPE = "_";

export interface Layout {
  readonly prefix: string;
  readonly pointer: string;
  readonly epochsPrefix: string;
  readonly reportsPrefix: string;
  readonly fence: string;
  readonly ownershipPrefix: string;
  epochDir(epoch: number, token: string): string;
  /** The directory prefix of an epoch directory name, e.g. `<prefix>flags/epochs/000000000007-42/`. */
  dirPrefix(dir: string): string;
  zoneKey(dir: string, namespace: string, zone: string): string;
  zonesPrefix(dir: string, namespace?: string): string;
  reportKey(namespace: string, zone: string | undefined, pod: string): string;
  reportsPrefixFor(namespace?: string, zone?: string): string;
  /** Parses a key under zonesPrefix(dir) into namespace and zone. */
  parseZoneKey(dir: string, key: string): { namespace: string; zone: string } | undefined;
  /** Epoch number encoded in a directory name. */
  epochOfDir(dir: string): number | undefined;
}

function checkSegment(what: string, s: string): string {
  if (s.length === 0 || s.includes("/"))
    throw new Error(`invalid ${what} for a flag key: ${JSON.stringify(s)}`);
  return s;
}

export function layout(prefix: string = DEFAULT_PREFIX): Layout {
  const p = prefix.endsWith("/") ? prefix : `${prefix}/`;
  const epochsPrefix = `${p}flags/epochs/`;
  const reportsPrefix = `${p}status/reports/`;
  return {
    prefix: p,
    pointer: `${p}flags/current`,
    epochsPrefix,
    reportsPrefix,
    fence: `${p}ownership/publisher`,
    ownershipPrefix: `${p}ownership/`,
    epochDir: (epoch, token) => `${String(epoch).padStart(12, "0")}-${checkSegment("token", token)}`,
    dirPrefix: (dir) => `${epochsPrefix}${checkSegment("dir", dir)}/`,
    zoneKey: (dir, ns, zone) =>
      `${epochsPrefix}${dir}/zones/${checkSegment("namespace", ns)}/${checkSegment("zone", zone)}`,
    zonesPrefix: (dir, ns) =>
      ns === undefined
        ? `${epochsPrefix}${dir}/zones/`
        : `${epochsPrefix}${dir}/zones/${checkSegment("namespace", ns)}/`,
    reportKey: (ns, zone, pod) =>
      `${reportsPrefix}${checkSegment("namespace", ns)}/${checkSegment("zone", zone ?? REGION_SCOPE)}/${checkSegment("pod", pod)}`,
    reportsPrefixFor: (ns, zone) => {
      if (ns === undefined) return reportsPrefix;
      if (zone === undefined) return `${reportsPrefix}${checkSegment("namespace", ns)}/`;
      return `${reportsPrefix}${checkSegment("namespace", ns)}/${checkSegment("zone", zone)}/`;
    },
    parseZoneKey: (dir, key) => {
      const base = `${epochsPrefix}${dir}/zones/`;
      if (!key.startsWith(base)) return undefined;
      const parts = key.slice(base.length).split("/");
      if (parts.length !== 2 || !parts[0] || !parts[1]) return undefined;
      return { namespace: parts[0], zone: parts[1] };
    },
    epochOfDir: (dir) => {
      const m = /^(\d{12})-/.exec(dir);
      return m ? Number(m[1]) : undefined;
    },
  };
}

// ---- documents -----------------------------------------------------------------------------

export interface ServiceFlags {
  enabled: boolean;
  fallback: boolean;
  reason?: string;
}

export type RecoveryMode = "Auto" | "Manual";

export interface MapFlags {
  name: string;
  type: string;
  p2p: boolean;
}

/** The effective flags of one zone, self-contained: a map server reads exactly one of these. */
export interface ZoneFlags {
  v: 1;
  namespace: string;
  zone: string;
  region: string | null;
  /** The policy that won this zone (highest priority, then name), or null when none selects it. */
  policy: string | null;
  enabled: boolean;
  fallback: boolean;
  /** Why the zone is disabled or in fallback. */
  reason?: string;
  /** Flags for every known service as they apply in this zone (service enabled, service fallback). */
  services: Record<string, ServiceFlags>;
  maps: MapFlags[];
  transports: string[];
  rolloutPercent: number;
  mesh: { maxPeers: number; peerTTLSeconds: number; refreshSeconds: number };
  thresholds: {
    latencyMs: { warn: number; critical: number; max: number };
    lossPercent: { warn: number; critical: number; max: number };
    jitterMs: { warn: number; critical: number };
    coordinatorTimeoutMs: number;
    minPeers: number;
  };
  recovery: { mode: RecoveryMode; initialSeconds: number; maxSeconds: number; clearToken: string };
}

/** flags/current: which epoch directory is live. */
export interface FlagPointer {
  v: 1;
  epoch: number;
  dir: string;
  /** sha256 of the epoch's documents (keys relative to the directory, canonical JSON), for "nothing changed". */
  digest: string;
  zones: number;
  publisher: string;
  fence: string;
  publishedAt: string;
}

/** ownership/publisher: who holds the right to publish. The token is the key's mod revision. */
export interface FenceRecord {
  holder: string;
  acquiredAt: string;
}

export type PodMode = "p2p" | "server" | "fallback";

/** status/reports/...: what one pod applied. Lives under the pod's lease, so it vanishes with the pod. */
export interface PodReport {
  v: 1;
  pod: string;
  namespace: string;
  /** The zone a map server serves; absent for region-wide pods. */
  zone?: string;
  service: string;
  epoch: number;
  mode: PodMode;
  reason: string;
  /** When the pod entered this mode (RFC 3339). */
  since: string;
  /** An epoch seen but not applied because its documents were malformed. */
  rejectedEpoch?: number;
  /**
   * Region-wide pods only: what the pod says about single zones. Only zones with something to
   * say are listed, so the report stays small in a region of many zones.
   */
  zones?: Record<string, ZoneReport>;
  updatedAt: string;
}

/** One region-wide pod's word about one zone. */
export interface ZoneReport {
  /** The pod holds the zone in fallback on its own (coordinator lost, mesh quality). */
  fallback?: { reason: string; since: string };
  /** The zone's P2P clients as a coordinator replica sees them (replicas share one roster). */
  peers?: ZonePeers;
  /** The zone's P2P-capable players on a gateway replica (replicas hold disjoint sessions). */
  players?: ZonePlayers;
}

/** The canary: P2P-capable players where P2P is on, and those of them playing P2P (the rollout). */
export interface ZonePlayers {
  /** P2P-capable clients playing on the zone's maps while P2P is on there (before the rollout). */
  eligible: number;
  /** Those of them in p2p mode: inside rolloutPercent and not held in fallback. */
  playing: number;
}

export interface ZonePeers {
  /** Clients in a mesh. */
  connected: number;
  meshes: number;
  /** Clients with at least one pair exchanging through the server relay. */
  relayed: number;
}

// ---- rollout ---------------------------------------------------------------------------------

/** FNV-1a, 32 bit: a stable bucket in [0, 100) for percentage rollouts. */
export function rolloutBucket(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h % 100;
}

/**
 * Whether a player is in a zone's P2P rollout: by a stable hash of the character, so a player
 * stays in or out, and widening the rollout only adds players.
 */
export function inRollout(characterId: string, rolloutPercent: number): boolean {
  return rolloutBucket(characterId) < rolloutPercent;
}

// ---- the effective-P2P rule ---------------------------------------------------------------

/**
 * Effective P2P for (service, zone) = service enabled AND zone enabled AND NOT fallback(service)
 * AND NOT fallback(zone). An unknown zone (no document) or an unknown service is disabled.
 */
export function effectiveP2P(doc: ZoneFlags | undefined, service: string): boolean {
  if (doc === undefined) return false;
  if (!isKnownService(service)) return false;
  const s = doc.services[service];
  if (s === undefined) return false;
  return s.enabled && doc.enabled && !s.fallback && !doc.fallback;
}

// ---- canonical JSON and validation --------------------------------------------------------

/** JSON with object keys sorted, so equal documents are byte-equal (digests, "nothing changed"). */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v !== null && typeof v === "object") {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) {
      const x = (v as Record<string, unknown>)[k];
      if (x !== undefined) out[k] = sortKeys(x);
    }
    return out;
  }
  return v;
}

export class MalformedDocument extends Error {
  readonly key: string;
  constructor(key: string, why: string) {
    super(`malformed flag document ${key}: ${why}`);
    this.name = "MalformedDocument";
    this.key = key;
  }
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => v !== null && typeof v === "object" && !Array.isArray(v);
const isNum = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v);

function parseJson(key: string, raw: string): Obj {
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch (e) {
    throw new MalformedDocument(key, `not JSON (${(e as Error).message})`);
  }
  if (!isObj(v)) throw new MalformedDocument(key, "not an object");
  if (v.v !== 1) throw new MalformedDocument(key, `unsupported version ${JSON.stringify(v.v)}`);
  return v;
}

export function parsePointer(key: string, raw: string): FlagPointer {
  const v = parseJson(key, raw);
  if (!isNum(v.epoch) || v.epoch < 1 || !Number.isInteger(v.epoch))
    throw new MalformedDocument(key, "bad epoch");
  if (typeof v.dir !== "string" || v.dir.length === 0 || v.dir.includes("/"))
    throw new MalformedDocument(key, "bad dir");
  if (typeof v.digest !== "string") throw new MalformedDocument(key, "bad digest");
  return v as unknown as FlagPointer;
}

export function parseZoneFlags(key: string, raw: string): ZoneFlags {
  const v = parseJson(key, raw);
  for (const f of ["namespace", "zone"] as const) {
    if (typeof v[f] !== "string") throw new MalformedDocument(key, `${f} is not a string`);
  }
  for (const f of ["enabled", "fallback"] as const) {
    if (typeof v[f] !== "boolean") throw new MalformedDocument(key, `${f} is not a boolean`);
  }
  if (!isObj(v.services)) throw new MalformedDocument(key, "services is not an object");
  for (const [name, s] of Object.entries(v.services)) {
    if (!isObj(s) || typeof s.enabled !== "boolean" || typeof s.fallback !== "boolean") {
      throw new MalformedDocument(key, `services.${name} needs boolean enabled and fallback`);
    }
  }
  if (!Array.isArray(v.maps)) throw new MalformedDocument(key, "maps is not an array");
  if (!isObj(v.recovery) || (v.recovery.mode !== "Auto" && v.recovery.mode !== "Manual")) {
    throw new MalformedDocument(key, "recovery.mode must be Auto or Manual");
  }
  if (!isObj(v.mesh) || !isObj(v.thresholds))
    throw new MalformedDocument(key, "mesh and thresholds are required");
  return v as unknown as ZoneFlags;
}

export function parseReport(key: string, raw: string): PodReport {
  const v = parseJson(key, raw);
  if (typeof v.pod !== "string" || typeof v.namespace !== "string" || typeof v.service !== "string") {
    throw new MalformedDocument(key, "pod, namespace and service are required");
  }
  if (!isNum(v.epoch)) throw new MalformedDocument(key, "bad epoch");
  if (v.mode !== "p2p" && v.mode !== "server" && v.mode !== "fallback")
    throw new MalformedDocument(key, "bad mode");
  if (v.zones !== undefined && !isObj(v.zones)) throw new MalformedDocument(key, "zones must be an object");
  for (const z of Object.values((v.zones ?? {}) as Record<string, unknown>)) {
    if (!isObj(z)) throw new MalformedDocument(key, "a zone entry must be an object");
    const f = z.fallback;
    if (f !== undefined && (!isObj(f) || typeof f.reason !== "string" || typeof f.since !== "string"))
      throw new MalformedDocument(key, "a zone fallback needs reason and since");
    const p = z.peers;
    if (p !== undefined && (!isObj(p) || !isNum(p.connected) || !isNum(p.meshes) || !isNum(p.relayed)))
      throw new MalformedDocument(key, "zone peers need connected, meshes and relayed");
    const pl = z.players;
    if (pl !== undefined && (!isObj(pl) || !isNum(pl.eligible) || !isNum(pl.playing)))
      throw new MalformedDocument(key, "zone players need eligible and playing");
  }
  return v as unknown as PodReport;
}
