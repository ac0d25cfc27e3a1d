// The report channel: what each pod applied travels on NATS core, not etcd.
//
// Sending (ReportSender, one per NATS connection, shared by the flag clients on it): a report is
// published when it changes; every third of its ttl the pod is named in a heartbeat (one message
// per connection and namespace naming every pod due, so a process of many pods sends one); a
// clean close publishes a goodbye. A receiver forgets a report whose pod was not named within its
// ttl, so a dead pod's report disappears by itself, as a key under an etcd lease would. A
// receiver that starts (or reconnects, or hears a heartbeat of a pod it does not know, or of a
// report version it does not hold: the change was lost) asks the pods of a namespace to report
// again at once (the sync subject), so no lost message leaves a stale report standing.
//
// Receiving (ReportTable): one subscription, the reports in memory by pod, expiry, and a
// `change` event naming the zones whose reports changed (for folding status per zone).
//
// Why NATS and not keys under etcd leases (docs/flags.md): a report is a small message that
// 10,000 pods send within milliseconds of a publish. NATS delivers such a burst to the operator
// in about 50 ms on this machine; the same reports as etcd puts take 120 to 330 ms when many pods
// share one transaction and over a second as one put per pod (what separate pods do), and each
// burst adds 10,000 revisions to the flag store's history, which has to be compacted, which in
// turn makes lagging flag readers re-sync. Liveness costs the same either way: a heartbeat per
// pod every ttl/3 (here a NATS message to the receivers, there a lease keepalive to etcd).
import { EventEmitter } from "node:events";
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import {
  type Layout,
  type PodReport,
  parseReportMessage,
  REGION_SCOPE,
  type ReportAlive,
  type ReportGone,
  type ReportMessage,
} from "./layout.ts";

interface Entry {
  id: string;
  /** The report's version (a hash of its body), named in heartbeats; computed at the first. */
  ver?: string;
  subject: string;
  namespace: string;
  body: string;
  ttlSeconds: number;
  nextAt: number;
}

const HEARTBEAT_TICK_MS = 250;
/** Pods named in one heartbeat message at most. */
const ALIVE_PER_MESSAGE = 1000;

/** Publishes the reports of the flag clients on one NATS connection and repeats them. */
export class ReportSender {
  private readonly nc: NatsConnection;
  private readonly layout: Layout;
  private readonly entries = new Map<string, Entry>();
  private readonly syncSubs = new Map<string, { sub: Subscription; users: number }>();
  private timer: NodeJS.Timeout | undefined;
  private outgoing: Entry[] = [];

  constructor(nc: NatsConnection, l: Layout) {
    this.nc = nc;
    this.layout = l;
  }

  /** Publishes `report` now and names its pod in heartbeats until replaced or stopped. */
  send(report: PodReport, ttlSeconds: number): void {
    const id = this.layout.reportId(report.namespace, report.zone, report.pod);
    const msg: ReportMessage = { ...report, ttlSeconds };
    const body = JSON.stringify(msg);
    const entry: Entry = {
      id,
      subject: this.layout.reportSubject(report.namespace),
      namespace: report.namespace,
      body,
      ttlSeconds,
      nextAt: 0,
    };
    if (!this.entries.has(id)) this.watchSync(report.namespace, +1);
    this.entries.set(id, entry);
    // Published after this turn's I/O: the reports of every pod woken by the same watch events
    // leave in one socket write (NATS flushes once per batch), not one per zone.
    this.outgoing.push(entry);
    if (this.outgoing.length === 1) setImmediate(() => this.flushOutgoing());
    this.timer ??= setInterval(() => this.heartbeat(), HEARTBEAT_TICK_MS);
    this.timer.unref();
  }

  private flushOutgoing(): void {
    const now = Date.now();
    const batch = this.outgoing;
    this.outgoing = [];
    // Only the latest report of a pod (an older one queued in the same turn is superseded).
    for (const e of batch) if (this.entries.get(e.id) === e) this.publish(e, now);
  }

