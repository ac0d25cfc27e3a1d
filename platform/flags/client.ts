// The flag client every workload uses: loads the live flag snapshot, then watches the pointer
// and swaps its whole snapshot at once on every publish; reports per pod what it applied.
//
// - Reads follow flags/current and read that epoch's documents pinned to one revision, so a
//   snapshot is always one publish, complete.
// - Survives etcd restarts (the watch resumes from its last revision) and a watch cancelled
//   because its revision was compacted (etcd3 then emits only `error`): it re-reads the pointer
//   at the current revision and re-watches from the revision after it, so no change is missed.
// - Through an outage it keeps the last good snapshot; after `graceMs` without the store it
//   enters fallback (server mode always works), and leaves it as the recovery policy says.
// - A malformed pointer or document is logged and ignored; the last good snapshot stays.
// - Its report (epoch applied, mode, reason, since) lives under an etcd lease, so a dead pod's
//   report disappears by itself.
// - A region-wide pod may also hold single zones in fallback (zone triggers, each zone with its
//   own latch: losing the coordinator must not stop zones that never ran P2P) and report per-zone
//   facts it owns (reportZones); both go into the report's `zones` for the Zone's status.
import { EventEmitter } from "node:events";
import type { Etcd3, IKeyValue, Lease } from "etcd3";
import { DEFAULT_RECOVERY, FallbackLatch, type RecoveryPolicy } from "./fallback.ts";
import {
  canonicalJson,
  effectiveP2P,
  isKnownService,
  type Layout,
  layout,
  MalformedDocument,
  type PodMode,
  type PodReport,
  parsePointer,
  parseZoneFlags,
  type ZoneFlags,
  type ZoneReport,
} from "./layout.ts";
import { batchedPut, type PointerSubscriber, pointerHub } from "./shared.ts";

export interface FlagLogger {
  error(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
}

export const consoleLogger: FlagLogger = {
  error: (msg, fields) => console.error(JSON.stringify({ level: "error", msg, ...fields })),
  warn: (msg, fields) => console.error(JSON.stringify({ level: "warn", msg, ...fields })),
  info: () => {},
};

export interface FlagClientOptions {
  client: Etcd3;
  prefix?: string;
  /** The region's namespace. */
  namespace: string;
  /** The zone a map server serves; omit for a region-wide pod (gateway, coordinator, ...). */
  zone?: string;
  service: string;
  pod: string;
  /** How long the flag store may be unreachable before the pod enters fallback. Default 10 s. */
  graceMs?: number;
  /** TTL of the report's lease. Default 10 s. */
  reportTtlSeconds?: number;
  /** Write reports (default true). */
  report?: boolean;
  log?: FlagLogger;
  now?: () => number;
  /** Documents per range read for region-wide pods. */
  pageSize?: number;
}

export interface FlagSnapshot {
  /** 0 when nothing was ever published (everything is disabled). */
  readonly epoch: number;
  readonly dir: string;
  /** The store revision the snapshot was read at. */
  readonly revision: number;
  /** By zone name. */
  readonly zones: ReadonlyMap<string, ZoneFlags>;
}

export interface FlagState {
  epoch: number;
  mode: PodMode;
  reason: string;
  /** When the pod entered this mode (ms since epoch). */
  since: number;
  rejectedEpoch?: number;
}

const EMPTY: FlagSnapshot = { epoch: 0, dir: "", revision: 0, zones: new Map() };

const STORE_TRIGGER = "flag-store";

const READ_CACHE_ENTRIES = 4096;
const readCache = new WeakMap<Etcd3, Map<string, Promise<[string, string][]>>>();

type Pending = { kind: "pointer"; kv: IKeyValue | undefined; revision: number } | { kind: "resync" };

function isCompacted(err: unknown): boolean {
  return /compact/i.test(String((err as Error)?.message ?? err));
}

export declare interface FlagClient {
  on(event: "snapshot", handler: (snap: FlagSnapshot, previous: FlagSnapshot) => void): this;
  on(event: "state", handler: (state: FlagState) => void): this;
  on(event: "reported", handler: (report: PodReport) => void): this;
}

// biome-ignore lint/suspicious/noUnsafeDeclarationMerging: typed events for an EventEmitter subclass
export class FlagClient extends EventEmitter {
  readonly layout: Layout;
  private readonly opts: Required<
    Pick<FlagClientOptions, "graceMs" | "reportTtlSeconds" | "report" | "pageSize">
  > &
    FlagClientOptions;
  private readonly log: FlagLogger;
  private readonly now: () => number;
  private snap: FlagSnapshot = EMPTY;
  private rejectedEpoch: number | undefined;
  private state: FlagState;
  private readonly latch = new FallbackLatch();
  private readonly zoneLatches = new Map<string, FallbackLatch>();
  /** Zone fallbacks in force at the last recompute, by zone (reason, since). */
  private zoneHeld = new Map<string, { reason: string; since: number }>();
  private reportedZones: ReadonlyMap<string, ZoneReport> = new Map();
  private subscribed = false;
  private readonly sub: PointerSubscriber = {
    put: (kv) => this.enqueue({ kind: "pointer", kv, revision: Number(kv.mod_revision) }),
    delete: (kv) => this.enqueue({ kind: "pointer", kv: undefined, revision: Number(kv.mod_revision) }),
    disconnected: (err) => this.storeDown(err),
    connected: () => this.storeUp(),
    resync: (err) => {
      // The watch was cancelled by etcd (e.g. its revision was compacted while we were away)
      // and is established again: re-read everything.
      this.log.warn("flag watch cancelled; re-syncing", { error: String(err) });
      this.enqueue({ kind: "resync" });
    },
  };
  private pending: Pending | undefined;
  private running = false;
  private closed = false;
  private storeDownSince: number | undefined;
  private graceTimer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private retryDelay = 100;
  private latchTimer: NodeJS.Timeout | undefined;
  private lease: Lease | undefined;
  private reportWriting = false;
  private reportDirty = false;
  private reportTimer: NodeJS.Timeout | undefined;
  private lastReported = "";
  private firstLoad: Promise<void>;
  private resolveFirstLoad: () => void = () => {};

