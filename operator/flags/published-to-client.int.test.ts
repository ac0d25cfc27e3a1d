// The flag client against real etcd and NATS: load and watch, reports on NATS (heartbeats,
// expiry, goodbye), malformed documents, an etcd restart mid-watch, a compaction while the
// client is cut off.
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Etcd3 } from "etcd3";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { FlagClient, type FlagLogger, type FlagState } from "../../platform/flags/client.ts";
import { connectFlagStore } from "../../platform/flags/etcd.ts";
import { layout, type PodReport } from "../../platform/flags/layout.ts";
import { ReportTable } from "../../platform/flags/reports.ts";
import { connectNats, withUrl } from "../../platform/stores/access.ts";
import { cutProxy, eventually, startTestEtcd, type TestEtcd } from "../../testkit/flags.ts";
import { storePki } from "../../testkit/local/services.ts";
import { ANNOTATION_FALLBACK_CLEAR, type CompiledFlags, compile } from "./compiler.ts";
import { FlagPublisher } from "./publisher.ts";

const env = inject("localEnv");

function capture(): FlagLogger & { lines: string[] } {
  const lines: string[] = [];
  const push = (level: string) => (msg: string, fields?: Record<string, unknown>) => {
    lines.push(`${level} ${msg} ${JSON.stringify(fields ?? {})}`);
  };
  return { lines, error: push("error"), warn: push("warn"), info: push("info") };
}

function world(
  ns: string,
  opts: { enabled: boolean; tag?: string; zones?: string[]; manual?: boolean; clearToken?: string },
): CompiledFlags {
  const zones = opts.zones ?? ["prt_fild", "pay_fild"];
  return compile({
    policies: [
      {
        metadata: { name: "fields", namespace: ns },
        spec: {
          zoneSelector: {},
          enabled: opts.enabled,
          transports: [opts.tag ?? "webrtc"],
          recovery: opts.manual
            ? { mode: "Manual" }
            : { mode: "Auto", backoff: { initialSeconds: 0, maxSeconds: 1 } },
        },
      },
    ],
    zones: zones.map((name) => ({
      metadata: {
        name,
        namespace: ns,
        ...(opts.clearToken ? { annotations: { [ANNOTATION_FALLBACK_CLEAR]: opts.clearToken } } : {}),
      },
      spec: { regionRef: "r1", maps: [{ name, type: "Field" }] },
    })),
    regions: [{ metadata: { name: "r1", namespace: ns } }],
  });
}

/** Zones of namespace eu, P2P (Manual recovery unless given) in `on`, server-only in `off`. */
function p2pWhere(
  on: string[],
  off: string[],
  recovery: Record<string, unknown> = { mode: "Manual" },
): CompiledFlags {
  return compile({
    policies: [
      {
        metadata: { name: "fields", namespace: "eu" },
        spec: { zoneSelector: { matchLabels: { p2p: "yes" } }, enabled: true, recovery },
      },
    ],
    zones: [...on, ...off].map((name) => ({
      metadata: { name, namespace: "eu", labels: { p2p: on.includes(name) ? "yes" : "no" } },
      spec: { regionRef: "r1", maps: [{ name, type: "Field" }] },
    })),
    regions: [{ metadata: { name: "r1", namespace: "eu" } }],
  });
}

