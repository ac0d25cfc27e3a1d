// The flag client every workload uses: loads the live flags, then follows every publish and
// swaps its whole snapshot at once; reports per pod what it applied.
//
// - A map server (a client with a zone) watches its own zone key: each publish reaches it as one
//   watch event carrying its document, and it reads nothing else. A region-wide pod (gateway,
//   coordinator) watches the pointer and reads its namespace's zone keys pinned at the pointer's
//   revision, so its snapshot is always one publish, complete.
// - Survives etcd restarts (the watch resumes from its last revision) and a watch cancelled
//   because its revision was compacted (etcd3 then emits only `error`): it re-reads at the current
//   revision and re-watches from there, so no change is missed.
// - Through an outage it keeps the last good snapshot; after `graceMs` without the store it
//   enters fallback (server mode always works), and leaves it as the recovery policy says.
// - A malformed pointer or document is logged and ignored; the last good snapshot stays.
// - Its report (epoch applied, mode, reason, since) goes on the report channel (NATS,
//   reports.ts), repeated as a heartbeat, so a dead pod's report disappears by itself.
// - A region-wide pod may also hold single zones in fallback (zone triggers, each zone with its
//   own latch: losing the coordinator must not stop zones that never ran P2P) and report per-zone
//   facts it owns (reportZones); both go into the report's `zones` for the Zone's status.
import { EventEmitter } from "node:events";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Etcd3, IKeyValue } from "etcd3";
import { DEFAULT_RECOVERY, FallbackLatch, type RecoveryPolicy } from "./fallback.ts";
import {
  effectiveP2P,
  isKnownService,
  type Layout,
  layout,
  MalformedDocument,
  type PodMode,
  type PodReport,
  type PublishedZoneFlags,
  parsePointer,
  parsePublishedZone,
  type ZoneFlags,
  type ZoneReport,
} from "./layout.ts";
import { type ReportSender, reportSender } from "./reports.ts";
import { type KeySubscriber, keyHub, parseOnce } from "./shared.ts";

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
  /** The flag store. */
  client: Etcd3;
  /** The report channel (the Region's NATS); without it the pod reports nothing. */
  nats?: NatsConnection;
  prefix?: string;
  /** The region's namespace. */
  namespace: string;
  /** The zone a map server serves; omit for a region-wide pod (gateway, coordinator, ...). */
  zone?: string;
  service: string;
  pod: string;
  /** How long the flag store may be unreachable before the pod enters fallback. Default 10 s. */
  graceMs?: number;
  /** How long a report stands without being repeated (it is repeated every third of it). Default 10 s. */
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
  /** The publish id (`<epoch>-<fence>`), "" when none. */
  readonly publish: string;
  /** The store revision the snapshot was read at (for a map server: its document's mod revision). */
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

const EMPTY: FlagSnapshot = { epoch: 0, publish: "", revision: 0, zones: new Map() };

const STORE_TRIGGER = "flag-store";

const READ_CACHE_ENTRIES = 4096;
/** Pinned reads of a namespace's zone keys, shared by the region-wide clients of a connection. */
const readCache = new WeakMap<Etcd3, Map<string, Promise<IKeyValue[]>>>();

