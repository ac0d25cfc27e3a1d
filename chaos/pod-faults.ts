// Pod faults on the real-node cluster the e2e suite uses (testkit/local/node.ts; or the cluster
// KUBECONFIG names, which must already run the images): the chart with the operator, one Region
// (TLS, managed stores) with a server-mode Zone of two map-server replicas, and CHAOS_POD_BOTS
// (default 50) bots, signed up through the login and char servers, playing through the gateway's
// Service, each reconnecting by itself when its connection closes. Then CHAOS_POD_FAULTS
// (default 6) faults, one at a time, in turn:
//   evict    a map-server pod through the Eviction API (graceful; the PodDisruptionBudget allows it)
//   sigkill  a map-server container's processes SIGKILLed on the node (no shutdown at all: its
//            maps move only when its etcd lease expires; the kubelet restarts the container)
//   gateway  the gateway pod deleted
//   kill     a map-server pod deleted with grace period 0 (the kubelet still sends SIGTERM first)
// The victim map server is the one owning prontera, where new characters start and the bots play.
//
// Checked after each fault (violations):
// - every map of the Zone is owned (the flag store's ownership keys) by a live, ready map server
//   other than the victim, within CHAOS_POD_BOUND_S (default 90);
// - every bot is playing again (connected, and AOI frames arriving after the recovery point)
//   within the same bound;
// - the status says what happened: the Zone (map-server faults) or the Region (gateway fault)
//   left Ready while a pod was missing, and is Ready again afterwards.
//
//   RESULT chaos scenario=pod-faults runs=.. violations=.. bots=.. faults=.. ownership_moves=..
//     bots_reconnected=.. max_reconnect_seconds=.. zone_status_updates=..
import { readdirSync, readFileSync } from "node:fs";
import { KubeConfig } from "@kubernetes/client-node";
import { KubeClient } from "../platform/kube/kube.ts";
import { sleep } from "../platform/time.ts";
import { clusterTools, createKeysetSecret, installChart, regionTls } from "../testkit/cluster.ts";
import { RegionStores } from "../testkit/cluster-stores.ts";
import { buildImages, type Running, startLocalEnv } from "../testkit/local/services.ts";
import { AuthClient } from "../workloads/auth/client.ts";
import { GameClient } from "../workloads/client/client.ts";
import { nodeFetch } from "../workloads/client/https.ts";
import type { ClientTls } from "../workloads/client/socket.ts";
import { nodeSocketWith } from "../workloads/client/ws.ts";
import type { Scenario } from "./scenario.ts";

const OPERATOR_NS = "hybrid-p2p-pod-faults";
const RELEASE = "pod-faults";
const NS = "pod-faults";
const REGION = "pf";
const ZONE = "town";
const MAPS = ["prontera", "prt_in", "prt_church"];
/** Where new characters start (the char server's default start point): every bot plays here. */
const START_MAP = "prontera";
const PREFIX = "/hybridp2p/v1/";
const G = "/apis/hybridp2p.io/v1alpha1";
const small = { requests: { cpu: "30m" } };

type FaultKind = "evict" | "sigkill" | "gateway" | "kill";
const KINDS: FaultKind[] = ["evict", "sigkill", "gateway", "kill"];

/** SIGKILLs the processes of a pod's containers on this host (the local node): the container
 * dies without its shutdown, the kubelet restarts it in the same pod. Returns how many. */
function sigkillPod(namespace: string, pod: string): number {
  let killed = 0;
  for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    let env: string[];
    try {
      env = readFileSync(`/proc/${pid}/environ`, "latin1").split("\0");
    } catch {
      continue;
    }
    if (!env.includes(`HOSTNAME=${pod}`) || !env.includes(`POD_NAMESPACE=${namespace}`)) continue;
    try {
      process.kill(Number(pid), "SIGKILL");
      killed++;
    } catch {}
  }
  return killed;
}