  /** Stops repeating a pod's report; with `goodbye`, receivers drop it at once (a clean close). */
  stop(namespace: string, zone: string | undefined, pod: string, goodbye: boolean): void {
    const id = this.layout.reportId(namespace, zone, pod);
    const e = this.entries.get(id);
    if (e === undefined) return;
    this.entries.delete(id);
    this.watchSync(namespace, -1);
    if (goodbye && !this.nc.isClosed()) {
      const bye: ReportGone = { v: 1, gone: true, pod, namespace, ...(zone === undefined ? {} : { zone }) };
      this.nc.publish(e.subject, JSON.stringify(bye));
    }
    if (this.entries.size === 0) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  private publish(e: Entry, now: number): void {
    if (this.nc.isClosed()) return;
    this.nc.publish(e.subject, e.body);
    this.due(e, now);
  }

  /** Jittered, so pods that reported together are not all named in one heartbeat ever after. */
  private due(e: Entry, now: number): void {
    e.nextAt = now + ((e.ttlSeconds * 1000) / 3) * (0.8 + 0.2 * Math.random());
  }

  /** One message per subject and ttl naming every pod whose heartbeat is due. */
  private heartbeat(): void {
    if (this.nc.isClosed()) return;
    const now = Date.now();
    const batches = new Map<string, { subject: string; ttlSeconds: number; ids: string[] }>();
    for (const e of this.entries.values()) {
      if (e.nextAt > now) continue;
      const k = `${e.subject} ${e.ttlSeconds}`;
      let b = batches.get(k);
      if (b === undefined) {
        b = { subject: e.subject, ttlSeconds: e.ttlSeconds, ids: [] };
        batches.set(k, b);
      }
      e.ver ??= versionOf(e.body);
      b.ids.push(`${e.id}#${e.ver}`);
      this.due(e, now);
    }
    for (const b of batches.values()) {
      for (let i = 0; i < b.ids.length; i += ALIVE_PER_MESSAGE) {
        const alive: ReportAlive = {
          v: 1,
          alive: b.ids.slice(i, i + ALIVE_PER_MESSAGE),
          ttlSeconds: b.ttlSeconds,
        };
        this.nc.publish(b.subject, JSON.stringify(alive));
      }
    }
  }

  private watchSync(namespace: string, delta: number): void {
    const s = this.syncSubs.get(namespace);
    if (s !== undefined) {
      s.users += delta;
      if (s.users <= 0) {
        s.sub.unsubscribe();
        this.syncSubs.delete(namespace);
      }
      return;
    }
    if (delta <= 0 || this.nc.isClosed()) return;
    const sub = this.nc.subscribe(this.layout.syncSubject(namespace), {
      callback: () => {
        const now = Date.now();
        for (const e of this.entries.values()) if (e.namespace === namespace) this.publish(e, now);
      },
    });
    this.syncSubs.set(namespace, { sub, users: delta });
  }
}

/** A report's version: FNV-1a of its body (what the sender sent is what the receiver got). */
export function versionOf(body: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < body.length; i++) h = Math.imul(h ^ body.charCodeAt(i), 0x01000193) >>> 0;
  return h.toString(36);
}

const senders = new WeakMap<NatsConnection, Map<string, ReportSender>>();

/** The sender of one NATS connection and key prefix, shared by every flag client on it. */
export function reportSender(nc: NatsConnection, l: Layout): ReportSender {
  let byPrefix = senders.get(nc);
  if (byPrefix === undefined) {
    byPrefix = new Map();
    senders.set(nc, byPrefix);
  }
  let s = byPrefix.get(l.prefix);
  if (s === undefined) {
    s = new ReportSender(nc, l);
    byPrefix.set(l.prefix, s);
  }
  return s;
}

// ---- receiving -------------------------------------------------------------------------------

function versionOfHeld(held: Held): string {
  held.ver ??= versionOf(held.raw);
  return held.ver;
}

