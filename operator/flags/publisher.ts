// The flag publisher: writes one compile to one flag store (etcd) so that region-wide readers
// see it atomically, for any number of zones, within etcd's default limits (128 operations and
// 1.5 MiB per request), and each map server gets its zone's document in one watch event.
//
// 1. acquire(): on election, take the fencing token of this store: a guarded write of
//    ownership/publisher; the token is that key's mod revision. A later acquire by anyone else
//    changes it.
// 2. publish(): read flags/current and the zone keys (guarded by the fence; after our own publish
//    we know them and skip the read); if the digest of the new documents equals the live one,
//    do nothing (the first publish after acquire() always writes: it replaces whatever a deposed
//    holder left half-written). Otherwise write every zone's document to its own key
//    flags/zones/<ns>/<zone>, stamped with the new epoch and publish id, and delete the keys of
//    zones that are gone, in chunks sent all at once (each chunk a transaction guarded by the
//    fence); then flip flags/current in one transaction guarded by the fence AND by the pointer's
//    mod revision as known. A publish that fits one transaction (up to ~120 zones) writes the
//    documents and the flip together. A deposed leader's first guarded write fails
//    (FencedError). Epochs come from the pointer, so they only grow, across leaders.
// 3. Region-wide readers read their namespace's zone keys pinned at the pointer's revision: every
//    zone key was rewritten by that publish before the flip, and later publishes write only at
//    later revisions, so they see one publish whole. A map server needs one document: it watches
//    its zone key and applies each document as it arrives (the epoch and publish id only grow).
import { createHash } from "node:crypto";
import type { Etcd3, IKeyValue } from "etcd3";
import {
  type FenceRecord,
  type FlagPointer,
  type Layout,
  layout,
  parsePointer,
} from "../../platform/flags/layout.ts";
import { type CompiledFlags, documents } from "./compiler.ts";

export class FencedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "FencedError";
  }
}

export interface PublisherOptions {
  client: Etcd3;
  /** Who publishes, for the record (pod name). */
  identity: string;
  prefix?: string;
  /** Operations per transaction; etcd's default limit is 128 (--max-txn-ops). */
  maxOpsPerTxn?: number;
  /** Bytes of keys and values per transaction; etcd's default request limit is 1.5 MiB. */
  maxBytesPerTxn?: number;
}

export interface PublishResult {
  published: boolean;
  epoch: number;
  /** The publish id (`<epoch>-<fence>`). */
  publish: string;
  digest: string;
  /** etcd revision of the pointer flip (or of the read, when nothing changed). */
  revision: number;
  /** Transactions of zone documents written (the flip not counted). */
  chunks: number;
  zones: number;
  /** Where the publish spent its time (ms): compile (the caller's), documents and digest, zone
   * writes, the flip. */
  timings?: { compileMs?: number; documentsMs: number; writeMs: number; flipMs: number };
}

export function digestOf(docs: readonly [string, string][]): string {
  const h = createHash("sha256");
  for (const [k, v] of docs) h.update(k).update("\0").update(v).update("\0");
  return h.digest("hex");
}

/** One write of a publish: a document to put, or (value undefined) a key to delete. */
export type Write = [key: string, value: string | undefined];

/** Splits writes into transactions within the operation and byte limits. */
export function chunk(writes: readonly Write[], maxOps: number, maxBytes: number): Write[][] {
  const out: Write[][] = [];
  let cur: Write[] = [];
  let bytes = 0;
  for (const w of writes) {
    const [key, value] = w;
    const size = Buffer.byteLength(key) + (value === undefined ? 0 : Buffer.byteLength(value)) + 16;
    if (size > maxBytes)
      throw new Error(`flag document ${key} is ${size} bytes, over the ${maxBytes}-byte transaction limit`);
    if (cur.length > 0 && (cur.length >= maxOps || bytes + size > maxBytes)) {
      out.push(cur);
      cur = [];
      bytes = 0;
    }
    cur.push(w);
    bytes += size;
  }
  if (cur.length > 0) out.push(cur);
  return out;
}

/** A transaction's range operation returning only the keys under `prefix`. */
function keysUnder(prefix: string) {
  const key = Buffer.from(prefix);
  const end = Buffer.from(key);
  end[end.length - 1]! += 1;
  return { request_range: { key, range_end: end, keys_only: true } };
}

