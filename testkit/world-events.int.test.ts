// World events across two Regions, against the real local services: WorldEvents, Regions and
// Zones in the local kube-apiserver; two orchestrators as processes (`node workloads/main.ts
// orchestrator`, leader-elected); two Regions, each with its own NATS JetStream server (Region A
// the shared one, Region B a second nats-server, named as the Regions' external NATS), its own
// map server (in process) and gateway; SDK bots in both.
//
// - one WorldEvent (a boss with an announcement) targeting both Regions: bots in both receive the
//   announcement and see the boss; the leading orchestrator is SIGKILLed mid-event: the other one
//   takes over, no second boss appears and nothing is announced twice, and the event ends on time;
// - a Region whose NATS is down when an event starts is Failed, and catches up when it returns;
// - a population-triggered event fires in a Region once enough bots play there.
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import { API_VERSION } from "../operator/api/constants.ts";
import type { KubeClient } from "../platform/kube/kube.ts";
import { resources } from "../platform/kube/kube.ts";
import type { KubeObject } from "../platform/kube/meta.ts";
import { sleep } from "../platform/time.ts";
import { GameClient } from "../workloads/client/client.ts";
import { staticDirectory } from "../workloads/gateway/routing.ts";
import { openMap } from "../workloads/map-server/sim/maps.ts";
import { startTestGateway, type TestGateway } from "./gateway.ts";
import { createNamespace, deleteNamespace, installCrds, testClient, waitFor } from "./kube.ts";
import { startNats, storeCredentialEnv, storePki } from "./local/services.ts";
import {
  createCharacters,
  servicesFrom,
  startTestServer,
  type TestServer,
  unique,
} from "./map-server/harness.ts";
import { logTail, type Proc, startProcess } from "./processes.ts";

const env = inject("localEnv");
const svc = servicesFrom(env);
const main = new URL("../workloads/main.ts", import.meta.url).pathname;
const ZONE = "fields";
const MAP = "evmap";
const BOSS_AT = { x: 24, y: 20 };

const worldEvents = {
  apiVersion: API_VERSION,
  kind: "WorldEvent",
  plural: "worldevents",
  namespaced: true,
} as const;
const collection = (ns: string, kind: string) => `/apis/${API_VERSION}/namespaces/${ns}/${kind}`;

interface RegionUnderTest {
  name: string;
  namespace: string;
  natsUrl: string;
  server: TestServer;
  gateway: TestGateway;
  bots: GameClient[];
}

interface WorldEventObj extends KubeObject {
  status?: {
    phase?: string;
    regions?: Array<{ name: string; state: string; reason?: string; occurrence?: string; endTime?: string }>;
    conditions?: Array<{ type: string; status: string; reason: string }>;
  };
}

