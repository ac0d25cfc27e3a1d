// Each Region's flag store and report channel, as the flag plane sees them.
//
// A Region's workloads read flags from the etcd its dataStores.etcd names (managed: the Region's
// own etcd; external: its endpoints) and report on the NATS its dataStores.nats names, so the
// operator publishes each Region's zones to that etcd and listens on that NATS. Regions naming
// the same endpoints share one store: one connection, one fence, one publish of all their zones,
// one epoch sequence. Each store is fenced on its own and its epochs grow on their own; a store
// that is down fails only its own publishes (the Region is Degraded), never another's.
import type { NatsConnection } from "@nats-io/transport-node";
import type { Etcd3 } from "etcd3";
import { connectFlagStore } from "../../platform/flags/etcd.ts";
import type { Layout } from "../../platform/flags/layout.ts";
import { ReportTable, type ReportTableOptions } from "../../platform/flags/reports.ts";
import type { Logger } from "../../platform/log.ts";
import { connectNats, requireStoreAccess, type StoreAccess } from "../../platform/stores/access.ts";
import { waitFor } from "../../platform/wait.ts";
import type { Region } from "../api/index.ts";
import { storeAddress } from "../render/stores.ts";
import type { CompiledFlags } from "./compiler.ts";
import { FlagPublisher, type PublishResult } from "./publisher.ts";

/** Where one Region's flags go and its reports come from. */
export interface RegionStores {
  /** etcd endpoints, comma-separated. */
  etcd: string;
  /** NATS URL(s), comma-separated. */
  nats: string;
}

/** The stores a Region's workloads use, as they see them (their HYBRIDP2P_ETCD_ENDPOINTS and NATS URL). */
export function regionStores(region: Region): RegionStores {
  return { etcd: storeAddress(region, "etcd"), nats: storeAddress(region, "nats") };
}

export interface StoreHealth {
  ok: boolean;
  /** Why not, when not. */
  message: string;
  /** Since when (ms since the epoch). */
  since: number;
}

/** Deadline of a request to a flag store: a store that does not answer fails its own publish. */
export const STORE_CALL_TIMEOUT_MS = 5_000;

/** One flag store: its connection, its publisher (fenced on its own), its health and live epoch. */
export class FlagStore {
  readonly key: string;
  private readonly given: Etcd3 | undefined;
  private readonly access: (() => Promise<StoreAccess>) | undefined;
  private readonly identity: string;
  private readonly prefix: string | undefined;
  private conn: { etcd: Etcd3; publisher: FlagPublisher } | undefined;
  private acquired = false;
  /** The epoch live in this store (flags/current), 0 before the first publish. */
  liveEpoch = 0;
  last: PublishResult | undefined;
  health: StoreHealth | undefined;
  /** Per policy (`namespace/name`): its generation in the last publish here, and the first epoch
   * that carried that generation (what the policy's status names per Region). */
  private carrying = new Map<string, { generation: number; epoch: number }>();

  /** `etcd`: a client its owner made (and closes). Else one is made on the first publish, with
   * `access` (the Region's credentials, read from its Secrets: a failure fails that publish and
   * is tried again) or, without it, the operator's own environment for `key`. */
  constructor(o: {
    key: string;
    etcd?: Etcd3;
    access?: () => Promise<StoreAccess>;
    identity: string;
    prefix?: string;
  }) {
    this.key = o.key;
    this.given = o.etcd;
    this.access = o.access;
    this.identity = o.identity;
    this.prefix = o.prefix;
  }

  private async connection(): Promise<{ etcd: Etcd3; publisher: FlagPublisher }> {
    if (!this.conn) {
      const etcd =
        this.given ??
        connectFlagStore(this.access ? await this.access() : requireStoreAccess("etcd", this.key), {
          callTimeoutMs: STORE_CALL_TIMEOUT_MS,
        });
      // Another publish may have connected while this one read the credentials.
      if (this.conn) {
        if (etcd !== this.given) etcd.close();
      } else
        this.conn = {
          etcd,
          publisher: new FlagPublisher({ client: etcd, identity: this.identity, prefix: this.prefix }),
        };
    }
    return this.conn;
  }

