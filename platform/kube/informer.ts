// Informers on top of @kubernetes/client-node's ListWatch: a local cache kept current by
// list + watch. ListWatch already re-lists when the watch answers 410 Gone; it gives up on
// any other error, so this wrapper restarts it with capped backoff until stopped.
import { type KubernetesObject, ListWatch, Watch } from "@kubernetes/client-node";
import type { Logger } from "../log.ts";
import type { KubeClient, ResourceType } from "./kube.ts";
import { resourcePath } from "./kube.ts";
import type { KubeList, KubeObject } from "./meta.ts";
import { backoffDelay } from "./workqueue.ts";

export type EventType = "add" | "update" | "delete";
export type Handler<T> = (type: EventType, obj: T) => void;

export interface InformerOptions {
  namespace?: string;
  labelSelector?: string;
  log: Logger;
}

// managedFields is often the largest part of an object and no controller here reads it:
// dropping it from cached objects roughly halves the cache.
function slim(obj: KubeObject): void {
  delete (obj.metadata as { managedFields?: unknown }).managedFields;
}

export const objectKey = (o: KubeObject): string => `${o.metadata.namespace ?? ""}/${o.metadata.name}`;

export function splitKey(key: string): { namespace: string; name: string } {
  const i = key.indexOf("/");
  return { namespace: key.slice(0, i), name: key.slice(i + 1) };
}

export class Informer<T extends KubeObject> {
  readonly rt: ResourceType;
  // client-node types timestamps as Date; on the wire (and in our types) they are strings.
  private readonly lw: ListWatch<KubernetesObject>;
  private readonly handlers: Handler<T>[] = [];
  private readonly log: Logger;
  private stopped = false;
  private synced = false;
  private failures = 0;
  private restartTimer?: NodeJS.Timeout;

  constructor(client: KubeClient, rt: ResourceType, opts: InformerOptions) {
    this.rt = rt;
    this.log = opts.log.child({ informer: rt.plural });
    const path = resourcePath(rt, opts.namespace);
    const list = () =>
      client.request<KubeList<T>>("GET", path, { query: { labelSelector: opts.labelSelector } }).then((l) => {
        for (const item of l.items) {
          // List items carry no apiVersion/kind; handlers and caches expect whole objects.
          item.apiVersion = rt.apiVersion;
          item.kind = rt.kind;
        }
        return l;
      });
    // The listFn types are client-node's; our objects have the same shape.
    this.lw = new ListWatch<KubernetesObject>(
      path,
      new Watch(client.kc),
      list as never,
      false,
      opts.labelSelector,
    );
    this.lw.on("add", (o) => this.emit("add", o as unknown as T));
    this.lw.on("update", (o) => this.emit("update", o as unknown as T));
    this.lw.on("delete", (o) => this.emit("delete", o as unknown as T));
    this.lw.on("error", (err) => this.restart(err));
  }

  on(handler: Handler<T>): void {
    this.handlers.push(handler);
  }

  get(namespace: string, name: string): T | undefined {
    return this.lw.get(name, namespace) as unknown as T | undefined;
  }

  list(namespace?: string): readonly T[] {
    return this.lw.list(namespace) as unknown as readonly T[];
  }

  hasSynced(): boolean {
    return this.synced;
  }

  /** Resolves once the first list has filled the cache. */
  async start(): Promise<void> {
    this.stopped = false;
    while (!this.stopped) {
      await this.lw.start();
      if (this.lw.latestResourceVersion() !== "") {
        this.synced = true;
        this.failures = 0;
        return;
      }
      // The list failed (the error handler logged it): try again after a backoff.
      clearTimeout(this.restartTimer);
      await new Promise((r) => setTimeout(r, backoffDelay(this.failures++, 200, 5_000)));
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.restartTimer);
    await this.lw.stop();
  }

  private emit(type: EventType, obj: T): void {
    this.failures = 0; // events flow: the watch works again
    slim(obj); // the cache holds this same object
    if (obj.apiVersion === undefined) obj.apiVersion = this.rt.apiVersion;
    if (obj.kind === undefined) obj.kind = this.rt.kind;
    for (const h of this.handlers) h(type, obj);
  }

  private restart(err: unknown): void {
    if (this.stopped) return;
    // A failed initial list is retried by start() itself; anything else (a failed watch,
    // possibly while start() is still running, or a failed re-list) is restarted here.
    if (!this.synced && this.lw.latestResourceVersion() === "") {
      this.log.warn("list failed, retrying", { err: String(err) });
      return;
    }
    const delay = backoffDelay(this.failures++, 200, 5_000);
    this.log.warn("watch failed, restarting", { err: String(err), delayMs: delay });
    clearTimeout(this.restartTimer);
    this.restartTimer = setTimeout(() => {
      if (!this.stopped) void this.lw.start();
    }, delay);
  }
}