  constructor(opts: FlagClientOptions) {
    super();
    this.opts = { graceMs: 10_000, reportTtlSeconds: 10, report: true, pageSize: 500, ...opts };
    this.layout = layout(opts.prefix);
    this.log = opts.log ?? consoleLogger;
    this.now = opts.now ?? Date.now;
    this.state = { epoch: 0, mode: "server", reason: "no flags loaded yet", since: this.now() };
    this.firstLoad = new Promise((r) => {
      this.resolveFirstLoad = r;
    });
  }

  /** Loads the snapshot (or gives up waiting after the first failed attempt) and starts watching. */
  async start(): Promise<void> {
    this.pending = { kind: "resync" };
    this.kick();
    await this.firstLoad;
  }

  snapshot(): FlagSnapshot {
    return this.snap;
  }

  current(): FlagState {
    return { ...this.state };
  }

  zoneFlags(zone = this.opts.zone): ZoneFlags | undefined {
    return zone === undefined ? undefined : this.snap.zones.get(zone);
  }

  /** Effective P2P for this pod's service in `zone` (default: its own), counting local fallback. */
  p2p(zone = this.opts.zone): boolean {
    return this.zoneMode(zone).mode === "p2p";
  }

  /**
   * This pod's mode for `zone`: fallback when the flags say so, or when P2P is on but held off
   * here (the pod's latch, or the zone's own); server when P2P is off.
   */
  zoneMode(zone = this.opts.zone): { mode: PodMode; reason: string } {
    const doc = this.zoneFlags(zone);
    const svc = doc?.services[this.opts.service];
    if (doc?.fallback) return { mode: "fallback", reason: doc.reason ?? "fallback forced" };
    if (svc?.fallback) return { mode: "fallback", reason: svc.reason ?? "fallback forced" };
    if (!effectiveP2P(doc, this.opts.service)) return { mode: "server", reason: "P2P off" };
    const pod = this.latchState();
    if (pod.active) return { mode: "fallback", reason: pod.reason };
    const held = zone === undefined ? undefined : this.zoneLatchState(zone);
    if (held?.active) return { mode: "fallback", reason: held.reason };
    return { mode: "p2p", reason: "P2P enabled" };
  }

  /** Whether `map` in `zone` may run P2P (towns only when the policy includes them). */
  mapP2P(map: string, zone = this.opts.zone): boolean {
    if (!this.p2p(zone)) return false;
    const m = this.zoneFlags(zone)?.maps.find((x) => x.name === map);
    return m === undefined ? this.zoneFlags(zone)!.maps.length === 0 : m.p2p;
  }

  /** A workload-detected failure (coordinator unreachable, mesh quality past thresholds, ...). */
  trigger(name: string, reason: string): void {
    this.latch.set(name, reason, this.now(), this.recovery());
    this.recompute();
  }

