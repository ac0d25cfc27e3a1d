// Map ownership through etcd: each map of a zone is owned by exactly one map-server pod.
//
// Keys (under the flag plane's prefix, default /hybridp2p/v1/; the `ownership/maps/` subtree is
// reserved for this in platform/flags/layout.ts):
//   <prefix>ownership/maps/<region>/<zone>/<map>         value = pod name, under the pod's lease
//   <prefix>ownership/maps/<region>/<zone>/_pods/<pod>   value = pod name, under the pod's lease
// A pod takes a map with one transaction "create the key if it does not exist" (etcd's create
// revision == 0), so two pods can never both succeed. The key's create revision is the
// ownership's fence: it grows with every new owner and tags everything the owner writes.
//
// Handover: a dead pod's lease expires after its TTL (a few seconds), etcd deletes its keys, the
// survivors see the deletes on their watch (and on a periodic scan, in case a watch event is
// lost) and race to create the keys; one wins each map. A pod shutting down revokes its lease,
// which hands its maps over at once. A pod takes maps only up to its fair share
// (ceil(maps / live pods)); when a pod joins, a pod above its share gives one map at a time
// back (`surplus`: the server saves the map's state and stops it, then `release` deletes the key
// only if it is still this ownership's, by create revision), so maps spread over the pods.
//
// Lost lease (the case that could make two owners): etcd expires a lease when no keep-alive
// reached it for TTL seconds. This pod only counts a lease as valid until
//   (send time of the last keep-alive etcd answered) + TTL - margin,
// a moment that is strictly before etcd could expire it, because etcd received that keep-alive
// after it was sent. `holds(map)` is false from that moment on, and the server checks it before
// every tick and before publishing or persisting anything, so an isolated pod stops simulating
// before its keys can disappear and before anyone else can create them. Then it drops the old
// lease (revoking it if etcd is reachable), grants a new one and races again like a new pod.
// The margin covers one tick plus publishing and clock-rate differences between hosts.
import { EventEmitter } from "node:events";
import type { Etcd3, Lease, Watcher } from "etcd3";
import { DEFAULT_PREFIX } from "../../platform/flags/layout.ts";
import type { Logger } from "../../platform/log.ts";
import { hashString } from "./sim/maps.ts";

export interface OwnershipOptions {
  client: Etcd3;
  prefix?: string;
  region: string;
  zone: string;
  maps: string[];
  pod: string;
  ttlSeconds?: number;
  marginMs?: number;
  /** Rescan period; the watch makes reactions immediate, the scan makes them certain. */
  scanMs?: number;
  log?: Logger;
  now?: () => number;
}

export function ownershipPrefix(prefix: string, region: string, zone: string): string {
  const p = prefix.endsWith("/") ? prefix : `${prefix}/`;
  return `${p}ownership/maps/${region}/${zone}/`;
}

export declare interface MapOwnership {
  on(event: "acquired", handler: (map: string, fence: string) => void): this;
  on(event: "lost", handler: (map: string, reason: string) => void): this;
  /** This pod holds more than its share: the listener should wind `map` down, then call release(). */
  on(event: "surplus", handler: (map: string) => void): this;
}

// biome-ignore lint/suspicious/noUnsafeDeclarationMerging: typed events for an EventEmitter subclass
export class MapOwnership extends EventEmitter {
  readonly base: string;
  private readonly opts: Required<Omit<OwnershipOptions, "log" | "prefix">> & Pick<OwnershipOptions, "log">;
  private lease: Lease | undefined;
  private leaseId = "";
  private validUntil = 0;
  private fired: number[] = [];
  private readonly owned = new Map<string, string>();
  private watcher: Watcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private checkTimer: NodeJS.Timeout | undefined;
  private scanning: Promise<void> | undefined;
  private rescan = false;
  private closed = false;
  private releasing: string | undefined;

  constructor(opts: OwnershipOptions) {
    super();
    this.opts = {
      ...opts,
      ttlSeconds: opts.ttlSeconds ?? 3,
      marginMs: opts.marginMs ?? 700,
      scanMs: opts.scanMs ?? 1000,
      now: opts.now ?? Date.now,
    };
    this.base = ownershipPrefix(opts.prefix ?? DEFAULT_PREFIX, opts.region, opts.zone);
  }

  mapKey(map: string): string {
    return `${this.base}${map}`;
  }

  async start(): Promise<void> {
    await this.newLease();
    this.watcher = await this.opts.client
      .watch()
      .prefix(this.base)
      .create()
      .then((w) => {
        w.on("delete", () => this.kick());
        w.on("put", () => this.kick());
        w.on("connected", () => this.kick());
        w.on("error", (err) => this.opts.log?.warn("ownership watch error", { err }));
        return w;
      });
    this.timer = setInterval(() => this.kick(), this.opts.scanMs);
    // The local lease deadline is checked far more often than a tick lasts.
    this.checkTimer = setInterval(() => this.checkDeadline(), 50);
    await this.kick();
  }

  /** True while this pod owns `map` and its lease is certainly alive. */
  holds(map: string): boolean {
    return this.owned.has(map) && this.opts.now() < this.validUntil;
  }

  fence(map: string): string | undefined {
    return this.owned.get(map);
  }

