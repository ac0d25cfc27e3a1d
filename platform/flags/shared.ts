// Sharing among flag clients that use the same etcd connection (a process serving several
// zones, or many simulated pods in one process): one watch per key instead of one per client,
// and reads of the latest value requested in the same tick sent as one request. Transparent: a
// client with a connection of its own behaves the same.
import type { Etcd3, IKeyValue, Watcher } from "etcd3";
import { WatchManager } from "etcd3/lib/watch.js";

// etcd3 1.1.2: a watch whose creation etcd refuses (answered created and cancelled at once, e.g.
// permission denied) gets its error but stays at the head of the stream's attach queue, which
// then sends no other create: every later watch on the connection (the hub's re-open among them)
// hangs, neither connected nor failed, until the stream happens to break. Take the refused one
// off the queue and go on with the next. (The library reports the refusal to the first watcher
// still without an id, which is the head of the queue: both keep attach order.)
{
  type Queue = { queue: unknown[]; readQueue(): void };
  const proto = WatchManager.prototype as unknown as {
    handleCreatedResponse(this: { queue?: Queue }, res: { canceled: boolean }): void;
  };
  const handleCreated = proto.handleCreatedResponse;
  proto.handleCreatedResponse = function (res) {
    handleCreated.call(this, res);
    if (!res.canceled || this.queue === undefined) return;
    this.queue.queue.shift();
    this.queue.readQueue();
  };
}

export interface KeySubscriber {
  put(kv: IKeyValue): void;
  delete(kv: IKeyValue): void;
  disconnected(err: unknown): void;
  connected(): void;
  /** The watch was cancelled by etcd (e.g. compaction) and has been re-established from now:
   * read the key again. (While it cannot be re-established the hub keeps retrying and says
   * `disconnected`.) */
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
  /** The next attempt to watch again after a cancelled watch could not be re-opened. */
  private retry: NodeJS.Timeout | undefined;
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
    if (this.subs.size > 0) return;
    clearTimeout(this.retry);
    this.retry = undefined;
    if (this.watcher === undefined) return;
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
      this.watcher = undefined;
      clearTimeout(this.retry);
      this.retry = undefined;
      this.reopen(err, 100);
    });
    return w;
  }

  /**
   * Watches the key again after etcd cancelled the watch (`cause`), retrying with backoff (100 ms
   * doubling to 2 s) for as long as anyone is subscribed; the subscribers stay subscribed, hear
   * `disconnected` while it fails and `connected` + `resync` once a watch is back. The hub retries
   * rather than its subscribers re-subscribing: it owns the one watch, so one loop here serves
   * every client of the connection, no subscriber needs a second way back in, and `resync` keeps
   * meaning "watched again from now" (subscribers told to re-read after a failed re-open, as
   * before, believed they were watching while nothing was).
   */
  private reopen(cause: unknown, delay: number): void {
    if (this.subs.size === 0) return;
    const each = (f: (s: KeySubscriber) => void) => {
      for (const s of [...this.subs]) f(s);
    };
    // A subscribe() meanwhile may have opened a watch (or be opening one): take it, never a second.
    const attempt = this.watcher ?? this.open();
    void attempt.then(
      () => {
        each((s) => s.connected());
        each((s) => s.resync(cause));
      },
      (err) => {
        // open() has forgotten the failed attempt: the next subscribe() or this timer tries again.
        each((s) => s.disconnected(err));
        if (this.subs.size === 0 || this.retry !== undefined) return;
        this.retry = setTimeout(() => {
          this.retry = undefined;
          this.reopen(cause, Math.min(delay * 2, 2000));
        }, delay);
        this.retry.unref();
      },
    );
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
