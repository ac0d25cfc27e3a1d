// The flag plane inside the operator: on every change of a P2PPolicy, Zone or Region, compile
// and publish (leader only, fenced); on every report change, fold the reports into Zone and
// P2PPolicy status and record fallback Events (leader only).
//
// The operator calls:
//   const plane = startFlagPlane({ etcd, kubeConfig, identity });   // at start-up
//   await plane.lead();     // when this instance becomes leader (takes the fencing token)
//   plane.follow();         // when it loses leadership
//   await plane.stop();     // at shutdown
// With `source` unset the plane runs its own informers on the three kinds; with `source` set it
// reads the operator's caches and the operator calls plane.changed() on their events.
import {
  CustomObjectsApi,
  type KubeConfig,
  type KubernetesObject,
  makeInformer,
} from "@kubernetes/client-node";
import type { Etcd3 } from "etcd3";
import type { FlagLogger } from "../../platform/flags/client.ts";
import { consoleLogger } from "../../platform/flags/client.ts";
import { sleep } from "../../platform/time.ts";
import { GROUP, P2P_POLICY, REGION, VERSION, ZONE } from "../api/constants.ts";
import {
  type CompiledFlags,
  compile,
  type PolicyInput,
  type RegionInput,
  type ZoneInput,
} from "./compiler.ts";
import { FencedError, FlagPublisher, type PublishResult, readPointer } from "./publisher.ts";
import { ReportWatcher } from "./reports.ts";
import { foldStatus, type PolicyForFold, type ZoneFlagStatus, type ZoneForFold } from "./status.ts";
import { type Condition, FlagStatusWriter, nowSeconds, withTransitions } from "./writer.ts";

type Zone = ZoneInput & ZoneForFold & { metadata: { uid?: string } };
type Policy = PolicyInput & PolicyForFold & { status?: { conditions?: Condition[] } };

export interface FlagSource {
  policies(): readonly Policy[];
  zones(): readonly Zone[];
  regions(): readonly RegionInput[];
}

export interface FlagPlaneOptions {
  etcd: Etcd3;
  kubeConfig: KubeConfig;
  /** This operator instance (pod name): recorded as the publisher and in Events. */
  identity: string;
  prefix?: string;
  /** Only this namespace (own informers only). */
  namespace?: string;
  source?: FlagSource;
  log?: FlagLogger;
  /** Called after every publish attempt that got through (metrics, benchmarks). */
  onPublish?: (result: PublishResult) => void;
}

export interface FlagPlane {
  lead(): Promise<void>;
  follow(): void;
  /** Something the compile reads changed (only needed with an external `source`). */
  changed(): void;
  /** The last publish (for tests and metrics). */
  lastPublish(): PublishResult | undefined;
  /** Resolves when the next compile-and-publish and status fold have run (tests). */
  settled(): Promise<void>;
  stop(): Promise<void>;
}

function ownSource(kc: KubeConfig, namespace: string | undefined, onChange: () => void) {
  const api = kc.makeApiClient(CustomObjectsApi);
  const informers = [P2P_POLICY, ZONE, REGION].map((kind) => {
    const path =
      namespace === undefined
        ? `/apis/${GROUP}/${VERSION}/${kind.plural}`
        : `/apis/${GROUP}/${VERSION}/namespaces/${namespace}/${kind.plural}`;
    const list = () =>
      namespace === undefined
        ? api.listClusterCustomObject({ group: GROUP, version: VERSION, plural: kind.plural })
        : api.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural: kind.plural });
    const inf = makeInformer<KubernetesObject>(kc, path, list);
    // The compile reads spec, labels, annotations and deletion only: a status write (ours, on
    // every report burst) must not trigger a compile.
    const seen = new Map<string, string>();
    const fingerprint = (o: KubernetesObject) =>
      JSON.stringify([
        o.metadata?.generation,
        o.metadata?.labels,
        o.metadata?.annotations,
        o.metadata?.deletionTimestamp,
      ]);
    const key = (o: KubernetesObject) => `${o.metadata?.namespace}/${o.metadata?.name}`;
    inf.on("add", (o) => {
      seen.set(key(o), fingerprint(o));
      onChange();
    });
    inf.on("update", (o) => {
      const f = fingerprint(o);
      if (seen.get(key(o)) === f) return;
      seen.set(key(o), f);
      onChange();
    });
    inf.on("delete", (o) => {
      seen.delete(key(o));
      onChange();
    });
    inf.on("error", () => setTimeout(() => void inf.start().catch(() => undefined), 1000));
    return inf;
  });
  const [policies, zones, regions] = informers as [
    (typeof informers)[0],
    (typeof informers)[0],
    (typeof informers)[0],
  ];
  const source: FlagSource = {
    policies: () => policies.list() as unknown as Policy[],
    zones: () => zones.list() as unknown as Zone[],
    regions: () => regions.list() as unknown as RegionInput[],
  };
  return {
    source,
    start: () => Promise.all(informers.map((i) => i.start())),
    stop: () => Promise.all(informers.map((i) => i.stop())),
  };
}