describe("flag client", () => {
  let etcd: Etcd3;
  let nc: NatsConnection;
  beforeAll(async () => {
    etcd = connectFlagStore(env.etcd!);
    nc = await connectNats(env.nats!);
  });
  afterAll(async () => {
    etcd.close();
    await nc.close();
  });

  it("loads, watches, reports on NATS, and a dead pod's report disappears by itself", async () => {
    const prefix = `/test-${randomUUID()}/`;
    const l = layout(prefix);
    const pub = new FlagPublisher({ client: etcd, identity: "op", prefix });
    await pub.acquire();
    await pub.publish(world("eu", { enabled: false }));
    const reports = new ReportTable(nc, l, { namespace: "eu" });
    await reports.start();
    const reportOf = (pod: string) => reports.reports().find((r) => r.pod === pod);

    const podConn = connectFlagStore(env.etcd!);
    const podNats = await connectNats(env.nats!);
    const ms = new FlagClient({
      client: podConn,
      nats: podNats,
      prefix,
      namespace: "eu",
      zone: "prt_fild",
      service: "map-server",
      pod: "ms-0",
      reportTtlSeconds: 2,
    });
    const gw = new FlagClient({
      client: etcd,
      nats: nc,
      prefix,
      namespace: "eu",
      service: "gateway",
      pod: "gw-0",
    });
    const lost = new FlagClient({
      client: etcd,
      nats: nc,
      prefix,
      namespace: "eu",
      zone: "nowhere",
      service: "map-server",
      pod: "ms-x",
    });
    await Promise.all([ms.start(), gw.start(), lost.start()]);
    expect(ms.current()).toMatchObject({ epoch: 1, mode: "server" });
    expect(ms.p2p()).toBe(false);
    expect(gw.snapshot().zones.size).toBe(2);
    expect(ms.snapshot().zones.size).toBe(1); // a map server reads only its zone

    const { epoch } = await pub.publish(world("eu", { enabled: true }));
    await eventually("map server in P2P", () => ms.current().mode === "p2p" && ms.current().epoch === epoch);
    expect(ms.p2p()).toBe(true);
    expect(ms.mapP2P("prt_fild")).toBe(true);
    await eventually("gateway at the epoch", () => gw.current().epoch === epoch);
    expect(gw.current().mode).toBe("p2p");
    // A map server of a zone the flags do not know reads its (absent) key, nothing else.
    expect(lost.current()).toMatchObject({ mode: "server", reason: "zone nowhere is unknown to the flags" });

    const report = await eventually("report of ms-0 at the epoch", () =>
      reportOf("ms-0")?.epoch === epoch ? reportOf("ms-0") : undefined,
    );
    expect(report).toMatchObject({
      pod: "ms-0",
      zone: "prt_fild",
      service: "map-server",
      mode: "p2p",
      epoch,
    });
    await eventually("the gateway's report", () => reportOf("gw-0")?.epoch === epoch);

    // A receiver that starts late asks for the reports at once instead of waiting a heartbeat.
    const late = new ReportTable(nc, l, { namespace: "eu" });
    await late.start();
    await eventually("every report known to a late receiver", () => late.size === 3, 3000);
    late.close();

    // The pod dies without a goodbye: no more heartbeats; its report goes after its ttl (2 s).
    ms.crash();
    const crashedAt = Date.now();
    await eventually("report of the dead pod gone", () => reportOf("ms-0") === undefined);
    expect(Date.now() - crashedAt).toBeGreaterThan(500); // not before the heartbeats stopped counting
    // Heartbeats keep the living ones.
    expect(reportOf("gw-0")).toBeDefined();
    // A clean shutdown says goodbye: gone at once.
    await gw.close();
    await eventually("goodbye", () => reportOf("gw-0") === undefined, 3000);
    await lost.close();
    reports.close();
    podConn.close();
    await podNats.close();
  });

  it("ignores malformed pointers and documents with a logged error and keeps the last good snapshot", async () => {
    const prefix = `/test-${randomUUID()}/`;
    const l = layout(prefix);
    const pub = new FlagPublisher({ client: etcd, identity: "op", prefix });
    await pub.acquire();
    const good = await pub.publish(world("eu", { enabled: true }));
    const log = capture();
    const gwLog = capture();
    const c = new FlagClient({
      client: etcd,
      prefix,
      namespace: "eu",
      zone: "prt_fild",
      service: "map-server",
      pod: "ms-0",
      log,
    });
    const gw = new FlagClient({
      client: etcd,
      prefix,
      namespace: "eu",
      service: "gateway",
      pod: "gw-0",
      log: gwLog,
    });
    await Promise.all([c.start(), gw.start()]);
    expect(c.current()).toMatchObject({ epoch: good.epoch, mode: "p2p" });

    // A map server's document that is not JSON.
    const key = l.zoneKey("eu", "prt_fild");
    const next = good.epoch + 1;
    const id = (e: number) => l.publishId(e, "7");
    await etcd.put(key).value(`{"epoch":${next},"publish":"${id(next)}", not json`);
    await eventually("rejection logged", () =>
      log.lines.some((x) => x.startsWith("error malformed flag document")),
    );
    await eventually("rejected epoch reported", () => c.current().rejectedEpoch === next);
    expect(c.current()).toMatchObject({ epoch: good.epoch, mode: "p2p" });
    expect(c.snapshot().epoch).toBe(good.epoch);

    // A document with the wrong shape.
    await etcd.put(key).value(
      JSON.stringify({
        v: 1,
        epoch: next + 1,
        publish: id(next + 1),
        namespace: "eu",
        zone: "prt_fild",
        enabled: "yes",
      }),
    );
    await eventually("second rejection", () => c.current().rejectedEpoch === next + 1);
    expect(c.snapshot().epoch).toBe(good.epoch);

    // The region-wide pod reads its documents at the pointer's flip only: a pointer that names
    // a publish the documents do not belong to is rejected whole.
    const ptr = {
      v: 1,
      epoch: next + 1,
      publish: id(next + 1),
      digest: "x",
      zones: 2,
      publisher: "hand",
      fence: "7",
      publishedAt: "",
    };
    await etcd.put(l.pointer).value(JSON.stringify(ptr));
    await eventually("gateway rejects the epoch", () => gw.current().rejectedEpoch === next + 1);
    expect(gw.snapshot().epoch).toBe(good.epoch);
    // A pointer that is not JSON.
    const errors = gwLog.lines.filter((x) => x.startsWith("error")).length;
    await etcd.put(l.pointer).value("garbage");
    await eventually(
      "pointer rejection logged",
      () => gwLog.lines.filter((x) => x.startsWith("error")).length > errors,
    );
    expect(gw.snapshot().epoch).toBe(good.epoch);
    // ... and said in the report: an epoch past the kept one was seen and not applied.
    await eventually("garbage pointer reported", () => gw.current().rejectedEpoch === good.epoch + 1);

    // The next real publish gets a larger epoch than any seen (from the documents, the pointer
    // being unreadable) and is applied by both.
    const after = await pub.publish(world("eu", { enabled: false }));
    expect(after.epoch).toBeGreaterThan(next + 1);
    await eventually(
      "recovered",
      () => c.current().epoch === after.epoch && gw.current().epoch === after.epoch,
    );
    expect(c.current()).toMatchObject({ mode: "server" });
    expect(c.current().rejectedEpoch).toBeUndefined();
    expect(gw.current().rejectedEpoch).toBeUndefined();
    await c.close();
    await gw.close();
  });

  it("holds a workload-detected fallback as the recovery policy says: Manual until cleared by hand", async () => {
    const prefix = `/test-${randomUUID()}/`;
    const pub = new FlagPublisher({ client: etcd, identity: "op", prefix });
    await pub.acquire();
    await pub.publish(world("eu", { enabled: true, manual: true }));
    const c = new FlagClient({
      client: etcd,
      prefix,
      namespace: "eu",
      zone: "prt_fild",
      service: "map-server",
      pod: "ms-0",
      log: capture(),
    });
    await c.start();
    expect(c.current().mode).toBe("p2p");
    c.trigger("coordinator", "coordinator unreachable");
    expect(c.current()).toMatchObject({ mode: "fallback", reason: "coordinator unreachable" });
    c.clearTrigger("coordinator");
    expect(c.current().mode).toBe("fallback"); // Manual: the trigger clearing is not enough
    expect(c.current().reason).toMatch(/manual recovery required/);
    const cleared = await pub.publish(world("eu", { enabled: true, manual: true, clearToken: "by-hand-1" }));
    await eventually("released by the clear token", () => c.current().epoch === cleared.epoch);
    expect(c.current().mode).toBe("p2p");

    // Auto: leaves by itself once the trigger clears and the backoff (0 s here) has passed.
    await pub.publish(world("eu", { enabled: true }));
    await eventually("auto policy applied", () => c.zoneFlags()?.recovery.mode === "Auto");
    c.trigger("mesh", "loss past max");
    expect(c.current().mode).toBe("fallback");
    c.clearTrigger("mesh");
    await eventually("auto recovery", () => c.current().mode === "p2p");
    await c.close();
  });

  it("holds single zones of a region-wide pod in fallback, each with its own latch, and reports them", async () => {
    const prefix = `/test-${randomUUID()}/`;
    const l = layout(prefix);
    const pub = new FlagPublisher({ client: etcd, identity: "op", prefix });
    await pub.acquire();
    // Two P2P zones (Manual recovery) and one the policy does not select (server only).
    await pub.publish(p2pWhere(["prt_fild", "pay_fild"], ["prontera"]));
    const gw = new FlagClient({
      client: etcd,
      nats: nc,
      prefix,
      namespace: "eu",
      service: "gateway",
      pod: "gw-0",
    });
    const reports = new ReportTable(nc, l, { namespace: "eu" });
    await reports.start();
    await gw.start();
    const report = async () => reports.zoneReports("eu", undefined).find((r) => r.pod === "gw-0");
    expect(gw.zoneMode("prt_fild").mode).toBe("p2p");
    expect(gw.zoneMode("prontera").mode).toBe("server");

    gw.triggerZones(["prt_fild"], "coordinator", "coordinator unreachable");
    gw.triggerZones(["prontera"], "coordinator", "coordinator unreachable");
    expect(gw.zoneMode("prt_fild")).toEqual({ mode: "fallback", reason: "coordinator unreachable" });
    expect(gw.zoneMode("pay_fild").mode).toBe("p2p"); // its neighbour's latch is not its own
    expect(gw.zoneMode("prontera").mode).toBe("server"); // P2P off: nothing to fall back from
    expect(gw.current().mode).toBe("p2p"); // pay_fild still runs P2P through this pod
    await eventually(
      "held zone reported",
      async () => (await report())?.zones?.prt_fild?.fallback !== undefined,
    );
    expect((await report())!.zones!.prt_fild!.fallback!.reason).toBe("coordinator unreachable");

    // The pod reports per-zone facts it owns next to its holds.
    gw.reportZones(new Map([["pay_fild", { peers: { connected: 4, meshes: 1, relayed: 1 } }]]));
    await eventually("peers reported", async () => (await report())?.zones?.pay_fild?.peers?.connected === 4);

    // Both P2P zones held: the pod itself is in fallback.
    gw.triggerZones(["pay_fild"], "mesh", "loss past max");
    expect(gw.current()).toMatchObject({ mode: "fallback" });

    // Manual: the trigger clearing is not enough; switching P2P off for the zone releases it.
    gw.clearZoneTriggers(["prt_fild"], "coordinator");
    expect(gw.zoneMode("prt_fild").reason).toMatch(/manual recovery required/);
    await pub.publish(p2pWhere(["pay_fild"], ["prt_fild"]));
    await eventually("released by P2P off", () => !gw.heldZones().has("prt_fild"));
    expect([...gw.heldZones().keys()]).toEqual(["pay_fild"]);
    await eventually("release reported", async () => (await report())?.zones?.prt_fild === undefined);
    await gw.close();
    reports.close();
  });

  it("a zone that keeps falling back waits longer each time (Auto backoff doubles per entry)", async () => {
    const prefix = `/test-${randomUUID()}/`;
    const pub = new FlagPublisher({ client: etcd, identity: "op", prefix });
    await pub.acquire();
    await pub.publish(
      p2pWhere(["prt_fild"], [], { mode: "Auto", backoff: { initialSeconds: 1, maxSeconds: 60 } }),
    );
    let now = 1_000_000;
    const gw = new FlagClient({
      client: etcd,
      prefix,
      namespace: "eu",
      service: "gateway",
      pod: "gw-1",
      now: () => now,
      report: false,
    });
    await gw.start();
    const flap = () => {
      gw.triggerZones(["prt_fild"], "coordinator", "coordinator unreachable");
      gw.clearZoneTriggers(["prt_fild"], "coordinator");
    };
    flap(); // first entry: back after 1 s
    now += 1000;
    expect(gw.zoneMode("prt_fild").mode).toBe("p2p");
    gw.clearZoneTriggers(["prt_fild"], "other"); // any recompute while released
    now += 500;
    flap(); // second entry soon after: 2 s
    now += 1100;
    expect(gw.zoneMode("prt_fild").mode).toBe("fallback");
    now += 1000;
    expect(gw.zoneMode("prt_fild").mode).toBe("p2p");
    await gw.close();
  });

  describe("with a private etcd", () => {
    let dir: string;
    let own: TestEtcd;
    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), "flags-client-"));
      own = await startTestEtcd(dir, undefined, storePki(join(env.stateDir, "store-pki")));
    });
    afterAll(async () => {
      await own.stop();
      rmSync(dir, { recursive: true, force: true });
    });

    it("survives etcd killed and restarted mid-watch: keeps its snapshot, falls back after the grace period, recovers", async () => {
      const prefix = `/test-${randomUUID()}/`;
      const opConn = connectFlagStore(own.access);
      const podConn = connectFlagStore(own.access);
      const pub = new FlagPublisher({ client: opConn, identity: "op", prefix });
      await pub.acquire();
      const e1 = await pub.publish(world("eu", { enabled: true }));
      const c = new FlagClient({
        client: podConn,
        prefix,
        namespace: "eu",
        zone: "prt_fild",
        service: "map-server",
        pod: "ms-0",
        nats: nc,
        graceMs: 1000, // a busy machine's slow etcd answer is no outage: one fallback, not several
        reportTtlSeconds: 5,
        log: capture(),
      });
      const states: FlagState[] = [];
      c.on("state", (s) => states.push(s));
      const reported: PodReport[] = [];
      c.on("reported", (r) => reported.push(r));
      await c.start();
      expect(c.current()).toMatchObject({ epoch: e1.epoch, mode: "p2p" });

      await own.stop();
      await eventually("fallback after the grace period", () => c.current().mode === "fallback");
      expect(c.current().reason).toMatch(/flag store unreachable/);
      expect(c.snapshot().epoch).toBe(e1.epoch); // last good snapshot kept
      expect(c.p2p()).toBe(false);

      await own.start();
      await eventually("back to P2P once the store returns", () => c.current().mode === "p2p");
      const e2 = await eventually("a publish after the restart", async () => {
        try {
          return await pub.publish(world("eu", { enabled: true, tag: "after-restart" }));
        } catch {
          return undefined;
        }
      });
      await eventually("the new epoch applied", () => c.current().epoch === e2.epoch);
      expect(c.zoneFlags()!.transports).toEqual(["after-restart"]);
      await eventually("report of the new epoch", () => reported.at(-1)?.epoch === e2.epoch);
      const modes = states.map((s) => s.mode).filter((m, i, all) => m !== all[i - 1]);
      expect(modes).toEqual(["p2p", "fallback", "p2p"]);
      await c.close();
      opConn.close();
      podConn.close();
    });

    it("after a compaction while it was cut off, re-reads and re-watches without missing a change", async () => {
      const prefix = `/test-${randomUUID()}/`;
      const opConn = connectFlagStore(own.access);
      const proxy = await cutProxy(own.port);
      const podConn = connectFlagStore(withUrl(own.access, proxy.endpoint));
      const log = capture();
      const pub = new FlagPublisher({ client: opConn, identity: "op", prefix });
      await pub.acquire();
      await pub.publish(world("eu", { enabled: true, tag: "t1" }));
      const c = new FlagClient({
        client: podConn,
        prefix,
        namespace: "eu",
        service: "gateway",
        pod: "gw-0",
        graceMs: 60_000,
        log,
      });
      await c.start();
      expect(c.snapshot().zones.get("prt_fild")!.transports).toEqual(["t1"]);

      await proxy.cut();
      await eventually("client noticed", () => log.lines.some((x) => x.includes("flag store unreachable")));
      await pub.publish(world("eu", { enabled: true, tag: "t2" }));
      const e3 = await pub.publish(
        world("eu", { enabled: false, tag: "t3", zones: ["prt_fild", "pay_fild", "moc_fild"] }),
      );
      const rev = Number((await opConn.get("/").exec()).header.revision);
      await opConn.kv.compact({ revision: String(rev), physical: true });
      expect(c.snapshot().zones.get("prt_fild")!.transports).toEqual(["t1"]); // still the last good one

      await proxy.restore();
      await eventually("caught up to the last publish", () => c.current().epoch === e3.epoch).catch((e) => {
        console.log(log.lines.join("\n"));
        throw e;
      });
      expect(log.lines.some((x) => x.includes("flag watch cancelled"))).toBe(true); // the compaction path ran
      expect(c.snapshot().zones.size).toBe(3);
      expect(c.snapshot().zones.get("moc_fild")!.transports).toEqual(["t3"]);
      // and the new watch works
      const e4 = await pub.publish(world("eu", { enabled: true, tag: "t4" }));
      await eventually("the next publish arrives by watch", () => c.current().epoch === e4.epoch);
      expect(c.current().mode).toBe("p2p");
      await c.close();
      await proxy.close();
      opConn.close();
      podConn.close();
    });
  });
});