  clearTrigger(name: string): void {
    this.latch.clear(name, this.now());
    this.recompute();
  }

  /** A failure that concerns single zones only; each zone's own latch recovers as its policy says. */
  triggerZones(zones: Iterable<string>, name: string, reason: string): void {
    for (const zone of zones) {
      let latch = this.zoneLatches.get(zone);
      if (latch === undefined) {
        latch = new FallbackLatch();
        this.zoneLatches.set(zone, latch);
      }
      latch.set(name, reason, this.now(), this.zoneFlags(zone)?.recovery ?? DEFAULT_RECOVERY);
    }
    this.recompute();
  }

  clearZoneTriggers(zones: Iterable<string>, name: string): void {
    for (const zone of zones) this.zoneLatches.get(zone)?.clear(name, this.now());
    this.recompute();
  }

  /** Zones this pod holds in fallback on its own, with why and since when. */
  heldZones(): ReadonlyMap<string, { reason: string; since: number }> {
    return this.zoneHeld;
  }

  /**
   * Per-zone facts this pod owns (a coordinator's zone fallback and peer counts): replaces what
   * was reported before. Zone latches' fallbacks are added to them in the report.
   */
  reportZones(zones: ReadonlyMap<string, ZoneReport>): void {
    this.reportedZones = zones;
    this.scheduleReport();
  }

  /**
   * Stops without a goodbye, as a killed pod would: no lease revoke, no more keepalives, so the
   * report expires with the lease. For tests and simulations.
   */
  crash(): void {
    this.closed = true;
    for (const t of [this.graceTimer, this.retryTimer, this.latchTimer, this.reportTimer]) clearTimeout(t);
    void this.hub().unsubscribe(this.sub);
    this.lease?.release();
    this.lease = undefined;
    this.resolveFirstLoad();
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const t of [this.graceTimer, this.retryTimer, this.latchTimer, this.reportTimer]) clearTimeout(t);
    await this.hub().unsubscribe(this.sub);
    const lease = this.lease;
    this.lease = undefined;
    await lease?.revoke().catch(() => undefined);
    this.resolveFirstLoad();
  }

  // ---- loading ----------------------------------------------------------------------------

  private kick(): void {
    if (this.running || this.closed) return;
    this.running = true;
    void this.drain().finally(() => {
      this.running = false;
      if (this.pending !== undefined && this.retryTimer === undefined) this.kick();
    });
  }

  private async drain(): Promise<void> {
    while (this.pending !== undefined && !this.closed) {
      const p = this.pending;
      this.pending = undefined;
      try {
        if (p.kind === "resync") await this.resync();
        else await this.applyPointer(p.kv, p.revision);
        this.retryDelay = 100;
      } catch (err) {
        if (this.closed) return;
        const compacted = isCompacted(err);
        if (!compacted) this.storeDown(err);
        this.log.warn("flag load failed; re-syncing", { error: String(err), compacted });
        // Either way the safe move is a full re-sync at the current revision (a newer pointer
        // that arrived meanwhile is subsumed by it).
        this.pending = { kind: "resync" };
        if (compacted && this.retryDelay === 100) {
          this.retryDelay = 200; // one immediate re-sync; a second compaction in a row waits
          continue;
        }
        this.resolveFirstLoad();
        this.retryTimer = setTimeout(() => {
          this.retryTimer = undefined;
          this.kick();
        }, this.retryDelay);
        this.retryDelay = Math.min(this.retryDelay * 2, 2000);
        return;
      }
    }
  }

  private hub() {
    return pointerHub(this.opts.client, this.layout.pointer);
  }

  /**
   * Makes sure the pointer is watched (one shared watch per connection), then reads the pointer
   * at the current revision and applies it. Watch first, read second: every change is either in
   * the read or delivered by the watch.
   */
  private async resync(): Promise<void> {
    if (!this.subscribed) {
      await this.opts.client.get(this.layout.pointer).exec(); // fails fast while etcd is down
      await this.hub().subscribe(this.sub);
      this.subscribed = true;
      if (this.closed) return;
    }
    const res = await this.opts.client.get(this.layout.pointer).exec();
    const revision = Number(res.header.revision);
    await this.applyPointer(res.kvs[0], revision);
    this.storeUp();
    this.resolveFirstLoad();
  }

