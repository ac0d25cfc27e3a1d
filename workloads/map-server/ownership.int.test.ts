// Map ownership handover between real map-server processes (`workloads/main.ts map-server`):
// a pod killed with SIGKILL loses its maps to a live pod within seconds, sessions carry on
// without rejoining, and a frozen pod (SIGSTOP, its lease expires meanwhile) never publishes
// for a map again once it wakes up, because its own lease deadline has passed.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, inject, it } from "vitest";
import { type AoiFrame, decode, type OwnerNotice, subjects } from "../../platform/bus/contract.ts";
import { connectFlagStore } from "../../platform/flags/etcd.ts";
import { connectNats, withUrl } from "../../platform/stores/access.ts";
import { cutProxy } from "../../testkit/flags.ts";
import {
  createCharacters,
  FakeGateway,
  servicesFrom,
  unique,
  until,
} from "../../testkit/map-server/harness.ts";
import { freePort, type Proc, startProcess, waitUntil } from "../../testkit/processes.ts";
import { createRedis } from "../runtime/redis.ts";
import { MapOwnership, ownershipPrefix } from "./ownership.ts";

const env = inject("localEnv");
const svc = servicesFrom(env);
const region = "otest";
const zone = unique("z");
const maps = ["fielda", "fieldb"];
const prefix = `/${unique("owntest")}/v1/`;
const redisPrefix = `${unique("owntest")}:`;
const repo = new URL("../..", import.meta.url).pathname;
const logs = join(env.stateDir, "logs", "map-server-test");
mkdirSync(logs, { recursive: true });

const procs: Proc[] = [];
afterAll(async () => {
  for (const p of procs) {
    if (p.child.signalCode === null) p.child.kill("SIGCONT");
    await p.stop();
  }
});

async function startPod(pod: string): Promise<Proc> {
  const p = startProcess(
    pod,
    join(repo, "node_modules/.bin/node"),
    [join(repo, "workloads/main.ts"), "map-server"],
    join(logs, `${zone}-${pod}.log`),
    {
      cwd: repo,
      env: {
        ...process.env,
        HYBRIDP2P_ETCD_ENDPOINTS: svc.etcdEndpoints,
        HYBRIDP2P_NATS_URL: svc.natsUrl,
        HYBRIDP2P_REDIS_URL: svc.redisUrl,
        HYBRIDP2P_DATABASE_URL: svc.databaseUrl,
        POD_NAME: pod,
        POD_NAMESPACE: region,
        HYBRIDP2P_REGION: region,
        HYBRIDP2P_ZONE: zone,
        HYBRIDP2P_MAPS: maps.join(","),
        HYBRIDP2P_WORKER_THREADS: "1",
        HYBRIDP2P_MAX_PLAYERS: "20",
        HYBRIDP2P_HEALTH_PORT: String(await freePort()),
        HYBRIDP2P_METRICS_PORT: String(await freePort()),
        HYBRIDP2P_FLAG_PREFIX: prefix,
        HYBRIDP2P_REDIS_PREFIX: redisPrefix,
        HYBRIDP2P_OWNERSHIP_TTL_SECONDS: "2",
      },
    },
  );
  procs.push(p);
  return p;
}

