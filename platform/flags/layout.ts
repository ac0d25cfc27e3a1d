// The flag store's key layout, the report channel's subjects and the document shapes: the
// contract between the operator (which compiles and publishes flags, and folds reports into
// status) and every workload (which reads flags and reports back). docs/flags.md describes it in
// prose; this module is the source.
//
// Flag store (etcd, one per Region):
//   <prefix>flags/current                      the live publish (FlagPointer), flipped last
//   <prefix>flags/zones/<namespace>/<zone>     the zone's ZoneFlags of the latest publish, with its
//                                              epoch and publish id; rewritten by every publish
//   <prefix>ownership/publisher                the publisher's fencing token (FenceRecord)
//   <prefix>ownership/maps/...                 reserved for map ownership
// Report channel (NATS core, the Region's NATS):
//   hybridp2p.flags.<prefix token>.reports.<namespace>   one ReportMessage per pod and change,
//                                                         repeated as a heartbeat
//   hybridp2p.flags.<prefix token>.sync.<namespace>      "report again now" (a new receiver)
//
// A map server watches its own zone key: one watch event per publish, carrying its document. A
// region-wide pod watches the pointer and reads its namespace's zone keys pinned at the pointer's
// revision, where every zone key belongs to that one publish (a publish writes them all, then flips).

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

/** Zone placeholder in a report's identity for a pod that serves a whole region (gateway, coordinator, ...). */
export const REGION_SCOPE = "_";

/** The first token of every report-channel subject (the bus uses `hp2p`; they never overlap). */
export const REPORT_SUBJECT_ROOT = "hybridp2p.flags";

export interface Layout {
  readonly prefix: string;
  readonly pointer: string;
  readonly fence: string;
  readonly ownershipPrefix: string;
  /** `<prefix>flags/zones/` or, with a namespace, `<prefix>flags/zones/<namespace>/`. */
  zonesPrefix(namespace?: string): string;
  zoneKey(namespace: string, zone: string): string;
  /** Parses a key under zonesPrefix() into namespace and zone. */
  parseZoneKey(key: string): { namespace: string; zone: string } | undefined;
  /** A publish's id: `<epoch, 12 digits>-<fencing token, 16 digits>`; ids sort as publishes do. */
  publishId(epoch: number, token: string): string;
  /** Epoch number encoded in a publish id. */
  epochOfPublish(id: string): number | undefined;
  /** The subject a pod of `namespace` sends its reports on. */
  reportSubject(namespace: string): string;
  /** Every namespace's reports (a receiver for a whole store). */
  readonly reportsWildcard: string;
  /** A receiver asks the pods of `namespace` to report again now. */
  syncSubject(namespace: string): string;
  /** A report's identity: `<namespace>/<zone or _>/<pod>`. */
  reportId(namespace: string, zone: string | undefined, pod: string): string;
}

function checkSegment(what: string, s: string): string {
  if (s.length === 0 || s.includes("/"))
    throw new Error(`invalid ${what} for a flag key: ${JSON.stringify(s)}`);
  return s;
}

const SUBJECT_TOKEN = /^[A-Za-z0-9_-]+$/;

function subjectToken(what: string, s: string): string {
  if (!SUBJECT_TOKEN.test(s)) throw new Error(`invalid ${what} for a report subject: ${JSON.stringify(s)}`);
  return s;
}

/** The key prefix as one subject token: `/hybridp2p/v1/` -> `hybridp2p_v1`. */
export function prefixToken(prefix: string): string {
  const t = prefix.replace(/^\/+|\/+$/g, "").replace(/[^A-Za-z0-9_-]/g, "_");
  return t.length === 0 ? "_" : t;
}