interface Pod {
  metadata: { name: string; uid: string; deletionTimestamp?: string };
  status?: { podIP?: string; conditions?: { type: string; status: string }[] };
}
interface Cond {
  type: string;
  status: string;
  reason?: string;
  message?: string;
}
interface WithConds {
  metadata: { generation?: number };
  status?: { observedGeneration?: number; conditions?: Cond[] };
}
const podReady = (p: Pod) =>
  !p.metadata.deletionTimestamp &&
  p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True");
const ready = (o: WithConds | undefined) =>
  o?.status?.conditions?.find((c) => c.type === "Ready")?.status === "True";

/** One player that keeps playing: walks every second, reconnects (a fresh token) whenever its
 * connection closes. */
class Bot {
  client: GameClient | undefined;
  /** When the last AOI frame arrived (the map owner's stream), ms since the epoch. */
  lastAoi = 0;
  sessions = 0;
  failures = 0;
  private lastCount = 0;
  private stopped = false;
  private loop: Promise<void> | undefined;

  private readonly id: string;
  private readonly connect: (id: string) => Promise<GameClient>;
  private readonly log: (m: string) => void;

  constructor(id: string, connect: (id: string) => Promise<GameClient>, log: (m: string) => void) {
    this.id = id;
    this.connect = connect;
    this.log = log;
  }

  start(): Promise<void> {
    let first!: () => void;
    const connected = new Promise<void>((r) => {
      first = r;
    });
    this.loop = (async () => {
      let backoff = 200;
      while (!this.stopped) {
        let c: GameClient;
        try {
          c = await this.connect(this.id);
        } catch (err) {
          this.failures++;
          if (this.failures === 1 || this.failures % 20 === 0)
            this.log(`${this.id}: connect failed (${this.failures}): ${(err as Error).message}`);
          await sleep(backoff);
          backoff = Math.min(backoff * 2, 2000);
          continue;
        }
        backoff = 200;
        this.client = c;
        this.lastCount = 0;
        this.sessions++;
        first();
        const walk = setInterval(
          () => c.move(150 + Math.floor(Math.random() * 12), 186 + Math.floor(Math.random() * 12)),
          1000,
        );
        await c.closed;
        clearInterval(walk);
        this.client = undefined;
      }
    })();
    return connected;
  }

  /** Samples the AOI count (called often): a rise means the map owner is sending. */
  sample(now: number): void {
    const n = this.client?.counts.get("aoi") ?? 0;
    if (this.client && n > this.lastCount) this.lastAoi = now;
    this.lastCount = n;
  }

  playingSince(t: number): boolean {
    return this.client !== undefined && this.lastAoi > t;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.client?.close();
    await this.loop;
  }
}