  private enqueue(p: Pending): void {
    // A resync subsumes any pointer; a newer pointer subsumes an older one.
    if (this.pending?.kind === "resync" && p.kind === "pointer") return;
    this.pending = p;
    this.kick();
  }

  /**
   * Applies the pointer `kv` by reading its directory at `revision`: the pointer's own mod
   * revision for a watch event, the read's header revision for a re-sync (any revision at which
   * the pointer holds this value sees the directory whole).
   */
  private async applyPointer(kv: IKeyValue | undefined, revision: number): Promise<void> {
    const l = this.layout;
    // Already reflected by a read at a later revision (a shared watch may deliver it late).
    if (kv !== undefined && Number(kv.mod_revision) <= this.snap.revision) return;
    if (kv === undefined) {
      if (this.snap.epoch === 0) {
        this.recompute();
        return;
      }
      this.log.warn("flag pointer deleted: all zones fall back to server mode");
      this.swap({ epoch: 0, dir: "", revision, zones: new Map() });
      return;
    }
    let pointer: ReturnType<typeof parsePointer>;
    try {
      pointer = parsePointer(l.pointer, kv.value.toString());
    } catch (err) {
      this.log.error(String((err as Error).message), { key: l.pointer });
      return;
    }
    if (pointer.epoch === this.snap.epoch && pointer.dir === this.snap.dir) return;
    if (pointer.epoch < this.snap.epoch) {
      this.log.warn("flag epoch went backwards; ignored", { epoch: pointer.epoch, applied: this.snap.epoch });
      return;
    }
    const at = revision;
    const zones = new Map<string, ZoneFlags>();
    try {
      for (const [key, value] of await this.readDocs(pointer.dir, at)) {
        const doc = parseZoneFlags(key, value);
        const where = l.parseZoneKey(pointer.dir, key);
        if (where === undefined || where.namespace !== doc.namespace || where.zone !== doc.zone) {
          throw new MalformedDocument(key, "namespace/zone do not match the key");
        }
        zones.set(doc.zone, doc);
      }
    } catch (err) {
      if (!(err instanceof MalformedDocument)) throw err;
      this.log.error(err.message, { key: err.key, epoch: pointer.epoch, keptEpoch: this.snap.epoch });
      this.rejectedEpoch = pointer.epoch;
      this.recompute();
      return;
    }
    this.rejectedEpoch = undefined;
    this.swap({ epoch: pointer.epoch, dir: pointer.dir, revision: at, zones });
  }

  /**
   * Reads at a pinned revision never change, so clients sharing one etcd connection (many
   * simulated pods, or one process serving several zones) share them.
   */
  private readDocs(dir: string, revision: number): Promise<[string, string][]> {
    const scope = this.opts.zone !== undefined ? `z:${this.opts.zone}` : "ns";
    const key = `${this.layout.prefix}|${dir}|${this.opts.namespace}|${scope}@${revision}`;
    let cache = readCache.get(this.opts.client);
    if (cache === undefined) {
      cache = new Map();
      readCache.set(this.opts.client, cache);
    }
    const hit = cache.get(key);
    if (hit !== undefined) return hit;
    const read = this.readDocsNow(dir, revision);
    cache.set(key, read);
    const c = cache;
    // Kept only briefly: long enough for the clients woken by the same pointer event.
    read.then(
      () => setTimeout(() => c.delete(key), 2000).unref(),
      () => c.delete(key),
    );
    // Bounded: the oldest entries go first (Map keeps insertion order).
    if (c.size > READ_CACHE_ENTRIES) c.delete(c.keys().next().value!);
    return read;
  }

  private async readDocsNow(dir: string, revision: number): Promise<[string, string][]> {
    const l = this.layout;
    const c = this.opts.client;
    if (this.opts.zone !== undefined) {
      const res = await c
        .get(l.zoneKey(dir, this.opts.namespace, this.opts.zone))
        .revision(revision)
        .exec();
      return res.kvs.map((kv) => [kv.key.toString(), kv.value.toString()]);
    }
    const prefix = l.zonesPrefix(dir, this.opts.namespace);
    const end = prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
    const out: [string, string][] = [];
    let start = prefix;
    for (;;) {
      const res = await c
        .getAll()
        .inRange({ start, end })
        .revision(revision)
        .limit(this.opts.pageSize)
        .exec();
      for (const kv of res.kvs) out.push([kv.key.toString(), kv.value.toString()]);
      if (!res.more || res.kvs.length === 0) return out;
      start = `${res.kvs[res.kvs.length - 1]!.key.toString()}\0`;
    }
  }