export interface LivePointer {
  pointer: FlagPointer | undefined;
  /** Mod revision of flags/current (0 when absent). */
  modRevision: number;
  /** Store revision the pointer was read at. */
  revision: number;
}

export async function readPointer(client: Etcd3, l: Layout): Promise<LivePointer> {
  const res = await client.get(l.pointer).exec();
  return pointerFrom(res.kvs[0], Number(res.header.revision), l);
}

function pointerFrom(kv: IKeyValue | undefined, revision: number, l: Layout): LivePointer {
  if (kv === undefined) return { pointer: undefined, modRevision: 0, revision };
  let pointer: FlagPointer | undefined;
  try {
    pointer = parsePointer(l.pointer, kv.value.toString());
  } catch {
    pointer = undefined; // a malformed pointer is replaced by the next publish
  }
  return { pointer, modRevision: Number(kv.mod_revision), revision };
}

export class FlagPublisher {
  readonly layout: Layout;
  private readonly client: Etcd3;
  private readonly identity: string;
  private readonly maxOps: number;
  private readonly maxBytes: number;
  private token: string | undefined;
  /** After acquire(): write even an unchanged compile, over what a deposed holder may have left. */
  private mustWrite = true;
  /** The store as our last publish left it (undefined: read it first). */
  private known: (LivePointer & { keys: Set<string> }) | undefined;
  /** The highest epoch this publisher wrote or read: the floor when the store's own record of
   * it (the pointer, the zone keys) has been overwritten with something unreadable. */
  private highestEpoch = 0;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(opts: PublisherOptions) {
    this.client = opts.client;
    this.identity = opts.identity;
    this.layout = layout(opts.prefix);
    this.maxOps = Math.min(opts.maxOpsPerTxn ?? 120, 127);
    this.maxBytes = opts.maxBytesPerTxn ?? 1024 * 1024;
  }

  /** The fencing token held, if any. */
  get fence(): string | undefined {
    return this.token;
  }

  /**
   * Takes the fencing token. Call it each time this instance becomes leader, before publishing;
   * every other holder's publishes fail from then on.
   */
  async acquire(): Promise<string> {
    const rec: FenceRecord = { holder: this.identity, acquiredAt: new Date().toISOString() };
    for (;;) {
      const res = await this.client.get(this.layout.fence).exec();
      const mod = res.kvs[0]?.mod_revision ?? "0";
      const txn = await this.client
        .if(this.layout.fence, "Mod", "==", mod)
        .then(this.client.put(this.layout.fence).value(JSON.stringify(rec)))
        .commit();
      if (txn.succeeded) {
        this.token = String(txn.header.revision);
        this.mustWrite = true;
        this.known = undefined;
        return this.token;
      }
    }
  }

  /** Gives the token up locally (on losing leadership): later publishes fail without touching etcd. */
  release(): void {
    this.token = undefined;
    this.known = undefined;
  }