  /** Publishes (taking the fencing token first, once per term). Throws FencedError when deposed. */
  async publish(compiled: CompiledFlags): Promise<PublishResult> {
    const { publisher } = await this.connection();
    if (!this.acquired) {
      await publisher.acquire();
      this.acquired = true;
    }
    const res = await publisher.publish(compiled);
    this.last = res;
    this.liveEpoch = res.epoch;
    const carrying = new Map<string, { generation: number; epoch: number }>();
    for (const p of compiled.policies) {
      const key = `${p.namespace}/${p.name}`;
      const generation = p.generation ?? 0;
      const before = this.carrying.get(key);
      carrying.set(key, before?.generation === generation ? before : { generation, epoch: res.epoch });
    }
    this.carrying = carrying;
    return res;
  }

  /** The first epoch here that carried `generation` of policy `key`, if it has been published. */
  carriedBy(key: string, generation: number): number | undefined {
    const c = this.carrying.get(key);
    return c?.generation === generation ? c.epoch : undefined;
  }

  /** Gives the token up (leadership lost): the next term acquires it again. */
  release(): void {
    this.acquired = false;
    this.conn?.publisher.release();
  }

  /** Returns whether the health changed. */
  setHealth(ok: boolean, message: string): boolean {
    if (this.health?.ok === ok && this.health.message === message) return false;
    this.health = { ok, message, since: Date.now() };
    return true;
  }

  close(): void {
    this.release();
    if (this.conn && this.conn.etcd !== this.given) this.conn.etcd.close();
    this.conn = undefined;
  }
}

/** One report channel: a NATS connection (made in the background, retried) and its report table. */
export class ReportSource {
  readonly url: string;
  readonly table: Promise<ReportTable>;
  private nc: NatsConnection | undefined;
  private tableNow: ReportTable | undefined;
  private readonly owned: boolean;
  private closed = false;
  private readonly stopWaiting = new AbortController();

  constructor(o: {
    url: string;
    /** A connection its owner made (and closes), or is still making. */
    nats?: NatsConnection | Promise<NatsConnection>;
    /** The Region's credentials for `url`, read anew on every attempt (its Secrets may come later). */
    access?: () => Promise<StoreAccess>;
    layout: Layout;
    name: string;
    table: ReportTableOptions;
    onReady: (t: ReportTable) => void;
    log: Logger;
  }) {
    this.url = o.url;
    this.owned = o.nats === undefined;
    this.table = (async () => {
      const nc =
        o.nats !== undefined ? await o.nats : await this.connectUntilClosed(o.url, o.name, o.log, o.access);
      this.nc = nc;
      const t = new ReportTable(nc, o.layout, o.table);
      this.tableNow = t;
      if (this.closed) {
        await this.close();
        return t;
      }
      await t.start();
      o.onReady(t);
      return t;
    })();
    this.table.catch(() => undefined);
  }

  /** Connects, retrying with capped backoff and jitter until connected or closed (a Region's NATS
   * may start after the Region, or be gone), saying what it waits for in the log. */
  private connectUntilClosed(
    url: string,
    name: string,
    log: Logger,
    access?: () => Promise<StoreAccess>,
  ): Promise<NatsConnection> {
    return waitFor(
      "nats",
      url,
      async () =>
        connectNats(access ? await access() : requireStoreAccess("nats", url), {
          name,
          timeout: 3000,
          maxReconnectAttempts: -1,
          reconnectTimeWait: 500,
        }),
      { log, signal: this.stopWaiting.signal },
    );
  }

  /** The table once connected. */
  current(): ReportTable | undefined {
    return this.tableNow;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.stopWaiting.abort(new Error("report source closed"));
    this.tableNow?.close();
    if (this.owned) await this.nc?.close().catch(() => undefined);
  }
}