  private swap(next: FlagSnapshot): void {
    const prev = this.snap;
    this.snap = next;
    this.emit("snapshot", next, prev);
    this.recompute();
  }

  // ---- store health and fallback -------------------------------------------------------------

  private storeDown(err: unknown): void {
    if (this.closed || this.storeDownSince !== undefined) return;
    this.storeDownSince = this.now();
    this.log.warn("flag store unreachable; keeping the last good snapshot", {
      error: String(err),
      graceMs: this.opts.graceMs,
    });
    this.graceTimer = setTimeout(() => {
      this.graceTimer = undefined;
      this.latch.set(
        STORE_TRIGGER,
        `flag store unreachable for more than ${this.opts.graceMs} ms`,
        this.now(),
        this.recovery(),
      );
      this.recompute();
    }, this.opts.graceMs);
  }

  private storeUp(): void {
    if (this.storeDownSince === undefined) return;
    this.storeDownSince = undefined;
    clearTimeout(this.graceTimer);
    this.graceTimer = undefined;
    this.latch.clear(STORE_TRIGGER, this.now());
    this.recompute();
    this.scheduleReport(); // reports written during the outage failed
  }

  private recovery(): RecoveryPolicy {
    const docs = this.opts.zone !== undefined ? [this.zoneFlags()] : [...this.snap.zones.values()];
    const r = docs.find((d) => d !== undefined)?.recovery;
    return r ?? DEFAULT_RECOVERY;
  }

  private zoneLatchState(zone: string) {
    const latch = this.zoneLatches.get(zone);
    if (latch === undefined) return undefined;
    const doc = this.zoneFlags(zone);
    return latch.evaluate(this.now(), doc?.recovery ?? DEFAULT_RECOVERY, this.switchedOn(doc));
  }

  private latchState() {
    const enabled =
      this.opts.zone !== undefined
        ? this.switchedOn(this.zoneFlags())
        : [...this.snap.zones.values()].some((d) => this.switchedOn(d));
    return this.latch.evaluate(this.now(), this.recovery(), enabled);
  }

  private switchedOn(doc: ZoneFlags | undefined): boolean {
    const s = doc?.services[this.opts.service];
    return doc?.enabled === true && s?.enabled === true;
  }

  /** Mode of this pod from the snapshot and the latch. */
  private modeNow(): { mode: PodMode; reason: string } {
    const latch = this.latchState();
    if (latch.active) return { mode: "fallback", reason: latch.reason };
    const svc = this.opts.service;
    if (!isKnownService(svc)) return { mode: "server", reason: `unknown service ${svc}` };
    if (this.snap.epoch === 0) return { mode: "server", reason: "no flags published" };
    const docs = this.opts.zone !== undefined ? [this.zoneFlags()] : [...this.snap.zones.values()];
    if (this.opts.zone !== undefined && docs[0] === undefined) {
      return { mode: "server", reason: `zone ${this.opts.zone} is unknown to the flags` };
    }
    let firstFallback: string | undefined;
    let firstOff: string | undefined;
    let anyP2P = false;
    for (const d of docs) {
      if (d === undefined) continue;
      const s = d.services[svc];
      if (effectiveP2P(d, svc)) {
        const held = this.zoneHeld.get(d.zone);
        if (held === undefined) anyP2P = true;
        else firstFallback ??= `${d.zone}: ${held.reason}`;
        continue;
      }
      if (d.fallback || s?.fallback)
        firstFallback ??= `${d.zone}: ${(d.fallback ? d.reason : s?.reason) ?? "fallback"}`;
      else if (!s?.enabled) firstOff ??= `${d.zone}: ${s?.reason ?? `${svc} not enabled`}`;
      else if (!d.enabled) firstOff ??= `${d.zone}: ${d.reason ?? "zone disabled"}`;
    }
    if (anyP2P)
      return {
        mode: "p2p",
        reason: this.opts.zone !== undefined ? "P2P enabled" : "P2P enabled in some zones",
      };
    if (firstFallback !== undefined) return { mode: "fallback", reason: firstFallback };
    return { mode: "server", reason: firstOff ?? "no zones" };
  }