export function startFlagPlane(opts: FlagPlaneOptions): FlagPlane {
  const log = opts.log ?? consoleLogger;
  const publisher = new FlagPublisher({ client: opts.etcd, identity: opts.identity, prefix: opts.prefix });
  const writer = new FlagStatusWriter(opts.kubeConfig, opts.identity);
  const reports = new ReportWatcher(opts.etcd, publisher.layout, { onError: (m) => log.warn(m) });
  let leading = false;
  let stopped = false;
  let compiled: CompiledFlags | undefined;
  let liveEpoch = 0;
  let last: PublishResult | undefined;
  // What this instance wrote last, so a lagging cache does not cause repeated writes or Events.
  const writtenZones = new Map<string, ZoneFlagStatus>();
  const writtenPolicies = new Map<string, string>();
  let waiters: (() => void)[] = [];

  // Two coalescing loops: compile+publish, and fold+write.
  const loop = (name: string, body: () => Promise<void>, minIntervalMs = 0) => {
    let running = false;
    let again = false;
    let timer: NodeJS.Timeout | undefined;
    const run = async (): Promise<void> => {
      if (running) {
        again = true;
        return;
      }
      running = true;
      try {
        do {
          again = false;
          if (!leading || stopped) break;
          await body();
          // Reports arrive in bursts (every replica after a publish): fold a burst, not each report.
          if (again && minIntervalMs > 0) await sleep(minIntervalMs);
        } while (again);
      } catch (err) {
        if (err instanceof FencedError) {
          log.warn("flag plane deposed; no longer publishing", { error: err.message });
          leading = false;
        } else {
          log.error(`flag plane ${name} failed; retrying`, { error: String(err) });
          clearTimeout(timer);
          timer = setTimeout(() => void run(), 1000);
        }
      } finally {
        running = false;
      }
    };
    return { kick: () => void run(), idle: () => !running && !again, cancel: () => clearTimeout(timer) };
  };

  let src: FlagSource;
  const publishLoop = loop("publish", async () => {
    const next = compile({ policies: src.policies(), zones: src.zones(), regions: src.regions() });
    last = await publisher.publish(next);
    compiled = next;
    liveEpoch = last.epoch;
    opts.onPublish?.(last);
    if (last.published)
      log.info("flags published", { epoch: last.epoch, zones: last.zones, chunks: last.chunks });
    foldLoop.kick();
  });
  const foldLoop = loop(
    "status",
    async () => {
      if (compiled === undefined) return;
      const zones = src.zones().map((z) => {
        const key = `${z.metadata.namespace}/${z.metadata.name}`;
        const mine = writtenZones.get(key);
        return mine === undefined ? z : { ...z, status: { ...z.status, ...nullsToUndefined(mine) } };
      });
      const policies = src.policies();
      const now = nowSeconds();
      const out = foldStatus({
        compiled,
        epoch: liveEpoch,
        reports: reports.reports(),
        zones,
        policies,
        now,
      });
      const writes: (() => Promise<void>)[] = [];
      for (const z of zones) {
        const key = `${z.metadata.namespace}/${z.metadata.name}`;
        const s = out.zones.get(key);
        if (s === undefined || sameZoneStatus(s, z.status)) continue;
        writes.push(async () => {
          await writer.patchZone(z.metadata.namespace!, z.metadata.name!, s).catch((err) => {
            if (!String(err).includes("404")) throw err;
          });
          writtenZones.set(key, s);
        });
      }
      await inParallel(writes, STATUS_WRITE_CONCURRENCY);
      const uids = new Map(
        src.zones().map((z) => [`${z.metadata.namespace}/${z.metadata.name}`, z.metadata.uid]),
      );
      for (const e of out.events) {
        await writer
          .event(e, uids.get(`${e.namespace}/${e.name}`))
          .catch((err) => log.warn("could not record event", { reason: e.reason, error: String(err) }));
      }
      for (const p of policies) {
        const key = `${p.metadata.namespace}/${p.metadata.name}`;
        const s = out.policies.get(key);
        if (s === undefined) continue;
        const conditions = withTransitions(p.status?.conditions, s.conditions, s.observedGeneration, now);
        const body = { ...s, conditions };
        const fingerprint = JSON.stringify({ ...s });
        if (writtenPolicies.get(key) === fingerprint) continue;
        await writer.patchPolicy(p.metadata.namespace!, p.metadata.name!, body).catch((err) => {
          if (!String(err).includes("404")) throw err;
        });
        writtenPolicies.set(key, fingerprint);
      }
    },
    FOLD_MIN_INTERVAL_MS,
  );
  const notify = () => {
    if (publishLoop.idle() && foldLoop.idle()) {
      const w = waiters;
      waiters = [];
      for (const f of w) f();
    }
  };
  const ticker = setInterval(notify, 20);
  ticker.unref();

  const own =
    opts.source === undefined
      ? ownSource(opts.kubeConfig, opts.namespace, () => publishLoop.kick())
      : undefined;
  src = opts.source ?? own!.source;
  reports.on("change", () => foldLoop.kick());
  const started = Promise.all([own?.start(), reports.start()]).catch((err) =>
    log.error("flag plane could not start its watches", { error: String(err) }),
  );

  return {
    async lead() {
      await started;
      await publisher.acquire();
      const live = await readPointer(opts.etcd, publisher.layout);
      liveEpoch = live.pointer?.epoch ?? 0;
      writtenZones.clear();
      writtenPolicies.clear();
      leading = true;
      publishLoop.kick();
    },
    follow() {
      leading = false;
      publisher.release();
    },
    changed: () => publishLoop.kick(),
    lastPublish: () => last,
    settled: () =>
      new Promise<void>((resolve) => {
        waiters.push(resolve);
      }),
    async stop() {
      stopped = true;
      leading = false;
      clearInterval(ticker);
      publishLoop.cancel();
      foldLoop.cancel();
      await reports.close();
      await own?.stop();
    },
  };
}

const STATUS_WRITE_CONCURRENCY = 16;
const FOLD_MIN_INTERVAL_MS = 50;

async function inParallel(tasks: (() => Promise<void>)[], limit: number): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < tasks.length) await tasks[next++]!();
  };
  await Promise.all(Array.from({ length: Math.min(limit, tasks.length) }, worker));
}

function nullsToUndefined(s: ZoneFlagStatus): Record<string, unknown> {
  return Object.fromEntries(Object.entries(s).map(([k, v]) => [k, v === null ? undefined : v]));
}

function sameZoneStatus(s: ZoneFlagStatus, cur: ZoneForFold["status"]): boolean {
  const c = cur ?? {};
  return (
    s.mode === c.mode &&
    s.policy === (c.policy ?? null) &&
    s.appliedEpoch === (c.appliedEpoch ?? null) &&
    s.replicas.applied === c.replicas?.applied &&
    s.fallbackReason === (c.fallbackReason ?? null) &&
    s.fallbackSince === (c.fallbackSince ?? null) &&
    s.p2pPeers?.connected === c.p2pPeers?.connected &&
    s.p2pPeers?.meshes === c.p2pPeers?.meshes &&
    s.p2pPeers?.relayed === c.p2pPeers?.relayed
  );
}