  ownedMaps(): string[] {
    return [...this.owned.keys()].sort();
  }

  /** Gives the maps up at once (graceful shutdown): revoking the lease deletes the keys. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    clearInterval(this.checkTimer);
    await this.watcher?.cancel().catch(() => undefined);
    await this.scanning?.catch(() => undefined);
    this.dropAll("shutting down");
    await this.lease?.revoke().catch(() => undefined);
  }

  /** Stops owning `map` and deletes its key if it is still this ownership's (graceful handover). */
  async release(map: string): Promise<void> {
    const fence = this.owned.get(map);
    try {
      if (fence === undefined) return;
      this.owned.delete(map);
      this.emit("lost", map, "released");
      const key = this.mapKey(map);
      await this.opts.client
        .if(key, "Create", "==", Number(fence))
        .then(this.opts.client.delete().key(key))
        .commit();
    } finally {
      if (this.releasing === map) this.releasing = undefined;
    }
  }

  private async newLease(): Promise<void> {
    const { client, ttlSeconds, marginMs, now, pod } = this.opts;
    const lease = client.lease(ttlSeconds);
    this.fired = [];
    lease.on("keepaliveFired", () => this.fired.push(now()));
    lease.on("keepaliveSucceeded", (res: { TTL: string }) => {
      const sentAt = this.fired.shift();
      if (sentAt !== undefined && this.lease === lease && Number(res.TTL) > 0) {
        this.validUntil = Math.max(this.validUntil, sentAt + Number(res.TTL) * 1000 - marginMs);
      }
    });
    lease.on("keepaliveFailed", () => {
      this.fired = [];
    });
    lease.on("lost", () => {
      if (this.lease === lease) this.validUntil = 0;
    });
    const t0 = now();
    this.leaseId = await lease.grant();
    this.lease = lease;
    this.validUntil = t0 + ttlSeconds * 1000 - marginMs;
    await client.put(`${this.base}_pods/${pod}`).value(pod).lease(this.leaseId);
  }

  private checkDeadline(): void {
    if (this.closed || this.opts.now() < this.validUntil) return;
    if (this.owned.size > 0) this.opts.log?.warn("ownership lease not renewed in time: releasing every map");
    this.dropAll("lease expired");
    const old = this.lease;
    this.lease = undefined;
    this.validUntil = Number.POSITIVE_INFINITY; // until the new lease is granted; no map is held meanwhile
    // revoke() stops the keep-alives first; if etcd is unreachable the lease just expires.
    void old?.revoke().catch(() => undefined);
    void this.newLease()
      .then(() => this.kick())
      .catch((err) => {
        this.validUntil = 0; // try again on the next check
        this.opts.log?.warn("could not grant a new ownership lease", { err });
      });
  }

  private dropAll(reason: string): void {
    for (const map of [...this.owned.keys()]) {
      this.owned.delete(map);
      this.emit("lost", map, reason);
    }
  }

  private kick(): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (this.scanning) {
      this.rescan = true;
      return this.scanning;
    }
    this.scanning = this.scan()
      .catch((err) => this.opts.log?.warn("ownership scan failed", { err }))
      .finally(() => {
        this.scanning = undefined;
        if (this.rescan) {
          this.rescan = false;
          void this.kick();
        }
      });
    return this.scanning;
  }

  private async scan(): Promise<void> {
    const { client, pod, maps } = this.opts;
    if (!this.lease || this.opts.now() >= this.validUntil) return;
    const kvs = await client.getAll().prefix(this.base).strings();
    const members = Object.keys(kvs).filter((k) => k.startsWith(`${this.base}_pods/`)).length;
    // A key that says we own a map we do not track (or the reverse) means the lease changed hands.
    for (const map of [...this.owned.keys()]) {
      if (kvs[this.mapKey(map)] !== pod) {
        this.owned.delete(map);
        this.emit("lost", map, "ownership key gone");
      }
    }
    const share = Math.ceil(maps.length / Math.max(1, members));
    // Each pod walks the maps in its own order, so pods starting together pick different maps.
    const order = [...maps].sort((m, n) => hashString(`${pod}/${m}`) - hashString(`${pod}/${n}`));
    if (this.owned.size > share && this.releasing === undefined) {
      const map = order.filter((m) => this.owned.has(m)).at(-1)!;
      this.releasing = map;
      this.opts.log?.info("above fair share, handing a map over", { map, share, members });
      if (this.listenerCount("surplus") > 0) this.emit("surplus", map);
      else await this.release(map);
      return;
    }
    for (const map of order) {
      if (this.owned.size >= share || this.closed) break;
      if (this.owned.has(map) || kvs[this.mapKey(map)] !== undefined) continue;
      await this.tryAcquire(map);
    }
  }

  private async tryAcquire(map: string): Promise<void> {
    const { client, pod } = this.opts;
    const key = this.mapKey(map);
    const res = await client
      .if(key, "Create", "==", 0)
      .then(client.put(key).value(pod).lease(this.leaseId))
      .commit();
    if (!res.succeeded || this.closed) return;
    const fence = String(res.header.revision);
    this.owned.set(map, fence);
    this.opts.log?.info("map acquired", { map, fence });
    this.emit("acquired", map, fence);
  }
}