  /** Evaluates the zone latches (dropping released ones) and wakes up for the next release. */
  private holdZones(): boolean {
    const now = this.now();
    let wake = this.latchState().releaseAt;
    const held = new Map<string, { reason: string; since: number }>();
    for (const zone of [...this.zoneLatches.keys()].sort()) {
      const s = this.zoneLatchState(zone)!;
      // A released latch stays: it remembers its entries, so a zone that keeps flapping waits
      // longer each time (at most one latch per zone ever triggered).
      if (!s.active) continue;
      // A zone where P2P is off has nothing to fall back from (the latch stays for when it is on).
      if (!effectiveP2P(this.zoneFlags(zone), this.opts.service)) continue;
      held.set(zone, { reason: s.reason, since: s.since });
      if (s.releaseAt !== undefined) wake = Math.min(wake ?? s.releaseAt, s.releaseAt);
    }
    clearTimeout(this.latchTimer);
    if (wake !== undefined) this.latchTimer = setTimeout(() => this.recompute(), Math.max(0, wake - now) + 1);
    const changed = canonicalJson([...held]) !== canonicalJson([...this.zoneHeld]);
    this.zoneHeld = held;
    return changed;
  }

  private recompute(): void {
    if (this.closed) return;
    const zonesChanged = this.holdZones();
    const { mode, reason } = this.modeNow();
    const prev = this.state;
    const next: FlagState = {
      epoch: this.snap.epoch,
      mode,
      reason,
      since: mode === prev.mode ? prev.since : this.now(),
    };
    if (this.rejectedEpoch !== undefined) next.rejectedEpoch = this.rejectedEpoch;
    if (
      !zonesChanged &&
      next.epoch === prev.epoch &&
      next.mode === prev.mode &&
      next.reason === prev.reason &&
      next.rejectedEpoch === prev.rejectedEpoch
    ) {
      return;
    }
    this.state = next;
    this.emit("state", { ...next });
    this.scheduleReport();
  }

  // ---- reports -------------------------------------------------------------------------------

  private buildReport(): PodReport {
    const s = this.state;
    const r: PodReport = {
      v: 1,
      pod: this.opts.pod,
      namespace: this.opts.namespace,
      service: this.opts.service,
      epoch: s.epoch,
      mode: s.mode,
      reason: s.reason,
      since: new Date(s.since).toISOString(),
      updatedAt: "",
    };
    if (this.opts.zone !== undefined) r.zone = this.opts.zone;
    if (s.rejectedEpoch !== undefined) r.rejectedEpoch = s.rejectedEpoch;
    const zones: Record<string, ZoneReport> = {};
    for (const [zone, z] of this.reportedZones) zones[zone] = { ...z };
    for (const [zone, h] of this.zoneHeld)
      zones[zone] = {
        ...zones[zone],
        fallback: { reason: h.reason, since: new Date(h.since).toISOString() },
      };
    if (Object.keys(zones).length > 0) r.zones = zones;
    return r;
  }

  private scheduleReport(): void {
    if (!this.opts.report || this.closed) return;
    this.reportDirty = true;
    if (this.reportWriting) return;
    void this.writeReports();
  }

  private async writeReports(): Promise<void> {
    this.reportWriting = true;
    try {
      while (this.reportDirty && !this.closed) {
        this.reportDirty = false;
        const report = this.buildReport();
        const body = canonicalJson(report);
        if (body === this.lastReported && this.lease !== undefined) continue;
        report.updatedAt = new Date(this.now()).toISOString();
        try {
          const lease = this.ensureLease();
          const key = this.layout.reportKey(this.opts.namespace, this.opts.zone, this.opts.pod);
          await batchedPut(this.opts.client, key, JSON.stringify(report), String(await lease.grant()));
          this.lastReported = body;
          this.emit("reported", report);
        } catch (err) {
          if (this.closed) return;
          this.log.warn("report write failed; retrying", { error: String(err) });
          if (/lease not found/i.test(String(err))) {
            // The lease expired (a long outage): grant a new one.
            this.lease?.release();
            this.lease = undefined;
          }
          this.reportDirty = true;
          clearTimeout(this.reportTimer);
          this.reportTimer = setTimeout(() => this.scheduleReport(), 500);
          return;
        }
      }
    } finally {
      this.reportWriting = false;
    }
  }

  private ensureLease(): Lease {
    if (this.lease !== undefined && !this.lease.revoked()) return this.lease;
    const lease = this.opts.client.lease(this.opts.reportTtlSeconds);
    lease.on("lost", (err) => {
      if (this.lease !== lease) return;
      this.log.warn("report lease lost; re-creating", { error: String(err) });
      this.lease = undefined;
      this.lastReported = "";
      this.scheduleReport();
    });
    this.lease = lease;
    return lease;
  }
}