interface Held {
  report: PodReport;
  raw: string;
  /** versionOf(raw), computed when a heartbeat first names it: off the path of a publish's burst. */
  ver?: string;
  expiresAt: number;
}

export interface ReportTableOptions {
  /** Only this namespace's reports; every namespace when unset. */
  namespace?: string;
  /** Namespaces asked to report again when the table starts or reconnects (default: `namespace`). */
  syncNamespaces?: () => Iterable<string>;
  onError?: (msg: string) => void;
  /** Called with every accepted report as it arrives (benchmarks: when the ack reached us). */
  onReport?: (report: PodReport) => void;
  now?: () => number;
}

/** `<namespace>/<zone>` of a report: `_` for region-wide pods. */
export const zoneKeyOf = (r: { namespace: string; zone?: string }): string =>
  `${r.namespace}/${r.zone ?? REGION_SCOPE}`;

export declare interface ReportTable {
  /** `zones`: `<namespace>/<zone>` (or `<namespace>/_` for region-wide pods) whose reports changed. */
  on(event: "change", handler: (zones: ReadonlySet<string>) => void): this;
}

/** The reports of the pods on one NATS connection, in memory, each gone when not repeated in time. */
// biome-ignore lint/suspicious/noUnsafeDeclarationMerging: typed events for an EventEmitter subclass
export class ReportTable extends EventEmitter {
  private readonly nc: NatsConnection;
  private readonly layout: Layout;
  private readonly opts: ReportTableOptions;
  private readonly now: () => number;
  private readonly byId = new Map<string, Held>();
  /** Report ids by `<namespace>/<zone>`. */
  private readonly byZone = new Map<string, Set<string>>();
  private sub: Subscription | undefined;
  private sweeper: NodeJS.Timeout | undefined;
  private changed = new Set<string>();
  private flushing = false;
  private closed = false;

  constructor(nc: NatsConnection, l: Layout, opts: ReportTableOptions = {}) {
    super();
    this.nc = nc;
    this.layout = l;
    this.opts = opts;
    this.now = opts.now ?? Date.now;
  }

  /** Subscribes, then asks the pods to report again; resolves once the request is sent. */
  async start(): Promise<void> {
    const subject =
      this.opts.namespace === undefined
        ? this.layout.reportsWildcard
        : this.layout.reportSubject(this.opts.namespace);
    this.sub = this.nc.subscribe(subject, {
      callback: (err, m) => {
        if (err) {
          this.opts.onError?.(`report subscription: ${String(err)}`);
          return;
        }
        // The subject is decoded only to name it in an error: most messages never need it.
        this.receive(m.string(), () => m.subject);
      },
    });
    this.sweeper = setInterval(() => this.sweep(), 500);
    this.sweeper.unref();
    void this.watchStatus();
    await this.sync();
  }

  /** Asks the pods of the sync namespaces to report again now. */
  async sync(): Promise<void> {
    if (this.nc.isClosed()) return;
    const namespaces = new Set(
      this.opts.syncNamespaces?.() ?? (this.opts.namespace === undefined ? [] : [this.opts.namespace]),
    );
    for (const ns of namespaces) this.nc.publish(this.layout.syncSubject(ns), "");
    await this.nc.flush().catch(() => undefined);
  }

  reports(): PodReport[] {
    return [...this.byId.values()].map((h) => h.report);
  }

  /** Reports of one zone's pods (`zone` undefined: the namespace's region-wide pods). */
  zoneReports(namespace: string, zone: string | undefined): PodReport[] {
    const ids = this.byZone.get(`${namespace}/${zone ?? REGION_SCOPE}`);
    if (ids === undefined) return [];
    const out: PodReport[] = [];
    for (const id of ids) {
      const h = this.byId.get(id);
      if (h !== undefined) out.push(h.report);
    }
    return out;
  }

  get size(): number {
    return this.byId.size;
  }