describe("world events across two Regions", () => {
  let kube: KubeClient;
  const label = unique("wev");
  const opsNs = unique("wev-ops-");
  const dir = mkdtempSync(join(tmpdir(), "hybridp2p-wev-"));
  const flagPrefix = `/${unique("wevflags")}/v1/`;
  let natsB: { proc: Proc; url: string; port: number };
  const regions: RegionUnderTest[] = [];
  const orchestrators: Array<{ proc: Proc; pod: string }> = [];
  let charIds: string[] = [];
  let nextChar = 0;

  async function startNatsB(port?: number) {
    mkdirSync(join(dir, "logs"), { recursive: true });
    const n = await startNats(dir, port, storePki(join(env.stateDir, "store-pki")));
    return { ...n, port: Number(new URL(n.url).port) };
  }

  function startOrchestrator(pod: string) {
    const proc = startProcess(
      "orchestrator",
      process.execPath,
      [main, "orchestrator"],
      join(dir, `${pod}.log`),
      {
        env: {
          PATH: process.env.PATH,
          KUBECONFIG: env.kubeconfig,
          ...storeCredentialEnv(env),
          POD_NAME: pod,
          POD_NAMESPACE: opsNs,
          HYBRIDP2P_HEALTH_PORT: "0",
          HYBRIDP2P_METRICS_PORT: "0",
          HYBRIDP2P_LEASE_DURATION: "4s",
          HYBRIDP2P_RENEW_DEADLINE: "3s",
          HYBRIDP2P_RETRY_PERIOD: "500ms",
          HYBRIDP2P_ORCHESTRATOR_INTERVAL: "500ms",
        },
      },
    );
    orchestrators.push({ proc, pod });
    return proc;
  }

  async function leader(): Promise<string | undefined> {
    const lease = await kube.get<KubeObject & { spec?: { holderIdentity?: string } }>(
      resources.lease,
      opsNs,
      "hybrid-orchestrator",
    );
    return lease?.spec?.holderIdentity?.replace(/-\d+$/, "");
  }

  async function bot(r: RegionUnderTest): Promise<GameClient> {
    const id = charIds[nextChar++]!;
    const c = await GameClient.connect({ url: r.gateway.url, token: await r.gateway.token(id, MAP) });
    r.bots.push(c);
    return c;
  }

  async function createEvent(name: string, spec: Record<string, unknown>): Promise<WorldEventObj> {
    return kube.request<WorldEventObj>("POST", collection(opsNs, "worldevents"), {
      body: { apiVersion: API_VERSION, kind: "WorldEvent", metadata: { name }, spec },
    });
  }

  const getEvent = (name: string) => kube.get<WorldEventObj>(worldEvents, opsNs, name);

  /** Distinct entity ids named `mob` a bot saw, across the whole run. */
  function watchMobs(c: GameClient, mob: string): Set<number> {
    const seen = new Set<number>();
    c.onMessage((m) => {
      if (m.type === "aoi") for (const e of m.enter) if (e.name === mob) seen.add(e.id);
    });
    return seen;
  }

  const sees = (c: GameClient, mob: string) => [...c.world.values()].some((e) => e.name === mob && e.alive);

  beforeAll(async () => {
    kube = await testClient(env.kubeconfig!);
    await installCrds(kube);
    natsB = await startNatsB();
    charIds = await createCharacters(
      svc.databaseUrl,
      Array.from({ length: 10 }, (_, i) => ({
        name: unique("wb").slice(0, 12),
        hp: 100_000,
        map: MAP,
        x: 20 + (i % 3),
        y: 20 + (Math.floor(i / 3) % 3),
      })),
    );
    await createNamespace(kube, opsNs);
    for (const [suffix, natsUrl] of [
      ["a", svc.natsUrl],
      ["b", natsB.url],
    ] as const) {
      const name = `${label}${suffix}`;
      const namespace = unique(`wev-${suffix}-`);
      await createNamespace(kube, namespace);
      await kube.request("POST", collection(namespace, "regions"), {
        body: {
          apiVersion: API_VERSION,
          kind: "Region",
          metadata: { name, labels: { "world-event-test": label } },
          // The orchestrator reaches each Region's bus where the Region says it is.
          spec: { dataStores: { nats: { mode: "External", external: { endpoints: [natsUrl] } } } },
        },
      });
      await kube.request("POST", collection(namespace, "zones"), {
        body: {
          apiVersion: API_VERSION,
          kind: "Zone",
          metadata: { name: ZONE, labels: { "hybridp2p.io/zone-type": "field" } },
          spec: { regionRef: { name }, maps: [{ name: MAP, type: "Field" }] },
        },
      });
      const server = await startTestServer(
        { ...svc, natsUrl },
        {
          region: name,
          zone: ZONE,
          pod: `${name}-ms-0`,
          maps: [MAP],
          threads: 1,
          prefix: flagPrefix,
          redisPrefix: `${label}:`,
          worldReportMs: 300,
          mapDef: (m) => openMap(m, 48, 48),
        },
      );
      const gateway = await startTestGateway({
        natsUrl,
        region: name,
        directory: staticDirectory({ [ZONE]: [MAP] }),
      });
      regions.push({ name, namespace, natsUrl, server, gateway, bots: [] });
    }
    await waitFor(
      async () => (await Promise.all(regions.map((r) => r.server.owns(MAP)))).every(Boolean),
      "maps owned",
      30_000,
    );
    for (const r of regions) for (let i = 0; i < 2; i++) await bot(r);
    startOrchestrator("orch-1");
    await waitFor(leader, "an orchestrator leads", 30_000);
    startOrchestrator("orch-2");
  });

  afterEach((ctx) => {
    if (ctx.task.result?.state === "fail")
      for (const o of orchestrators) console.log(`--- ${o.pod}\n${logTail(o.proc.logFile, 40)}`);
  });

  afterAll(async () => {
    for (const o of orchestrators) await o.proc.stop();
    for (const r of regions) {
      for (const b of r.bots) await b.close().catch(() => undefined);
      await r.gateway.stop();
      await r.server.close();
      await deleteNamespace(kube, r.namespace);
    }
    await deleteNamespace(kube, opsNs);
    await natsB?.proc.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("brings a boss and its announcement to both Regions once, through an orchestrator killed mid-event, and ends on time", async () => {
    const bots = regions.flatMap((r) => r.bots);
    const seen = bots.map((b) => watchMobs(b, "osiris"));
    const durationSeconds = 20;
    await createEvent("osiris", {
      type: "Boss",
      boss: { mob: "osiris", ...BOSS_AT },
      announcement: { message: "Osiris rises!", onEnd: "Osiris sleeps." },
      targets: { regionSelector: { matchLabels: { "world-event-test": label } }, maps: [MAP] },
      schedule: { durationSeconds },
    });
    // Every bot in both Regions hears it and sees the boss.
    await waitFor(
      () => bots.every((b) => b.announcements.some((a) => a.text === "Osiris rises!") && sees(b, "osiris")),
      "announcement and boss in both Regions",
      30_000,
    );
    const ev = await waitFor(async () => {
      const e = await getEvent("osiris");
      return e?.status?.regions?.length === 2 && e.status.regions.every((r) => r.state === "Active")
        ? e
        : undefined;
    }, "both Regions Active in status");
    expect(ev.status!.phase).toBe("Active");
    const endsAt = Date.parse(ev.status!.regions![0]!.endTime!);

    // Kill the leader mid-event; the other orchestrator takes over.
    const first = (await leader())!;
    const killed = orchestrators.find((o) => o.pod === first)!;
    killed.proc.child.kill("SIGKILL");
    await waitFor(
      async () => {
        const l = await leader();
        return l !== undefined && l !== first;
      },
      "the other orchestrator leads",
      30_000,
    );
    // The boss stays until close to its end...
    await sleep(Math.max(0, endsAt - Date.now() - 2000));
    expect(bots.every((b) => sees(b, "osiris"))).toBe(true);
    // ...and is gone right after it, everywhere.
    await waitFor(() => bots.every((b) => !sees(b, "osiris")), "the boss gone", endsAt - Date.now() + 10_000);
    expect(Date.now() - endsAt).toBeLessThan(5000); // on time: the standby's loop, JetStream, a map tick, a poll
    await waitFor(
      () => bots.every((b) => b.announcements.some((a) => a.text === "Osiris sleeps.")),
      "end announcement",
    );

    // Exactly once: one boss per Region, one announcement per bot.
    for (const s of seen) expect(s.size).toBe(1);
    for (const b of bots) expect(b.announcements.filter((a) => a.text === "Osiris rises!")).toHaveLength(1);
    for (const r of regions) {
      const text = await r.server.server.opts.registry.getSingleMetricAsString(
        "hybridp2p_world_event_mobs_spawned_total",
      );
      expect(text).toContain('mob="osiris"} 1');
      expect(r.server.server.sim(MAP)!.eventMobs.size).toBe(0);
    }
    const done = await waitFor(async () => {
      const e = await getEvent("osiris");
      return e?.status?.phase === "Ended" ? e : undefined;
    }, "status Ended");
    expect(done.status!.regions!.map((r) => [r.state, r.reason])).toEqual([
      ["Ended", "Completed"],
      ["Ended", "Completed"],
    ]);
    // The killed replica comes back as a follower (as its Deployment would restart it).
    startOrchestrator(first);
  });

  it("catches up a Region whose bus was down when the event started", async () => {
    const b = regions[1]!;
    await natsB.proc.stop();
    const ev = await createEvent("late-news", {
      type: "Announcement",
      announcement: { message: "The fields are quiet." },
      targets: {
        regions: regions.map((r) => ({ namespace: r.namespace, name: r.name })),
        maps: [MAP],
      },
      schedule: { durationSeconds: 60 },
    });
    expect(ev.metadata.uid).toBeDefined();
    const failed = await waitFor(async () => {
      const e = await getEvent("late-news");
      const rb = e?.status?.regions?.find((r) => r.name === b.name);
      return rb?.state === "Failed" ? e : undefined;
    }, "Region B Failed while its bus is down");
    expect(failed.status!.regions!.find((r) => r.name === b.name)!.reason).toBe("BusUnreachable");
    expect(failed.status!.regions!.find((r) => r.name === regions[0]!.name)!.state).toBe("Active");
    await waitFor(
      () => regions[0]!.bots.every((c) => c.announcements.some((a) => a.text === "The fields are quiet.")),
      "Region A hears it",
    );
    // The bus comes back where it was: the orchestrator delivers, Region B's map server applies.
    natsB = await startNatsB(natsB.port);
    await waitFor(
      () => b.bots.every((c) => c.announcements.some((a) => a.text === "The fields are quiet.")),
      "Region B hears it after its bus returned",
      60_000,
    );
    await waitFor(async () => {
      const e = await getEvent("late-news");
      return e?.status?.regions?.every((r) => r.state === "Active");
    }, "both Regions Active");
  });

  it("fires a population-triggered event in a Region once enough bots play there", async () => {
    const [a, b] = regions as [RegionUnderTest, RegionUnderTest];
    const message = "A crowd gathers: double experience!";
    await createEvent("crowd", {
      type: "Rates",
      rates: { exp: 2 },
      announcement: { message },
      targets: { regionSelector: { matchLabels: { "world-event-test": label } }, maps: [MAP] },
      triggers: { population: { minPlayers: a.bots.length + 1 } },
      schedule: { durationSeconds: 60 },
    });
    const waiting = await waitFor(async () => {
      const e = await getEvent("crowd");
      return e?.status?.regions?.length === 2 && e.status.regions.every((r) => r.state === "Waiting")
        ? e
        : undefined;
    }, "both Regions Waiting");
    expect(waiting.status!.phase).toBe("Waiting");
    await sleep(1500);
    expect(a.bots.some((c) => c.announcements.some((x) => x.text === message))).toBe(false);
    // One more bot in Region A: the event fires there, not in Region B.
    const late = await bot(a);
    await waitFor(
      () => a.bots.every((c) => c.announcements.some((x) => x.text === message)),
      "every bot of Region A hears it",
    );
    expect(late.announcements.filter((x) => x.text === message)).toHaveLength(1);
    const fired = await waitFor(async () => {
      const e = await getEvent("crowd");
      return e?.status?.regions?.find((r) => r.name === a.name)?.state === "Active" ? e : undefined;
    }, "Region A Active");
    expect(fired.status!.regions!.find((r) => r.name === b.name)!.state).toBe("Waiting");
    expect(b.bots.some((c) => c.announcements.some((x) => x.text === message))).toBe(false);
    expect(a.server.server.sim(MAP)!.expRate).toBe(2);
    expect(b.server.server.sim(MAP)!.expRate).toBe(1);
  });
});