/** Work for the loader: a watched value (the pointer, or a map server's zone key), or a full re-read. */
type Pending = { kind: "event"; kv: IKeyValue | undefined; revision: number } | { kind: "resync" };

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
  private readonly sub: KeySubscriber = {
    put: (kv) => {
      // A map server applies its document in the watch callback itself when nothing else is
      // in progress (applying one document needs no read): no promise per pod and event.
      if (this.opts.zone !== undefined && !this.running && this.pending === undefined && !this.closed) {
        try {
          this.applyZone(kv, Number(kv.mod_revision));
          return;
        } catch {
          // fall through: the loader retries with a re-sync
        }
      }
      this.enqueue({ kind: "event", kv, revision: Number(kv.mod_revision) });
    },
    delete: (kv) => this.enqueue({ kind: "event", kv: undefined, revision: Number(kv.mod_revision) }),
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
  private readonly sender: ReportSender | undefined;
  private reportQueued = false;
  private lastReported = "";
  private firstLoad: Promise<void>;
  private resolveFirstLoad: () => void = () => {};

  constructor(opts: FlagClientOptions) {
    super();
    this.opts = { graceMs: 10_000, reportTtlSeconds: 10, report: true, pageSize: 500, ...opts };
    this.layout = layout(opts.prefix);
    this.sender =
      this.opts.report && opts.nats !== undefined ? reportSender(opts.nats, this.layout) : undefined;
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
    for (const t of [this.graceTimer, this.retryTimer, this.latchTimer]) clearTimeout(t);
    void this.hub().unsubscribe(this.sub);
    this.sender?.stop(this.opts.namespace, this.opts.zone, this.opts.pod, false);
    this.resolveFirstLoad();
  }

  /** Stops; receivers drop this pod's report at once. */
  async close(): Promise<void> {
    this.closed = true;
    for (const t of [this.graceTimer, this.retryTimer, this.latchTimer]) clearTimeout(t);
    await this.hub().unsubscribe(this.sub);
    this.sender?.stop(this.opts.namespace, this.opts.zone, this.opts.pod, true);
    await this.opts.nats?.flush().catch(() => undefined);
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
        else if (this.opts.zone !== undefined) this.applyZone(p.kv, p.revision);
        else await this.applyPointer(p.kv, p.revision);
        this.retryDelay = 100;
      } catch (err) {
        if (this.closed) return;
        const compacted = isCompacted(err);
        if (!compacted) this.storeDown(err);
        this.log.warn("flag load failed; re-syncing", { error: String(err), compacted });
        // Either way the safe move is a full re-sync at the current revision (a newer value that
        // arrived meanwhile is subsumed by it).
        this.pending = { kind: "resync" };
        if (compacted && this.retryDelay === 100) {
          this.retryDelay = 200; // one immediate re-sync; a second compaction in a row waits
          continue;
        }
        this.resolveFirstLoad();
        this.retryLater();
        return;
      }
    }
  }

  private retryLater(): void {
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.kick();
    }, this.retryDelay);
    this.retryDelay = Math.min(this.retryDelay * 2, 2000);
  }

  /** The watched key: a map server's own zone key, a region-wide pod's pointer. */
  private watchedKey(): string {
    const z = this.opts.zone;
    return z === undefined ? this.layout.pointer : this.layout.zoneKey(this.opts.namespace, z);
  }

  private hub() {
    return keyHub(this.opts.client, this.watchedKey());
  }

  /**
   * Makes sure the key is watched (one shared watch per connection), then reads it at the
   * current revision and applies it. Watch first, read second: every change is either in the
   * read or delivered by the watch.
   */
  private async resync(): Promise<void> {
    if (!this.subscribed) {
      await this.opts.client.get(this.watchedKey()).exec(); // fails fast while etcd is down
      await this.hub().subscribe(this.sub);
      this.subscribed = true;
      if (this.closed) return;
    }
    const { kv, revision } = await this.hub().latest();
    if (this.opts.zone !== undefined) this.applyZone(kv, revision);
    else await this.applyPointer(kv, revision, true);
    this.storeUp();
    this.resolveFirstLoad();
  }

  private enqueue(p: Pending): void {
    // A resync subsumes any event; a newer event subsumes an older one.
    if (this.pending?.kind === "resync" && p.kind === "event") return;
    this.pending = p;
    this.kick();
  }

  /** A map server's zone document (kv undefined: the key is gone, the zone unknown to the flags). */
  private applyZone(kv: IKeyValue | undefined, revision: number): void {
    const key = this.watchedKey();
    if (kv === undefined) {
      if (revision <= this.snap.revision) return;
      if (this.snap.zones.size > 0) this.log.warn("zone flags deleted: the zone is unknown to the flags");
      this.swap({ epoch: this.snap.epoch, publish: this.snap.publish, revision, zones: new Map() });
      return;
    }
    // Already reflected by a read at a later revision (a shared watch may deliver it late).
    if (Number(kv.mod_revision) <= this.snap.revision) return;
    let doc: PublishedZoneFlags;
    try {
      doc = parseOnce(kv, parsePublishedZone);
      if (doc.namespace !== this.opts.namespace || doc.zone !== this.opts.zone)
        throw new MalformedDocument(key, "namespace/zone do not match the key");
    } catch (err) {
      if (!(err instanceof MalformedDocument)) throw err;
      this.reject(err, /"epoch":(\d+)/.exec(kv.value.toString()));
      return;
    }
    if (doc.publish < this.snap.publish) {
      this.log.warn("flag epoch went backwards; ignored", { epoch: doc.epoch, applied: this.snap.epoch });
      return;
    }
    this.rejectedEpoch = undefined;
    const revisionOfDoc = Number(kv.mod_revision);
    this.swap({
      epoch: doc.epoch,
      publish: doc.publish,
      revision: revisionOfDoc,
      zones: new Map([[doc.zone, doc]]),
    });
  }

  private reject(err: MalformedDocument, epoch: RegExpExecArray | null | number | undefined): void {
    this.log.error(err.message, { key: err.key, keptEpoch: this.snap.epoch });
    const e = typeof epoch === "number" ? epoch : epoch ? Number(epoch[1]) : undefined;
    this.rejectedEpoch = e ?? this.snap.epoch + 1;
    this.recompute();
  }

  /**
   * A region-wide pod applies the pointer `kv` by reading its namespace's zone keys at the
   * pointer's mod revision, where all of them belong to that publish. After a re-sync whose
   * pointer revision has been compacted it reads at `revision` instead and takes the documents
   * only if they all belong to the pointer's publish (a publish in flight is waited out).
   */
  private async applyPointer(kv: IKeyValue | undefined, revision: number, resync = false): Promise<void> {
    const l = this.layout;
    // Already reflected by a read at a later revision (a shared watch may deliver it late).
    if (kv !== undefined && Number(kv.mod_revision) <= this.snap.revision) return;
    if (kv === undefined) {
      if (this.snap.epoch === 0) {
        this.recompute();
        return;
      }
      this.log.warn("flag pointer deleted: all zones fall back to server mode");
      this.swap({ epoch: 0, publish: "", revision, zones: new Map() });
      return;
    }
    let pointer: ReturnType<typeof parsePointer>;
    try {
      pointer = parseOnce(kv, parsePointer);
    } catch (err) {
      if (!(err instanceof MalformedDocument)) throw err;
      // Kept on the last good snapshot, and said in the report (the operator makes it an Event).
      this.reject(err, /"epoch":(\d+)/.exec(kv.value.toString()));
      return;
    }
    if (pointer.publish === this.snap.publish) return;
    if (pointer.publish < this.snap.publish) {
      this.log.warn("flag epoch went backwards; ignored", { epoch: pointer.epoch, applied: this.snap.epoch });
      return;
    }
    let at = Number(kv.mod_revision);
    let kvs: IKeyValue[];
    try {
      kvs = await this.readZones(at);
    } catch (err) {
      if (!resync || !isCompacted(err)) throw err;
      at = revision;
      kvs = await this.readZones(at);
    }
    const zones = new Map<string, ZoneFlags>();
    try {
      for (const d of kvs) {
        const key = d.key.toString();
        const doc = parseOnce(d, parsePublishedZone);
        const where = l.parseZoneKey(key);
        if (where === undefined || where.namespace !== doc.namespace || where.zone !== doc.zone) {
          throw new MalformedDocument(key, "namespace/zone do not match the key");
        }
        if (doc.publish !== pointer.publish) {
          if (doc.publish > pointer.publish) {
            // Read past the pointer while a publish was in flight: its flip comes next.
            // (Only after a compaction; its flip arrives by the watch, this is a safety net.)
            this.log.info("flag publish in flight; waiting for its flip", { epoch: pointer.epoch });
            clearTimeout(this.retryTimer);
            this.retryTimer = setTimeout(() => {
              this.retryTimer = undefined;
              this.enqueue({ kind: "resync" });
            }, 500);
            return;
          }
          throw new MalformedDocument(key, `belongs to ${doc.publish}, not to the live ${pointer.publish}`);
        }
        zones.set(doc.zone, doc);
      }
    } catch (err) {
      if (!(err instanceof MalformedDocument)) throw err;
      this.reject(err, pointer.epoch);
      return;
    }
    this.rejectedEpoch = undefined;
    this.swap({ epoch: pointer.epoch, publish: pointer.publish, revision: at, zones });
  }

  /**
   * The namespace's zone keys at a pinned revision, which never changes there, so region-wide
   * clients sharing one etcd connection share the read.
   */
  private readZones(revision: number): Promise<IKeyValue[]> {
    const key = `${this.layout.prefix}|${this.opts.namespace}@${revision}`;
    let cache = readCache.get(this.opts.client);
    if (cache === undefined) {
      cache = new Map();
      readCache.set(this.opts.client, cache);
    }
    const hit = cache.get(key);
    if (hit !== undefined) return hit;
    const read = this.readZonesNow(revision);
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

  private async readZonesNow(revision: number): Promise<IKeyValue[]> {
    const prefix = this.layout.zonesPrefix(this.opts.namespace);
    const end = prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
    const out: IKeyValue[] = [];
    let start = prefix;
    for (;;) {
      const res = await this.opts.client
        .getAll()
        .inRange({ start, end })
        .revision(revision)
        .limit(this.opts.pageSize)
        .exec();
      out.push(...res.kvs);
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
    const docs = this.opts.zone !== undefined ? [this.zoneFlags()] : [...this.snap.zones.values()];
    // A map server reads only its zone's key: no document there is all it can know.
    if (this.opts.zone !== undefined && docs[0] === undefined) {
      return { mode: "server", reason: `zone ${this.opts.zone} is unknown to the flags` };
    }
    if (this.snap.epoch === 0) return { mode: "server", reason: "no flags published" };
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
    const changed = !sameHeld(held, this.zoneHeld);
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

  /** Reports go out once per tick, whatever changed in it. */
  private scheduleReport(): void {
    if (this.sender === undefined || this.closed || this.reportQueued) return;
    this.reportQueued = true;
    queueMicrotask(() => {
      this.reportQueued = false;
      this.sendReport();
    });
  }

  private sendReport(): void {
    if (this.sender === undefined || this.closed) return;
    const report = this.buildReport();
    // buildReport() builds its fields in one order, so equal reports stringify equal.
    const body = JSON.stringify(report);
    if (body === this.lastReported) return;
    report.updatedAt = new Date(this.now()).toISOString();
    try {
      this.sender.send(report, this.opts.reportTtlSeconds);
    } catch (err) {
      this.log.warn("report not sent", { error: String(err) });
      return;
    }
    this.lastReported = body;
    this.emit("reported", report);
  }
}

type Held = ReadonlyMap<string, { reason: string; since: number }>;

function sameHeld(a: Held, b: Held): boolean {
  if (a.size !== b.size) return false;
  for (const [zone, h] of a) {
    const o = b.get(zone);
    if (o === undefined || o.reason !== h.reason || o.since !== h.since) return false;
  }
  return true;
}