  close(): void {
    this.closed = true;
    clearInterval(this.sweeper);
    this.sub?.unsubscribe();
    this.sub = undefined;
  }

  private async watchStatus(): Promise<void> {
    // A reconnect may have lost reports sent meanwhile: ask again.
    for await (const s of this.nc.status()) {
      if (this.closed) return;
      if (s.type === "reconnect") void this.sync();
    }
  }

  private receive(raw: string, subject: () => string): void {
    let msg: ReportMessage | ReportGone | ReportAlive;
    try {
      msg = parseReportMessage(raw);
    } catch (err) {
      this.opts.onError?.(`${(err as Error).message} (on ${subject()})`);
      return;
    }
    const now = this.now();
    if ("alive" in msg) {
      const until = now + msg.ttlSeconds * 1000;
      let unknown: string | undefined;
      for (const named of msg.alive) {
        const hash = named.lastIndexOf("#");
        const id = hash < 0 ? named : named.slice(0, hash);
        const held = this.byId.get(id);
        if (held !== undefined) held.expiresAt = until;
        // A pod we do not know, or whose last report we missed (lost, or sent before we
        // listened): ask its namespace again.
        if (held === undefined || (hash >= 0 && versionOfHeld(held) !== named.slice(hash + 1)))
          unknown ??= id;
      }
      if (unknown !== undefined) this.syncSoon(unknown.slice(0, unknown.indexOf("/")));
      return;
    }
    const zk = zoneKeyOf(msg);
    const id = this.layout.reportId(msg.namespace, msg.zone, msg.pod);
    if ("gone" in msg) {
      if (this.drop(id)) this.mark(zk);
      return;
    }
    const held = this.byId.get(id);
    if (held !== undefined && held.raw === raw) {
      held.expiresAt = now + msg.ttlSeconds * 1000; // the same report again (a sync)
      return;
    }
    // The message is kept as the report: its ttlSeconds rides along (copying the object without
    // it cost more than the rest of receiving it).
    const report: PodReport = msg;
    const expiresAt = now + msg.ttlSeconds * 1000;
    if (held !== undefined) {
      // A newer report of a pod we hold: updated in place (its id, so its zone, is the same).
      // Deleting and re-adding 10k map entries per publish made the maps rehash and the GC run.
      held.report = report;
      held.raw = raw;
      held.ver = undefined;
      held.expiresAt = expiresAt;
    } else {
      this.byId.set(id, { report, raw, expiresAt });
      let ids = this.byZone.get(zk);
      if (ids === undefined) {
        ids = new Set();
        this.byZone.set(zk, ids);
      }
      ids.add(id);
    }
    this.opts.onReport?.(report);
    this.mark(zk);
  }

  private readonly syncedAt = new Map<string, number>();

  /** Asks one namespace's pods to report again, at most once a second. */
  private syncSoon(namespace: string): void {
    const now = this.now();
    if (now - (this.syncedAt.get(namespace) ?? 0) < 1000 || this.nc.isClosed()) return;
    this.syncedAt.set(namespace, now);
    this.nc.publish(this.layout.syncSubject(namespace), "");
  }

  private drop(id: string): boolean {
    const held = this.byId.get(id);
    if (held === undefined) return false;
    this.byId.delete(id);
    const zk = zoneKeyOf(held.report);
    const ids = this.byZone.get(zk);
    ids?.delete(id);
    if (ids?.size === 0) this.byZone.delete(zk);
    return true;
  }

  private sweep(): void {
    const now = this.now();
    for (const [id, h] of this.byId) {
      if (h.expiresAt <= now && this.drop(id)) this.mark(zoneKeyOf(h.report));
    }
  }

  /** Change events go out once per tick, naming every zone that changed in it. */
  private mark(zoneKey: string): void {
    this.changed.add(zoneKey);
    if (this.flushing) return;
    this.flushing = true;
    setImmediate(() => {
      this.flushing = false;
      const zones = this.changed;
      this.changed = new Set();
      this.emit("change", zones);
    });
  }
}
