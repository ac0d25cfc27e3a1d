// The orchestrator's connections to each Region's own NATS JetStream (platform/bus/world.ts):
// one connection per Region, kept while the Region is targeted, reconnecting forever. For each it
// mirrors the Region's world-event records (last per subject, then changes) and its fresh live
// reports, and writes records with a compare-and-set on the subject's last sequence, so a deposed
// leader's stale write fails instead of overwriting its successor's.
import { DeliverPolicy, type JetStreamClient, jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { decode, encode } from "../../platform/bus/contract.ts";
import {
  ensureWorldStreams,
  LIVE_MAX_AGE_MS,
  type WorldEventRecord,
  type WorldLiveReport,
  worldStreams,
  worldSubjects,
} from "../../platform/bus/world.ts";
import type { Logger } from "../../platform/log.ts";
import { connectNats, requireStoreAccess, type StoreAccess } from "../../platform/stores/access.ts";
import { materialise } from "../../platform/stores/files.ts";
import { GENERATED_SECRET } from "../../platform/stores/generated.ts";
import { natsUserName } from "../../platform/stores/roles.ts";
import { sleep } from "../../platform/time.ts";

export interface RegionBusOptions {
  /** namespace/name of the Region. */
  key: string;
  /** The Region's name: its subjects' and streams' token. */
  region: string;
  servers: string;
  /** This process's credentials for the Region's NATS, read anew on every attempt (a managed
   * NATS: its orchestrator user, from the Region's Secrets); without it, this process's own
   * HYBRIDP2P_NATS_* at the Region's address. */
  access?: () => Promise<StoreAccess>;
  log: Logger;
  /** Told when something changed (a record, a report, reachability). */
  onChange: () => void;
  now?: () => number;
}

export class RegionBus {
  readonly o: RegionBusOptions;
  private nc: NatsConnection | undefined;
  private js: JetStreamClient | undefined;
  /** Records by WorldEvent uid, with the stream sequence of each. */
  readonly records = new Map<string, { record: WorldEventRecord; seq: number }>();
  private readonly live = new Map<string, WorldLiveReport>();
  /** Both consumers have delivered the streams' current state. */
  private synced = false;
  private connected = false;
  error: string | undefined = "connecting";
  private stopped = false;
  private readonly closers: Array<() => Promise<void>> = [];
  private running: Promise<void> | undefined;

  constructor(o: RegionBusOptions) {
    this.o = o;
  }

  get servers(): string {
    return this.o.servers;
  }

  /** Connected, streams there, current state read: records may be written. */
  get reachable(): boolean {
    return this.connected && this.synced && !this.stopped;
  }

  start(): void {
    this.running = this.run();
  }

  private async run(): Promise<void> {
    for (let attempt = 0; !this.stopped; attempt++) {
      try {
        await this.open();
        return;
      } catch (err) {
        this.error = String((err as Error)?.message ?? err);
        await this.teardown();
        if (attempt % 10 === 0)
          this.o.log.warn("Region bus unreachable", { region: this.o.key, err: this.error });
        this.o.onChange();
        await sleep(Math.min(5000, 250 * 2 ** Math.min(attempt, 5)));
      }
    }
  }

  private async open(): Promise<void> {
    const access = this.o.access ? await this.o.access() : requireStoreAccess("nats", this.o.servers);
    const nc = await connectNats(access, {
      name: `orchestrator-${this.o.region}`,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 500,
      timeout: 3000,
    });
    this.nc = nc;
    this.closers.push(() => nc.close().catch(() => undefined));
    await ensureWorldStreams(nc, this.o.region);
    const js = jetstream(nc, { timeout: 3000 });
    this.js = js;
    this.connected = true;
    void (async () => {
      for await (const st of nc.status()) {
        if (st.type === "disconnect") {
          this.connected = false;
          this.error = "disconnected";
          this.o.onChange();
        } else if (st.type === "reconnect") {
          this.connected = true;
          this.error = undefined;
          this.o.onChange();
        }
      }
    })();
    // Current state of both streams, then changes. Ready once the records are read (the live
    // reports are advisory; a write made on a stale view fails its compare-and-set anyway).
    const jsm = await jetstreamManager(nc);
    const empty = (await jsm.streams.info(worldStreams.events(this.o.region))).state.messages === 0;
    const caughtUp = () => {
      if (this.synced) return;
      this.synced = true;
      this.error = undefined;
      this.o.log.info("Region bus ready", { region: this.o.key, records: this.records.size });
      this.o.onChange();
    };
    const follow = async (
      stream: string,
      subject: string,
      on: (data: Uint8Array, seq: number, pending: number) => void,
    ) => {
      const c = await js.consumers.get(stream, {
        filter_subjects: subject,
        deliver_policy: DeliverPolicy.LastPerSubject,
      });
      const msgs = await c.consume();
      this.closers.unshift(async () => {
        await msgs.close().catch(() => undefined);
      });
      void (async () => {
        for await (const m of msgs) {
          try {
            on(m.data, m.seq, m.info.pending);
          } catch (err) {
            this.o.log.warn("undecodable message on a Region bus", {
              region: this.o.key,
              subject: m.subject,
              err,
            });
          }
        }
      })();
    };
    await follow(
      worldStreams.events(this.o.region),
      worldSubjects.events(this.o.region),
      (data, seq, left) => {
        const r = decode<WorldEventRecord>(data);
        if (r?.v === 1 && typeof r.uid === "string") {
          const have = this.records.get(r.uid);
          if (!have || have.seq < seq) this.records.set(r.uid, { record: r, seq });
        }
        if (left === 0) caughtUp();
        this.o.onChange();
      },
    );
    await follow(worldStreams.live(this.o.region), worldSubjects.lives(this.o.region), (data) => {
      const r = decode<WorldLiveReport>(data);
      if (r?.v === 1) this.live.set(`${r.zone}/${r.map}`, r);
      this.o.onChange();
    });
    if (empty) caughtUp();
  }

  /** Live reports younger than the live stream's age limit. */
  reports(): WorldLiveReport[] {
    const now = (this.o.now ?? Date.now)();
    return [...this.live.values()].filter((r) => now - r.at < LIVE_MAX_AGE_MS);
  }

  /** Writes a record if the subject still holds what we last saw; false when it did not. */
  async put(record: WorldEventRecord): Promise<boolean> {
    if (!this.js || !this.reachable) return false;
    const have = this.records.get(record.uid);
    try {
      const ack = await this.js.publish(worldSubjects.event(this.o.region, record.uid), encode(record), {
        expect: { lastSubjectSequence: have?.seq ?? 0 },
      });
      this.records.set(record.uid, { record, seq: ack.seq });
      return true;
    } catch (err) {
      this.o.log.warn("world event record not written", {
        region: this.o.key,
        occurrence: record.id,
        err: String((err as Error)?.message ?? err),
      });
      return false;
    }
  }

  /** Removes a WorldEvent's record for good (the resource is gone and its occurrence ended). */
  async purge(uid: string): Promise<void> {
    if (!this.nc || !this.reachable) return;
    const jsm = await jetstreamManager(this.nc);
    await jsm.streams.purge(worldStreams.events(this.o.region), {
      filter: worldSubjects.event(this.o.region, uid),
    });
    this.records.delete(uid);
  }

  private async teardown(): Promise<void> {
    this.connected = false;
    this.synced = false;
    const closers = this.closers.splice(0);
    for (const c of closers) await c();
    this.nc = undefined;
    this.js = undefined;
  }

  async close(): Promise<void> {
    this.stopped = true;
    await this.teardown();
    await this.running?.catch(() => undefined);
  }
}

/**
 * The NATS address of a Region, as the operator gives it to the Region's pods: its managed
 * store's Service, or the external endpoints. `override` (one NATS for every Region: development
 * and tests) wins.
 */
export function regionNatsUrl(
  region: {
    metadata: { name: string; namespace?: string };
    spec?: { dataStores?: { nats?: { mode?: string; external?: { endpoints?: string[] } } } };
  },
  override?: (namespace: string, name: string) => string | undefined,
): string {
  const ns = region.metadata.namespace ?? "default";
  const forced = override?.(ns, region.metadata.name);
  if (forced) return forced;
  const nats = region.spec?.dataStores?.nats;
  if (nats?.mode === "External" && nats.external?.endpoints?.length)
    return nats.external.endpoints.map((e) => (/^[a-z]+:\/\//.test(e) ? e : `nats://${e}`)).join(",");
  return `nats://${region.metadata.name}-nats.${ns}.svc:4222`;
}

/**
 * The orchestrator's access to a Region's managed NATS: its user there
 * (`hybridp2p-orchestrator@<region>`, password under the key `orchestrator` of
 * `<region>-nats-credentials`) and the Region's CA (`ca.crt` of `<region>-ca`), both made by the
 * operator, read by name. Undefined for an external NATS (this process's own HYBRIDP2P_NATS_*).
 */
export function managedNatsAccess(
  region: {
    metadata: { name: string; namespace?: string };
    spec?: { dataStores?: { nats?: { mode?: string } } };
  },
  servers: string,
  getSecret: (namespace: string, name: string) => Promise<Record<string, string> | undefined>,
): (() => Promise<StoreAccess>) | undefined {
  if (region.spec?.dataStores?.nats?.mode === "External") return undefined;
  const r = region.metadata.name;
  const ns = region.metadata.namespace ?? "default";
  return async () => {
    const need = async (name: string, key: string) => {
      const v = (await getSecret(ns, name))?.[key];
      if (!v) throw new Error(`Secret "${name}" (key ${key}) not found in namespace "${ns}"`);
      return v;
    };
    const password = await need(GENERATED_SECRET.credentials(r, "nats"), "orchestrator");
    const ca = await need(GENERATED_SECRET.ca(r), "ca.crt");
    return {
      store: "nats",
      url: servers,
      username: natsUserName("orchestrator", r),
      password,
      tlsDir: materialise(`${ns}.${GENERATED_SECRET.ca(r)}`, { "ca.crt": ca }),
    };
  };
}