describe("map ownership", () => {
  it("moves a killed pod's maps to a live pod, and a frozen pod never publishes again", async () => {
    const etcd = connectFlagStore(svc.etcd);
    const base = ownershipPrefix(prefix, region, zone);
    const owners = async () => {
      const kvs = await etcd.getAll().prefix(base).strings();
      return maps.map((m) => kvs[`${base}${m}`]);
    };
    const nc = await connectNats(svc.nats);
    const notices: OwnerNotice[] = [];
    nc.subscribe(subjects.ownersForRegion(region), {
      callback: (err, m) => {
        if (!err) notices.push(decode<OwnerNotice>(m.data));
      },
    });
    const gw = await FakeGateway.open(svc.natsUrl, region, "gw-o");
    const addr = { region, zone, map: "fielda" };
    const [charId] = await createCharacters(svc.databaseUrl, [
      { name: unique("Own"), map: "fielda", x: 128, y: 128 },
    ]);
    try {
      const a = await startPod("pod-a");
      await waitUntil(a, "pod-a owns both maps", async () => (await owners()).every((o) => o === "pod-a"));
      const joined = await gw.join(addr, "sess-o", charId!);
      expect(joined).toMatchObject({ ok: true, owner: "pod-a" });
      if (!joined.ok) return;
      await gw.send(addr, [{ s: "sess-o", seq: 1, k: "move", x: 133, y: 128 }]);
      const selfX = (f: AoiFrame) => {
        const v = f.views.find((x) => x.session === "sess-o");
        const idx = v && [...v.enter, ...v.update].find((i) => f.ents[i]!.id === joined.entity);
        return idx === undefined ? undefined : f.ents[idx]!.x;
      };
      await until("walked on pod-a", () => gw.frames.some((f) => selfX(f) === 133.5), 30_000);

      const b = await startPod("pod-b");
      await waitUntil(b, "pod-b registered", async () => {
        const kvs = await etcd.getAll().prefix(`${base}_pods/`).keys();
        return kvs.length === 2;
      });
      // The hot state is saved every second; wait for a save after the walk.
      const fenceA = joined.fence;
      const redis = createRedis(svc.redis);
      await until("hot state saved after the walk", async () => {
        const raw = await redis.hget(`${redisPrefix}map:${region}:${zone}:fielda:sessions`, "sess-o");
        return raw && JSON.parse(raw).x === 133.5 ? true : undefined;
      });
      redis.disconnect();

      const killedAt = Date.now();
      a.child.kill("SIGKILL");
      await waitUntil(
        b,
        "pod-b owns both maps",
        async () => (await owners()).every((o) => o === "pod-b"),
        30_000,
      );
      console.log(`RESULT mapserver handover_after_kill_ms=${Date.now() - killedAt}`);

      // The session carries on with pod-b without rejoining: same place, and it still walks.
      const noticeB = await until("pod-b notice", () =>
        notices.find((n) => n.owner === "pod-b" && n.map === "fielda"),
      );
      expect(BigInt(noticeB.fence)).toBeGreaterThan(BigInt(fenceA));
      await gw.send(addr, [{ s: "sess-o", seq: 2, k: "move", x: 136, y: 128 }]);
      await until("walked on pod-b", () =>
        gw.frames.some((f) => f.fence === noticeB.fence && selfX(f) === 136.5) ? true : undefined,
      );

      // Freeze pod-b past its lease; pod-c takes over; pod-b wakes up and must stay silent.
      const c = await startPod("pod-c");
      await waitUntil(
        c,
        "pod-c registered",
        async () => (await etcd.getAll().prefix(`${base}_pods/`).keys()).length === 2,
      );
      b.child.kill("SIGSTOP");
      await waitUntil(
        c,
        "pod-c owns both maps",
        async () => (await owners()).every((o) => o === "pod-c"),
        30_000,
      );
      const noticeC = await until("pod-c notice", () =>
        notices.find((n) => n.owner === "pod-c" && n.map === "fielda"),
      );
      const framesBefore = gw.frames.length;
      const noticesBefore = notices.length;
      const lastTickOfB = Math.max(...gw.frames.filter((f) => f.fence === noticeB.fence).map((f) => f.tick));
      b.child.kill("SIGCONT");
      await waitUntil(b, "pod-b noticed its lease ran out", async () => {
        const { readFileSync } = await import("node:fs");
        return /lease not renewed in time|lease not valid/.test(readFileSync(b.logFile, "utf8"));
      });
      // Whoever owns fielda now (pod-b may get a map back with a new lease once it re-registers:
      // the zone is rebalanced), the session still walks; one more round trip also makes sure
      // anything pod-b sent after waking up has arrived.
      const fenceB = noticeB.fence;
      await gw.send(addr, [{ s: "sess-o", seq: 3, k: "move", x: 130, y: 128 }]);
      await until("walked after pod-b woke up", () =>
        gw.frames.some((f) => f.fence !== fenceB && selfX(f) === 130.5) ? true : undefined,
      );
      // A frame pod-b had queued before it froze may still go out; nothing it simulated under its
      // old lease after that may, and every ownership after the freeze has a newer fence.
      const late = gw.frames.slice(framesBefore).filter((f) => f.fence === fenceB && f.tick > lastTickOfB);
      expect(late).toEqual([]);
      for (const n of notices.slice(noticesBefore)) expect(BigInt(n.fence)).toBeGreaterThan(BigInt(fenceB));
      expect(BigInt(noticeC.fence)).toBeGreaterThan(BigInt(fenceB));
      // And the zone ends balanced: one map each.
      await until("balanced", async () => {
        const o = await owners();
        return o.includes("pod-b") && o.includes("pod-c") ? true : undefined;
      });
    } finally {
      await gw.close();
      await nc.close();
      etcd.close();
    }
  }, 180_000);

  it("a pod cut off from etcd gives its maps up before another pod can take them", async () => {
    const zone2 = unique("p");
    const port = Number(new URL(svc.etcdEndpoints.split(",")[0]!).port);
    const proxy = await cutProxy(port);
    const viaProxy = connectFlagStore(withUrl(svc.etcd, proxy.endpoint));
    const direct = connectFlagStore(svc.etcd);
    const log: Array<{ at: number; pod: string; what: "acquired" | "lost"; map: string }> = [];
    const own = (pod: string, client: typeof direct) => {
      const o = new MapOwnership({ client, prefix, region, zone: zone2, maps, pod, ttlSeconds: 2 });
      o.on("acquired", (map) => log.push({ at: performance.now(), pod, what: "acquired", map }));
      o.on("lost", (map) => log.push({ at: performance.now(), pod, what: "lost", map }));
      return o;
    };
    const x = own("pod-x", viaProxy);
    const y = own("pod-y", direct);
    try {
      await x.start();
      await until("pod-x owns both maps", () => (x.ownedMaps().length === 2 ? true : undefined));
      await y.start();
      await until("one map each", () =>
        x.ownedMaps().length === 1 && y.ownedMaps().length === 1 ? true : undefined,
      );
      const xMap = x.ownedMaps()[0]!;
      await proxy.cut();
      await until("pod-y owns both maps", () => (y.ownedMaps().length === 2 ? true : undefined), 30_000);
      const lost = log.findLast((e) => e.pod === "pod-x" && e.what === "lost" && e.map === xMap);
      const taken = log.findLast((e) => e.pod === "pod-y" && e.what === "acquired" && e.map === xMap);
      expect(lost).toBeDefined();
      expect(taken).toBeDefined();
      // Never two owners: pod-x stopped holding the map before pod-y got it.
      expect(lost!.at).toBeLessThan(taken!.at);
      expect(x.holds(xMap)).toBe(false);
      // Back online, pod-x registers with a new lease and the maps spread again, one each.
      await proxy.restore();
      await until("rebalanced", () =>
        x.ownedMaps().length === 1 && y.ownedMaps().length === 1 ? true : undefined,
      );
    } finally {
      await x.close();
      await y.close();
      viaProxy.close();
      direct.close();
      await proxy.close();
    }
  }, 120_000);
});