export const podFaults: Scenario = async (log) => {
  const faultCount = Number(process.env.CHAOS_POD_FAULTS ?? 6);
  const botCount = Number(process.env.CHAOS_POD_BOTS ?? 50);
  const boundMs = Number(process.env.CHAOS_POD_BOUND_S ?? 90) * 1000;
  const violations: string[] = [];
  const figures = {
    bots: botCount,
    faults: 0,
    ownership_moves: 0,
    bots_reconnected: 0,
    max_reconnect_seconds: 0,
    zone_status_updates: 0,
  };

  let running: Running | undefined;
  let kubeconfig = process.env.KUBECONFIG;
  if (!kubeconfig) {
    running = await startLocalEnv({
      services: ["kube", "cluster"],
      images: buildImages(["build-images.sh"], ["build-store-images.sh"]),
      log: (m) => log(`[local] ${m}`),
    });
    kubeconfig = running.env.kubeconfig!;
  }
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  const client = await new KubeClient(kc).init();
  const { helm, newKeyset } = clusterTools(kubeconfig);
  const stores = new RegionStores(kubeconfig, NS, REGION);
  const bots: Bot[] = [];
  let sampler: NodeJS.Timeout | undefined;
  let statusPoll: NodeJS.Timeout | undefined;

  const get = <T>(path: string) => client.request<T>("GET", path);
  const apply = (path: string, obj: unknown) =>
    client.request("PATCH", path, {
      query: { fieldManager: "chaos", force: true },
      body: obj,
      contentType: "application/apply-patch+yaml",
    });
  const pods = async (selector: string) =>
    (
      await get<{ items: Pod[] }>(
        `/api/v1/namespaces/${NS}/pods?labelSelector=${encodeURIComponent(selector)}`,
      )
    ).items;
  const mapServers = () => pods(`hybridp2p.io/zone=${ZONE}`);
  const gateways = () => pods("app.kubernetes.io/component=gateway");
  const zonePath = `${G}/namespaces/${NS}/zones/${ZONE}`;
  const regionPath = `${G}/namespaces/${NS}/regions/${REGION}`;
  /** Each map's owner, and its ownership's create revision (a new one: a new ownership). */
  const ownership = async (): Promise<Record<string, { pod: string; rev: string }>> => {
    const dir = `${PREFIX}ownership/maps/${REGION}/${ZONE}/`;
    const res = await (await stores.flagStore()).getAll().prefix(dir).exec();
    return Object.fromEntries(
      res.kvs
        .map((kv): [string, { pod: string; rev: string }] => [
          kv.key.toString().slice(dir.length),
          { pod: kv.value.toString(), rev: String(kv.create_revision) },
        ])
        .filter(([k]) => !k.startsWith("_pods/")),
    );
  };
  const owners = async (): Promise<Record<string, string>> =>
    Object.fromEntries(Object.entries(await ownership()).map(([m, o]) => [m, o.pod]));
  const until = async <T>(what: string, probe: () => Promise<T | undefined>, ms: number) => {
    const end = Date.now() + ms;
    let last: unknown;
    while (Date.now() < end) {
      try {
        const v = await probe();
        if (v !== undefined) return v;
      } catch (err) {
        last = err;
      }
      await sleep(300);
    }
    throw new Error(`${what}: not within ${ms / 1000} s${last ? ` (last error: ${String(last)})` : ""}`);
  };

  const within = <T>(what: string, p: Promise<T>, ms: number) => {
    let timer: NodeJS.Timeout | undefined;
    return Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: not within ${ms / 1000} s`)), ms);
      }),
    ]).finally(() => clearTimeout(timer));
  };

  try {
    // ---- the Region --------------------------------------------------------------------
    log("installing the chart (operator, no orchestrator)");
    await installChart(client, helm, RELEASE, OPERATOR_NS, [
      "--set",
      "orchestrator.enabled=false",
      "--wait",
      "--timeout",
      "300s",
    ]);
    await client.request("POST", "/api/v1/namespaces", { body: { metadata: { name: NS } } });
    await createKeysetSecret(client, NS, REGION, newKeyset());
    await apply(regionPath, {
      apiVersion: "hybridp2p.io/v1alpha1",
      kind: "Region",
      metadata: { name: REGION, namespace: NS },
      // Small CPU requests: the whole Region, the operator and the bots share two cores here.
      // No coordinator (no P2P here). Players log in through the login and char servers (the
      // gateway checks each token's login session): new characters start on prontera.
      spec: {
        gateway: { replicas: 1, resources: small },
        coordinator: { replicas: 0 },
        loginServer: { replicas: 1, resources: small },
        charServer: { replicas: 1, resources: small },
        dataStores: Object.fromEntries(
          ["etcd", "nats", "postgres", "dragonfly"].map((s) => [
            s,
            { mode: "Managed", managed: { resources: small } },
          ]),
        ),
      },
    });
    await apply(zonePath, {
      apiVersion: "hybridp2p.io/v1alpha1",
      kind: "Zone",
      metadata: { name: ZONE, namespace: NS, labels: { "hybridp2p.io/zone-type": "town" } },
      spec: {
        regionRef: { name: REGION },
        maps: MAPS.map((name) => ({ name, type: "Town" })),
        mapServer: { replicas: 2, resources: { requests: { cpu: "100m" } } },
      },
    });
    const t0 = Date.now();
    await until(
      "the Zone Ready",
      async () => (ready(await get<WithConds>(zonePath)) ? true : undefined),
      600_000,
    );
    await until(
      "two ready map servers sharing the maps",
      async () => {
        const live = (await mapServers()).filter(podReady).map((p) => p.metadata.name);
        const o = await owners();
        return live.length === 2 &&
          MAPS.every((m) => live.includes(o[m] ?? "")) &&
          new Set(Object.values(o)).size === 2
          ? true
          : undefined;
      },
      300_000,
    );
    await until(
      "the gateway ready",
      async () => ((await gateways()).some(podReady) ? true : undefined),
      300_000,
    );
    // 50 new accounts from one address: more than the login server's sign-up limit (20 an hour
    // per address), lifted for the load as an operator would (an env var the operator leaves be).
    const loginPath = `/apis/apps/v1/namespaces/${NS}/deployments/${REGION}-login-server`;
    const login = await get<{ spec: { template: { spec: { containers: { name: string }[] } } } }>(loginPath);
    await client.request("PATCH", loginPath, {
      body: {
        spec: {
          template: {
            spec: {
              containers: [
                {
                  name: login.spec.template.spec.containers[0]!.name,
                  env: [{ name: "HYBRIDP2P_SIGNUPS_PER_ADDRESS", value: "100000" }],
                },
              ],
            },
          },
        },
      },
      contentType: "application/strategic-merge-patch+json",
    });
    await until(
      "the login server restarted with the sign-up limit lifted",
      async () => {
        const d = await get<{
          metadata: { generation: number };
          status?: {
            observedGeneration?: number;
            updatedReplicas?: number;
            availableReplicas?: number;
            replicas?: number;
          };
        }>(loginPath);
        const s = d.status ?? {};
        return s.observedGeneration === d.metadata.generation &&
          s.updatedReplicas === 1 &&
          s.availableReplicas === 1 &&
          s.replicas === 1
          ? true
          : undefined;
      },
      180_000,
    );
    log(`Region and Zone ready in ${Math.round((Date.now() - t0) / 1000)} s`);

    // ---- the players -------------------------------------------------------------------
    const svc = await get<{ spec: { clusterIP: string; ports: { port: number }[] } }>(
      `/api/v1/namespaces/${NS}/services/${REGION}-gateway`,
    );
    const url = `wss://${svc.spec.clusterIP}:${svc.spec.ports[0]!.port}`;
    const tls: ClientTls = await regionTls(client, NS, REGION);
    const socket = nodeSocketWith(tls);
    const prefix = `pf${Date.now().toString(36)}`;
    const ip = async (component: string) =>
      (await get<{ spec: { clusterIP: string } }>(`/api/v1/namespaces/${NS}/services/${REGION}-${component}`))
        .spec.clusterIP;
    const accounts = {
      loginUrl: `https://${await ip("login-server")}:6900`,
      charUrl: `https://${await ip("char-server")}:6121`,
      fetch: nodeFetch(tls),
    };
    // Signed in once per bot (again only after a failure); each connection enters the game anew.
    const signedIn = new Map<string, AuthClient>();
    const connect = async (name: string) => {
      let auth = signedIn.get(name);
      try {
        if (!auth) {
          auth = new AuthClient(accounts);
          await auth.loginOrSignUp(name, `${name}-bot-password`);
          signedIn.set(name, auth);
        }
        const { token } = await auth.enterAs(name);
        return await GameClient.connect({ url, token, socket, decodeMode: "light", timeoutMs: 10_000 });
      } catch (err) {
        signedIn.delete(name);
        throw err;
      }
    };
    for (let i = 0; i < botCount; i++) bots.push(new Bot(`${prefix}${i}`, connect, log));
    sampler = setInterval(() => {
      const now = Date.now();
      for (const b of bots) b.sample(now);
    }, 100);
    // In waves of 10: the gateway and the map servers share the cores with everything else.
    for (let i = 0; i < bots.length; i += 10)
      await within(
        `bots ${i}..${i + 9} connected`,
        Promise.all(bots.slice(i, i + 10).map((b) => b.start())),
        120_000,
      );
    const since = Date.now();
    await until(
      `all ${botCount} bots playing`,
      async () => (bots.every((b) => b.playingSince(since)) ? true : undefined),
      120_000,
    );
    log(`${botCount} bots playing`);

    // ---- status watch (polled: a missing pod lasts seconds, far longer than the period) ---
    const zoneSeen: WithConds[] = [];
    const regionSeen: WithConds[] = [];
    let lastZone = "";
    const snapshot = async () => {
      const [z, r] = await Promise.all([get<WithConds>(zonePath), get<WithConds>(regionPath)]);
      const zs = JSON.stringify(z.status ?? {});
      if (zs !== lastZone) {
        if (lastZone !== "") figures.zone_status_updates++;
        lastZone = zs;
      }
      zoneSeen.push(z);
      regionSeen.push(r);
    };
    let polling = false;
    statusPoll = setInterval(() => {
      if (polling) return;
      polling = true;
      void snapshot()
        .catch(() => undefined)
        .finally(() => {
          polling = false;
        });
    }, 250);

    // ---- the faults --------------------------------------------------------------------
    for (let n = 0; n < faultCount; n++) {
      const kind = KINDS[n % KINDS.length]!;
      const held = await ownership();
      const before = Object.fromEntries(Object.entries(held).map(([m, o]) => [m, o.pod]));
      const sessionsBefore = bots.reduce((s, b) => s + b.sessions, 0);
      zoneSeen.length = 0;
      regionSeen.length = 0;
      let victim: string;
      const tFault = Date.now();
      if (kind === "gateway") {
        const gw = (await gateways()).find(podReady);
        if (!gw) throw new Error("no ready gateway pod");
        victim = gw.metadata.name;
        await client.request("DELETE", `/api/v1/namespaces/${NS}/pods/${victim}`);
      } else {
        victim = before[START_MAP]!;
        const sigkilled = kind === "sigkill" && sigkillPod(NS, victim) > 0;
        if (kind === "sigkill" && !sigkilled) {
          // Not this host's node (a cluster KUBECONFIG names): the API's immediate delete instead.
          log(`  no process of ${victim} on this host: deleting it with grace period 0 instead`);
        }
        if (kind === "kill" || (kind === "sigkill" && !sigkilled)) {
          await client.request("DELETE", `/api/v1/namespaces/${NS}/pods/${victim}`, {
            body: { apiVersion: "v1", kind: "DeleteOptions", gracePeriodSeconds: 0 },
          });
        } else if (kind === "evict") {
          // A disruption budget may refuse (429) for a moment: retried as kubectl drain does.
          await until(
            `the eviction of ${victim}`,
            () =>
              client
                .request("POST", `/api/v1/namespaces/${NS}/pods/${victim}/eviction`, {
                  body: {
                    apiVersion: "policy/v1",
                    kind: "Eviction",
                    metadata: { name: victim, namespace: NS },
                  },
                })
                .then(() => true),
            30_000,
          );
        }
      }
      figures.faults++;
      log(`fault ${n + 1}/${faultCount}: ${kind} ${victim}`);
      const victimMaps = Object.keys(before).filter((m) => before[m] === victim);
      let recovered = tFault;
      const problems: string[] = [];
      try {
        if (kind !== "gateway") {
          // Every map owned by a ready map server, each of the victim's under a new ownership
          // (a new create revision: its lease was revoked or expired and a live pod took it;
          // a StatefulSet's replacement, or a restarted container, has the victim's name).
          await until(
            `maps ${victimMaps.join(", ")} taken over by a live map server`,
            async () => {
              const live = (await mapServers()).filter(podReady).map((p) => p.metadata.name);
              const o = await ownership();
              return MAPS.every((m) => live.includes(o[m]?.pod ?? "")) &&
                victimMaps.every((m) => o[m]!.rev !== held[m]!.rev)
                ? o
                : undefined;
            },
            boundMs,
          );
          figures.ownership_moves += victimMaps.length;
        } else {
          await until(
            "the gateway pod replaced",
            async () =>
              (await gateways()).some((p) => podReady(p) && p.metadata.name !== victim) ? true : undefined,
            boundMs,
          );
        }
        recovered = Date.now();
        await until(
          `all ${botCount} bots playing again`,
          async () => (bots.every((b) => b.playingSince(recovered)) ? true : undefined),
          Math.max(10_000, boundMs - (Date.now() - tFault)),
        );
        const seconds = (Date.now() - tFault) / 1000;
        figures.max_reconnect_seconds = Math.max(
          figures.max_reconnect_seconds,
          Math.round(seconds * 10) / 10,
        );
        log(`  bots all playing ${seconds.toFixed(1)} s after the fault`);
      } catch (err) {
        problems.push(`${kind} ${victim}: ${(err as Error).message}`);
        const behind = bots.filter((b) => !b.playingSince(recovered)).length;
        if (behind > 0) problems.push(`${kind} ${victim}: ${behind} of ${botCount} bots not playing`);
      }
      figures.bots_reconnected += bots.reduce((s, b) => s + b.sessions, 0) - sessionsBefore;

      // Everything back (both map servers, the gateway), and the status back to Ready.
      try {
        await until(
          "the Zone and the Region Ready again with every pod back",
          async () => {
            const ms = (await mapServers()).filter(podReady).length;
            const gw = (await gateways()).filter(podReady).length;
            const [z, r] = await Promise.all([get<WithConds>(zonePath), get<WithConds>(regionPath)]);
            return ms === 2 && gw === 1 && ready(z) && ready(r) ? true : undefined;
          },
          boundMs,
        );
        // Both map servers owning maps again (the returned replica takes its share back) and
        // every bot playing, before the next fault.
        await until(
          "the maps spread over both map servers",
          async () => {
            const live = (await mapServers()).filter(podReady).map((p) => p.metadata.name);
            const o = await owners();
            return MAPS.every((m) => live.includes(o[m] ?? "")) ? true : undefined;
          },
          boundMs,
        );
        const settled = Date.now();
        await until(
          "every bot playing before the next fault",
          async () => (bots.every((b) => b.playingSince(settled)) ? true : undefined),
          boundMs,
        );
      } catch (err) {
        problems.push(`${kind} ${victim}: ${(err as Error).message}`);
      }
      await sleep(1000); // the last status poll in
      const seen = kind === "gateway" ? regionSeen : zoneSeen;
      const what = kind === "gateway" ? `Region ${REGION}` : `Zone ${ZONE}`;
      const notReady = seen.find((o) => !ready(o));
      if (!notReady)
        problems.push(`${kind} ${victim}: the ${what}'s status never left Ready while the pod was missing`);
      else {
        const c = notReady.status?.conditions?.find((x) => x.type === "Ready");
        log(`  ${what} said: Ready=${c?.status} ${c?.reason}: ${c?.message}`);
      }
      violations.push(...problems);
      for (const p of problems) log(`  VIOLATION ${p}`);
    }
    const events = await get<{
      items: { reason: string; message: string; involvedObject: { kind: string } }[];
    }>(`/api/v1/namespaces/${NS}/events?fieldSelector=${encodeURIComponent(`involvedObject.name=${ZONE}`)}`);
    log(
      `Zone events: ${events.items
        .filter((e) => e.involvedObject.kind === "Zone")
        .map((e) => `${e.reason}: ${e.message}`)
        .join(" | ")}`,
    );
  } catch (err) {
    violations.push(`scenario aborted: ${(err as Error).message}`);
  } finally {
    if (sampler) clearInterval(sampler);
    if (statusPoll) clearInterval(statusPoll);
    await Promise.all(bots.map((b) => b.stop().catch(() => undefined)));
    await stores.close().catch(() => undefined);
    await client.request("DELETE", `/api/v1/namespaces/${NS}`).catch(() => undefined);
    if (!running) {
      // A shared cluster: leave it as found (a cluster of our own goes whole).
      await until(
        "the namespace gone",
        async () =>
          (await client.request("GET", `/api/v1/namespaces/${NS}`).then(
            () => false,
            () => true,
          ))
            ? true
            : undefined,
        180_000,
      ).catch(() => undefined);
      try {
        helm(["uninstall", RELEASE, "-n", OPERATOR_NS, "--wait", "--timeout", "120s"]);
      } catch {}
      await client.request("DELETE", `/api/v1/namespaces/${OPERATOR_NS}`).catch(() => undefined);
    }
    client.close();
    await running?.stop();
  }
  return { runs: figures.faults, violations, figures };
};
