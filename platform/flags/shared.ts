// Sharing among flag clients that use the same etcd connection (a process serving several
// zones, or many simulated pods in one process): one watch of the pointer instead of one per
// client, and report writes issued in the same tick sent as one transaction (each key still
// under its own pod's lease). Transparent: a client with a connection of its own behaves the same.
import type { Etcd3, IKeyValue, Watcher } from "etcd3";

export interface PointerSubscriber {
  put(kv: IKeyValue): void;
  delete(kv: IKeyValue): void;
  disconnected(err: unknown): void;
  connected(): void;
  /** The watch was cancelled by etcd (e.g. compaction) and has been re-established from now:
   * re-read the pointer. */
  resync(err: unknown): void;
}

class PointerHub {
  private readonly client: Etcd3;
  private readonly key: string;
  private readonly subs = new Set<PointerSubscriber>();
  private watcher: Promise<Watcher> | undefined;

  constructor(client: Etcd3, key: string) {
    this.client = client;
    this.key = key;
  }

  /** Resolves once the shared watch is established: every pointer change after that reaches `sub`. */
  async subscribe(sub: PointerSubscriber): Promise<void> {
    this.subs.add(sub);
    this.watcher ??= this.open();
    try {
      await this.watcher;
    } catch (err) {
      this.subs.delete(sub);
      throw err;
    }
  }

  async unsubscribe(sub: PointerSubscriber): Promise<void> {
    this.subs.delete(sub);
    if (this.subs.size > 0 || this.watcher === undefined) return;
    const w = this.watcher;
    this.watcher = undefined;
    hubs.get(this.client)?.delete(this.key);
    await w.then((x) => x.cancel()).catch(() => undefined);
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
    const each = (f: (s: PointerSubscriber) => void) => {
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

const hubs = new WeakMap<Etcd3, Map<string, PointerHub>>();

export function pointerHub(client: Etcd3, key: string): PointerHub {
  let byKey = hubs.get(client);
  if (byKey === undefined) {
    byKey = new Map();
    hubs.set(client, byKey);
  }
  let hub = byKey.get(key);
  if (hub === undefined) {
    hub = new PointerHub(client, key);
    byKey.set(key, hub);
  }
  return hub;
}

// ---- batched report writes --------------------------------------------------------------------

interface PendingPut {
  key: string;
  value: string;
  lease: string;
  resolve(): void;
  reject(err: unknown): void;
}

const MAX_OPS = 120;
const MAX_BYTES = 1024 * 1024;
const queues = new WeakMap<Etcd3, PendingPut[]>();

/** Puts `key` under `lease`; puts issued on one connection in the same tick share a transaction. */
export function batchedPut(client: Etcd3, key: string, value: string, lease: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let q = queues.get(client);
    if (q === undefined) {
      q = [];
      queues.set(client, q);
      setImmediate(() => flush(client));
    }
    q.push({ key, value, lease, resolve, reject });
  });
}

function flush(client: Etcd3): void {
  const q = queues.get(client) ?? [];
  queues.delete(client);
  // The last write of a key in this batch wins; etcd rejects a key twice in one transaction.
  const byKey = new Map<string, PendingPut[]>();
  for (const p of q) byKey.set(p.key, [...(byKey.get(p.key) ?? []), p]);
  const batch: { last: PendingPut; all: PendingPut[] }[] = [...byKey.values()].map((all) => ({
    last: all.at(-1)!,
    all,
  }));
  let i = 0;
  while (i < batch.length) {
    const chunk: typeof batch = [];
    let bytes = 0;
    while (i < batch.length && chunk.length < MAX_OPS) {
      const size = batch[i]!.last.key.length + batch[i]!.last.value.length + 32;
      if (chunk.length > 0 && bytes + size > MAX_BYTES) break;
      chunk.push(batch[i]!);
      bytes += size;
      i++;
    }
    client.kv
      .txn({
        compare: [],
        success: chunk.map((c) => ({
          request_put: {
            key: Buffer.from(c.last.key),
            value: Buffer.from(c.last.value),
            lease: c.last.lease,
          },
        })),
        failure: [],
      })
      .then(
        () => {
          for (const c of chunk) for (const p of c.all) p.resolve();
        },
        (err) => {
          if (chunk.length === 1) {
            for (const p of chunk[0]!.all) p.reject(err);
            return;
          }
          // One bad put (say, an expired lease) fails the whole transaction: retry one by one,
          // so each writer gets its own answer.
          for (const c of chunk) {
            client.kv
              .txn({
                compare: [],
                success: [
                  {
                    request_put: {
                      key: Buffer.from(c.last.key),
                      value: Buffer.from(c.last.value),
                      lease: c.last.lease,
                    },
                  },
                ],
                failure: [],
              })
              .then(
                () => {
                  for (const p of c.all) p.resolve();
                },
                (e) => {
                  for (const p of c.all) p.reject(e);
                },
              );
          }
        },
      );
  }
}
