// Sharing among flag clients that use the same etcd connection (a process serving several
// zones, or many simulated pods in one process): one watch per key instead of one per client,
// and reads of the latest value requested in the same tick sent as one request. Transparent: a
// client with a connection of its own behaves the same.
import type { Etcd3, IKeyValue, Watcher } from "etcd3";

export interface KeySubscriber {
  put(kv: IKeyValue): void;
  delete(kv: IKeyValue): void;
  disconnected(err: unknown): void;
  connected(): void;
  /** The watch was cancelled by etcd (e.g. compaction) and has been re-established from now:
   * read the key again. */
  resync(err: unknown): void;
}

export interface Latest {
  kv: IKeyValue | undefined;
  /** The store revision of the read. */
  revision: number;
}

class KeyHub {
  private readonly client: Etcd3;
  private readonly key: string;
  private readonly subs = new Set<KeySubscriber>();
  private watcher: Promise<Watcher> | undefined;
  private nextRead: Promise<Latest> | undefined;

  constructor(client: Etcd3, key: string) {
    this.client = client;
    this.key = key;
  }

  /** Resolves once the shared watch is established: every change after that reaches `sub`. */
  async subscribe(sub: KeySubscriber): Promise<void> {
    this.subs.add(sub);
    this.watcher ??= this.open();
    try {
      await this.watcher;
    } catch (err) {
      this.subs.delete(sub);
      throw err;
    }
  }

  async unsubscribe(sub: KeySubscriber): Promise<void> {
    this.subs.delete(sub);
    if (this.subs.size > 0 || this.watcher === undefined) return;
    const w = this.watcher;
    this.watcher = undefined;
    hubs.get(this.client)?.delete(this.key);
    await w.then((x) => x.cancel()).catch(() => undefined);
  }

  /**
   * The key's value now: a read that starts after this call (callers in the same tick share
   * it), so a subscriber that calls it after subscribe() misses nothing between the two.
   */
  latest(): Promise<Latest> {
    if (this.nextRead !== undefined) return this.nextRead;
    const read = new Promise<Latest>((resolve, reject) => {
      setImmediate(() => {
        this.nextRead = undefined;
        this.client
          .get(this.key)
          .exec()
          .then((res) => resolve({ kv: res.kvs[0], revision: Number(res.header.revision) }), reject);
      });
    });
    this.nextRead = read;
    return read;
  }

  private async open(): Promise<Watcher> {
    const attempt = this.client.watch().key(this.key).create();
    this.watcher = attempt;
    let w: Watcher;
    try {
      w = await attempt;
    } catch (err) {
      this.watcher = undefined;
      throw err;
    }
    const each = (f: (s: KeySubscriber) => void) => {
      for (const s of [...this.subs]) f(s);
    };
    w.on("put", (kv) => each((s) => s.put(kv)));
    w.on("delete", (kv) => each((s) => s.delete(kv)));
    w.on("disconnected", (err) => each((s) => s.disconnected(err)));
    w.on("connected", () => each((s) => s.connected()));
    w.on("error", (err) => {
      // Cancelled by etcd: watch again from now, then have every subscriber re-read. (The
      // library has already dropped `w`; cancelling it again would confuse its bookkeeping.)
      if (this.subs.size === 0) {
        this.watcher = undefined;
        return;
      }
      const again = this.open();
      this.watcher = again;
      void again.then(
        () => each((s) => s.resync(err)),
        () => {
          this.watcher = undefined;
          each((s) => s.resync(err)); // they retry, and re-subscribe through their own loop
        },
      );
    });
    return w;
  }
}

const hubs = new WeakMap<Etcd3, Map<string, KeyHub>>();

/** The shared watch of `key` on this connection. */
export function keyHub(client: Etcd3, key: string): KeyHub {
  let byKey = hubs.get(client);
  if (byKey === undefined) {
    byKey = new Map();
    hubs.set(client, byKey);
  }
  let hub = byKey.get(key);
  if (hub === undefined) {
    hub = new KeyHub(client, key);
    byKey.set(key, hub);
  }
  return hub;
}

type Parsed = { ok: true; value: unknown } | { ok: false; error: unknown };
const parsed = new WeakMap<IKeyValue, Map<unknown, Parsed>>();

/** Parses each watched or read value once, however many clients of the connection receive it. */
export function parseOnce<T>(kv: IKeyValue, parse: (key: string, raw: string) => T): T {
  let byParser = parsed.get(kv);
  if (byParser === undefined) {
    byParser = new Map();
    parsed.set(kv, byParser);
  }
  let hit = byParser.get(parse);
  if (hit === undefined) {
    try {
      hit = { ok: true, value: parse(kv.key.toString(), kv.value.toString()) };
    } catch (error) {
      hit = { ok: false, error };
    }
    byParser.set(parse, hit);
  }
  if (hit.ok) return hit.value as T;
  throw hit.error;
}