  /** Publishes one compile. Calls are serialized. Throws FencedError when deposed. */
  publish(compiled: CompiledFlags): Promise<PublishResult> {
    const run = this.queue.then(
      () => this.publishNow(compiled),
      () => this.publishNow(compiled),
    );
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async publishNow(compiled: CompiledFlags): Promise<PublishResult> {
    const token = this.token;
    if (token === undefined) throw new FencedError("not the publisher: acquire() the fencing token first");
    const l = this.layout;
    const t0 = performance.now();
    const docs = documents(compiled);
    const digest = digestOf(docs);
    const documentsMs = performance.now() - t0;
    const fenced = () => this.client.if(l.fence, "Mod", "==", token);
    for (;;) {
      // What the store holds: known from our own last publish (the flip's compare on the
      // pointer's mod revision catches anyone else's write), or read, guarded by the fence.
      let live = this.known;
      if (live === undefined) {
        const read = await fenced().then(this.client.get(l.pointer), keysUnder(l.zonesPrefix())).commit();
        if (!read.succeeded) throw this.deposed();
        const p = pointerFrom(read.responses[0]?.response_range.kvs[0], Number(read.header.revision), l);
        const keys = (read.responses[1]?.response_range.kvs ?? []).map((kv) => kv.key.toString());
        live = { ...p, keys: new Set(keys) };
      }
      if (live.pointer) this.highestEpoch = Math.max(this.highestEpoch, live.pointer.epoch);
      if (!this.mustWrite && live.pointer !== undefined && live.pointer.digest === digest) {
        return {
          published: false,
          epoch: live.pointer.epoch,
          publish: live.pointer.publish,
          digest,
          revision: live.revision,
          chunks: 0,
          zones: docs.length,
        };
      }
      // Epochs only grow: from the pointer, or when it is missing or malformed, from the newest
      // epoch any zone key carries.
      const epoch = Math.max(live.pointer?.epoch ?? (await this.newestZoneEpoch()), this.highestEpoch) + 1;
      this.highestEpoch = epoch;
      const publish = l.publishId(epoch, token);
      // Each document is stamped with its publish: `{"epoch":..,"publish":..,` + the canonical rest.
      const stamp = `{"epoch":${epoch},"publish":"${publish}",`;
      const keep = new Set<string>();
      const writes: Write[] = docs.map(([rel, json]) => {
        const key = `${l.prefix}flags/${rel}`;
        keep.add(key);
        return [key, stamp + json.slice(1)];
      });
      for (const key of live.keys) if (!keep.has(key)) writes.push([key, undefined]);
      const pointer: FlagPointer = {
        v: 1,
        epoch,
        publish,
        digest,
        zones: docs.length,
        publisher: this.identity,
        fence: token,
        publishedAt: new Date().toISOString(),
      };
      const op = ([k, v]: Write) =>
        v === undefined ? this.client.delete().key(k) : this.client.put(k).value(v);
      const flipWrite: Write = [l.pointer, JSON.stringify(pointer)];
      const tWrite = performance.now();
      const chunks = chunk([...writes, flipWrite], this.maxOps, this.maxBytes);
      let flip: { succeeded: boolean; header: { revision: string } };
      let tFlip: number;
      try {
        if (chunks.length === 1) {
          // Small enough for one transaction: the documents and the flip together.
          tFlip = tWrite;
          flip = await fenced()
            .and(l.pointer, "Mod", "==", live.modRevision)
            .then(...chunks[0]!.map(op))
            .commit();
        } else {
          // All chunks at once: etcd applies them in order of arrival; waiting for each would add
          // a round trip per chunk. Every one must land before the flip.
          const results = await Promise.all(
            chunk(writes, this.maxOps, this.maxBytes).map((c) =>
              fenced()
                .then(...c.map(op))
                .commit(),
            ),
          );
          if (results.some((r) => !r.succeeded)) throw this.deposed();
          tFlip = performance.now();
          flip = await fenced().and(l.pointer, "Mod", "==", live.modRevision).then(op(flipWrite)).commit();
        }
      } catch (err) {
        // Documents may have landed without their flip (the store went away between chunks, or
        // a transaction's answer was lost), and map servers apply them as they land: what the
        // store holds is unknown. The next publish reads it again and writes every document,
        // even for a compile equal to the live pointer's (the change may have been undone since).
        this.known = undefined;
        this.mustWrite = true;
        throw err;
      }
      if (!flip.succeeded) {
        this.known = undefined;
        const fence = await this.client.get(l.fence).exec();
        if (String(fence.kvs[0]?.mod_revision ?? "0") !== token) throw this.deposed();
        // The pointer moved under us without the fence changing (a manual edit): start over,
        // writing every document again (the chunks before the flip have landed).
        if (chunks.length > 1) this.mustWrite = true;
        continue;
      }
      const revision = Number(flip.header.revision);
      this.mustWrite = false;
      this.known = { pointer, modRevision: revision, revision, keys: keep };
      return {
        published: true,
        epoch,
        publish,
        digest,
        revision,
        chunks: Math.max(1, chunks.length - 1),
        zones: docs.length,
        timings: { documentsMs, writeMs: tFlip - tWrite, flipMs: performance.now() - tFlip },
      };
    }
  }

  private async newestZoneEpoch(): Promise<number> {
    const values = await this.client.getAll().prefix(this.layout.zonesPrefix()).strings();
    let newest = 0;
    for (const v of Object.values(values)) {
      const m = /"epoch":(\d+)/.exec(v);
      if (m) newest = Math.max(newest, Number(m[1]));
    }
    return newest;
  }

  private deposed(): FencedError {
    const token = this.token;
    this.token = undefined;
    this.known = undefined;
    return new FencedError(
      `publisher ${this.identity} was deposed: fencing token ${token} is no longer current`,
    );
  }
}