export function layout(prefix: string = DEFAULT_PREFIX): Layout {
  const p = prefix.endsWith("/") ? prefix : `${prefix}/`;
  const zonesRoot = `${p}flags/zones/`;
  const subjects = `${REPORT_SUBJECT_ROOT}.${prefixToken(p)}`;
  return {
    prefix: p,
    pointer: `${p}flags/current`,
    fence: `${p}ownership/publisher`,
    ownershipPrefix: `${p}ownership/`,
    zonesPrefix: (ns) => (ns === undefined ? zonesRoot : `${zonesRoot}${checkSegment("namespace", ns)}/`),
    zoneKey: (ns, zone) => `${zonesRoot}${checkSegment("namespace", ns)}/${checkSegment("zone", zone)}`,
    parseZoneKey: (key) => {
      if (!key.startsWith(zonesRoot)) return undefined;
      const parts = key.slice(zonesRoot.length).split("/");
      if (parts.length !== 2 || !parts[0] || !parts[1]) return undefined;
      return { namespace: parts[0], zone: parts[1] };
    },
    publishId: (epoch, token) =>
      `${String(epoch).padStart(12, "0")}-${checkSegment("token", token).padStart(16, "0")}`,
    epochOfPublish: (id) => {
      const m = /^(\d{12})-/.exec(id);
      return m ? Number(m[1]) : undefined;
    },
    reportSubject: (ns) => `${subjects}.reports.${subjectToken("namespace", ns)}`,
    reportsWildcard: `${subjects}.reports.*`,
    syncSubject: (ns) => `${subjects}.sync.${subjectToken("namespace", ns)}`,
    reportId: (ns, zone, pod) => `${ns}/${zone ?? REGION_SCOPE}/${pod}`,
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
  /** maxLinks: direct links per peer, nearest first (absent in documents of older operators: a full mesh). */
  mesh: { maxPeers: number; maxLinks?: number; peerTTLSeconds: number; refreshSeconds: number };
  thresholds: {
    latencyMs: { warn: number; critical: number; max: number };
    lossPercent: { warn: number; critical: number; max: number };
    jitterMs: { warn: number; critical: number };
    coordinatorTimeoutMs: number;
    minPeers: number;
  };
  recovery: { mode: RecoveryMode; initialSeconds: number; maxSeconds: number; clearToken: string };
}

/** A zone's document as published: the compiled ZoneFlags plus the publish it belongs to. */
export type PublishedZoneFlags = ZoneFlags & { epoch: number; publish: string };

/** flags/current: the live publish. */
export interface FlagPointer {
  v: 1;
  epoch: number;
  /** The publish id (`<epoch>-<fence>`); every zone key carries it once this pointer is live. */
  publish: string;
  /** sha256 of the publish's compiled documents (zone keys, canonical JSON), for "nothing changed". */
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

/**
 * What one pod applied, sent on the report channel on every change and repeated as a heartbeat;
 * a receiver forgets a report not repeated within its ttlSeconds, so it vanishes with the pod.
 */
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

/** A report on the channel: the report and how long it stands without being repeated. */
export type ReportMessage = PodReport & { ttlSeconds: number };

/** A pod leaving cleanly: its report goes at once. */
export interface ReportGone {
  v: 1;
  gone: true;
  pod: string;
  namespace: string;
  zone?: string;
}

/**
 * Heartbeats of the pods on one connection, as one message: the receiver keeps each named
 * pod's report for another ttlSeconds (a receiver that does not know one asks for a sync).
 */
export interface ReportAlive {
  v: 1;
  /** `<report identity (Layout.reportId)>#<version of the report last sent (reports.ts)>`. */
  alive: string[];
  ttlSeconds: number;
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

const PUBLISH_ID = /^\d{12}-\d{16}$/;

export function parsePointer(key: string, raw: string): FlagPointer {
  const v = parseJson(key, raw);
  if (!isNum(v.epoch) || v.epoch < 1 || !Number.isInteger(v.epoch))
    throw new MalformedDocument(key, "bad epoch");
  if (typeof v.publish !== "string" || !PUBLISH_ID.test(v.publish))
    throw new MalformedDocument(key, "bad publish id");
  if (typeof v.digest !== "string") throw new MalformedDocument(key, "bad digest");
  return v as unknown as FlagPointer;
}

/** A published zone document: a valid ZoneFlags with the epoch and publish id it was written by. */
export function parsePublishedZone(key: string, raw: string): PublishedZoneFlags {
  const doc = parseZoneFlags(key, raw) as Partial<PublishedZoneFlags>;
  if (!isNum(doc.epoch) || doc.epoch < 1 || !Number.isInteger(doc.epoch))
    throw new MalformedDocument(key, "bad epoch");
  if (typeof doc.publish !== "string" || !PUBLISH_ID.test(doc.publish))
    throw new MalformedDocument(key, "bad publish id");
  return doc as PublishedZoneFlags;
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
  return checkReport(key, parseJson(key, raw));
}

function checkReport(key: string, v: Obj): PodReport {
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

/**
 * A message of the report channel: a report with its ttl, a clean goodbye, or heartbeats.
 * Errors name it `report`; the receiver adds the subject it came on.
 */
export function parseReportMessage(raw: string): ReportMessage | ReportGone | ReportAlive {
  const subject = "report";
  const v = parseJson(subject, raw);
  if (Array.isArray(v.alive)) {
    if (!v.alive.every((x) => typeof x === "string")) throw new MalformedDocument(subject, "bad alive list");
    if (!isNum(v.ttlSeconds) || v.ttlSeconds <= 0) throw new MalformedDocument(subject, "bad ttlSeconds");
    return v as unknown as ReportAlive;
  }
  if (v.gone === true) {
    if (typeof v.pod !== "string" || typeof v.namespace !== "string")
      throw new MalformedDocument(subject, "a goodbye needs pod and namespace");
    if (v.zone !== undefined && typeof v.zone !== "string") throw new MalformedDocument(subject, "bad zone");
    return v as unknown as ReportGone;
  }
  const r = checkReport(subject, v) as Partial<ReportMessage>;
  if (!isNum(r.ttlSeconds) || r.ttlSeconds <= 0) throw new MalformedDocument(subject, "bad ttlSeconds");
  return r as ReportMessage;
}
