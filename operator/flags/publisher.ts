// The flag publisher: writes one compile to etcd so that it becomes visible atomically, for any
// number of zones, within etcd's default limits (128 operations and 1.5 MiB per request).
//
// 1. acquire(): on election, take the fencing token: a guarded write of ownership/publisher; the
//    token is that key's mod revision. A later acquire by anyone else changes it.
// 2. publish(): read flags/current; if the digest of the new documents equals the live one,
//    do nothing. Otherwise stage every document under a fresh epoch directory
//    (flags/epochs/<epoch>-<token>/) in chunks (each chunk a transaction guarded by the fence),
//    then flip flags/current to the new directory in one transaction guarded by the fence AND
//    by the pointer's mod revision read in step 2. Readers follow only the pointer, so they see
//    all of the old epoch or all of the new one. A deposed leader's first guarded write fails
//    (FencedError). Epochs come from the pointer, so they only grow, across leaders too.
// 3. Old directories (all before the previous epoch's) are deleted after the flip; readers pin
//    their reads to the pointer's revision, so a reader that is one epoch behind still reads a
//    complete directory, and a reader further behind whose revision was compacted re-syncs.
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
  dir: string;
  digest: string;
  /** etcd revision of the pointer flip (or of the read, when nothing changed). */
  revision: number;
  /** Staging transactions written (the flip not counted). */
  chunks: number;
  zones: number;
}

export function digestOf(docs: readonly [string, string][]): string {
  const h = createHash("sha256");
  for (const [k, v] of docs) h.update(k).update("\0").update(v).update("\0");
  return h.digest("hex");
}

/** Splits documents into transactions within the operation and byte limits. */
export function chunk(
  docs: readonly [string, string][],
  maxOps: number,
  maxBytes: number,
  keyOf: (rel: string) => string,
): [string, string][][] {
  const out: [string, string][][] = [];
  let cur: [string, string][] = [];
  let bytes = 0;
  for (const [rel, value] of docs) {
    const key = keyOf(rel);
    const size = Buffer.byteLength(key) + Buffer.byteLength(value) + 16;
    if (size > maxBytes)
      throw new Error(`flag document ${rel} is ${size} bytes, over the ${maxBytes}-byte transaction limit`);
    if (cur.length > 0 && (cur.length >= maxOps || bytes + size > maxBytes)) {
      out.push(cur);
      cur = [];
      bytes = 0;
    }
    cur.push([key, value]);
    bytes += size;
  }
  if (cur.length > 0) out.push(cur);
  return out;
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
  private queue: Promise<unknown> = Promise.resolve();
  /** The last garbage collection, still running or done. */
  gc: Promise<void> = Promise.resolve();

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
        return this.token;
      }
    }
  }

  /** Gives the token up locally (on losing leadership): later publishes fail without touching etcd. */
  release(): void {
    this.token = undefined;
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
    const docs = documents(compiled);
    const digest = digestOf(docs);
    for (;;) {
      // Read the pointer only while still holding the fence, so a deposed leader learns it even
      // when it has nothing to write.
      const read = await this.client
        .if(l.fence, "Mod", "==", token)
        .then(this.client.get(l.pointer))
        .commit();
      if (!read.succeeded) throw this.deposed();
      const live = pointerFrom(read.responses[0]?.response_range.kvs[0], Number(read.header.revision), l);
      if (live.pointer !== undefined && live.pointer.digest === digest) {
        return {
          published: false,
          epoch: live.pointer.epoch,
          dir: live.pointer.dir,
          digest,
          revision: live.revision,
          chunks: 0,
          zones: docs.length,
        };
      }
      // Epochs only grow: from the pointer, or when it is missing or malformed, from the newest
      // epoch directory left in the store (directories sort by their zero-padded epoch).
      const epoch = (live.pointer?.epoch ?? (await this.newestDirEpoch())) + 1;
      const dir = l.epochDir(epoch, token.padStart(16, "0"));
      const dirPrefix = l.dirPrefix(dir);
      const fenced = () => this.client.if(l.fence, "Mod", "==", token);

      // Clear the directory (a failed earlier attempt of this term may have left keys), then stage.
      const clear = await fenced().then(this.client.delete().prefix(dirPrefix)).commit();
      if (!clear.succeeded) throw this.deposed();
      const chunks = chunk(docs, this.maxOps, this.maxBytes, (rel) => dirPrefix + rel);
      for (const c of chunks) {
        const res = await fenced()
          .then(...c.map(([k, v]) => this.client.put(k).value(v)))
          .commit();
        if (!res.succeeded) throw this.deposed();
      }

      const pointer: FlagPointer = {
        v: 1,
        epoch,
        dir,
        digest,
        zones: docs.length,
        publisher: this.identity,
        fence: token,
        publishedAt: new Date().toISOString(),
      };
      const flip = await fenced()
        .and(l.pointer, "Mod", "==", live.modRevision)
        .then(this.client.put(l.pointer).value(JSON.stringify(pointer)))
        .commit();
      if (!flip.succeeded) {
        const fence = await this.client.get(l.fence).exec();
        if (String(fence.kvs[0]?.mod_revision ?? "0") !== token) throw this.deposed();
        // The pointer moved under us without the fence changing (a manual edit): start over.
        await this.client.delete().prefix(dirPrefix).exec();
        continue;
      }
      const revision = Number(flip.header.revision);
      // Keep the previous epoch for readers one step behind; delete everything older. Not awaited:
      // the publish is visible already, and the next publish's writes queue behind this one.
      if (live.pointer !== undefined) {
        this.gc = fenced()
          .then(this.client.delete().inRange({ start: l.epochsPrefix, end: l.dirPrefix(live.pointer.dir) }))
          .commit()
          .then(
            () => undefined,
            () => undefined,
          );
      }
      return { published: true, epoch, dir, digest, revision, chunks: chunks.length, zones: docs.length };
    }
  }

  private async newestDirEpoch(): Promise<number> {
    const keys = await this.client
      .getAll()
      .prefix(this.layout.epochsPrefix)
      .sort("Key", "Descend")
      .limit(1)
      .keys();
    const rest = keys[0]?.slice(this.layout.epochsPrefix.length) ?? "";
    return this.layout.epochOfDir(rest.split("/")[0] ?? "") ?? 0;
  }

  private deposed(): FencedError {
    const token = this.token;
    this.token = undefined;
    return new FencedError(
      `publisher ${this.identity} was deposed: fencing token ${token} is no longer current`,
    );
  }
}
