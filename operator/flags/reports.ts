// Watches the pods' reports (status/reports/...) and keeps them in memory: one list, then a
// watch from the revision after it; on a cancelled watch (compaction) it lists again.
import { EventEmitter } from "node:events";
import type { Etcd3, Watcher } from "etcd3";
import { type Layout, type PodReport, parseReport } from "../../platform/flags/layout.ts";
import { sleep } from "../../platform/time.ts";

export class ReportWatcher extends EventEmitter {
  private readonly client: Etcd3;
  private readonly prefix: string;
  private readonly onError: (msg: string) => void;
  private readonly byKey = new Map<string, PodReport>();
  private watcher: Watcher | undefined;
  private closed = false;

  constructor(
    client: Etcd3,
    l: Layout,
    opts: { namespace?: string; zone?: string; onError?: (msg: string) => void } = {},
  ) {
    super();
    this.client = client;
    this.prefix = l.reportsPrefixFor(opts.namespace, opts.zone);
    this.onError = opts.onError ?? (() => {});
  }

  reports(): PodReport[] {
    return [...this.byKey.values()];
  }

  async start(): Promise<void> {
    for (;;) {
      try {
        await this.listAndWatch();
        return;
      } catch (err) {
        if (this.closed) return;
        this.onError(`report list failed: ${String(err)}`);
        await sleep(500);
      }
    }
  }

  private async listAndWatch(): Promise<void> {
    const res = await this.client.getAll().prefix(this.prefix).exec();
    this.byKey.clear();
    for (const kv of res.kvs) this.set(kv.key.toString(), kv.value.toString());
    this.emit("change");
    const w = await this.client
      .watch()
      .prefix(this.prefix)
      .startRevision(String(Number(res.header.revision) + 1))
      .create();
    if (this.closed) {
      await w.cancel();
      return;
    }
    this.watcher = w;
    w.on("put", (kv) => {
      this.set(kv.key.toString(), kv.value.toString());
      this.emit("change");
    });
    w.on("delete", (kv) => {
      this.byKey.delete(kv.key.toString());
      this.emit("change");
    });
    w.on("error", (err) => {
      this.onError(`report watch cancelled (${String(err)}); listing again`);
      this.watcher = undefined; // already dropped by the library
      if (!this.closed) void this.start();
    });
  }

  private set(key: string, value: string): void {
    try {
      this.byKey.set(key, parseReport(key, value));
    } catch (err) {
      this.byKey.delete(key);
      this.onError(String((err as Error).message));
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.watcher?.cancel().catch(() => undefined);
  }
}
