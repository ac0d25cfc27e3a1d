// Sharing among the flag clients of one connection, against real etcd and NATS: one watch per
// key, reads of the same tick as one request, each value parsed once; one report sender per
// NATS connection whose heartbeats keep the reports alive at the receiver.
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import type { NatsConnection } from "@nats-io/transport-node";
import { type Etcd3, type IKeyValue, Range } from "etcd3";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { cutProxy, eventually } from "../../testkit/flags.ts";
import { storePki } from "../../testkit/local/services.ts";
import { connectNats } from "../stores/access.ts";
import { FlagClient } from "./client.ts";
import { connectFlagStore } from "./etcd.ts";
import { layout, type PodReport } from "./layout.ts";
import { ReportTable, reportSender } from "./reports.ts";
import { type KeySubscriber, keyHub, parseOnce } from "./shared.ts";

const env = inject("localEnv");

describe("sharing a connection", () => {
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

  it("watches a key once for all subscribers, reads it once per tick, parses each value once", async () => {
    const key = `/test-${randomUUID()}/k`;
    const seen: IKeyValue[][] = [[], [], []];
    const subs: KeySubscriber[] = seen.map((list) => ({
      put: (kv) => list.push(kv),
      delete: () => {},
      disconnected: () => {},
      connected: () => {},
      resync: () => {},
    }));
    const hub = keyHub(etcd, key);
    expect(keyHub(etcd, key)).toBe(hub);
    await Promise.all(subs.map((s) => hub.subscribe(s)));
    const reads = await Promise.all([hub.latest(), hub.latest(), hub.latest()]);
    expect(new Set(reads).size).toBe(1); // one request for the three
    expect(reads[0]!.kv).toBeUndefined();
    await etcd.put(key).value('{"n":1}');
    await eventually("every subscriber got the put", () => seen.every((l) => l.length === 1));
    expect(new Set(seen.map((l) => l[0]))).toEqual(new Set([seen[0]![0]])); // the same event object
    let parses = 0;
    const parse = (_k: string, raw: string) => {
      parses++;
      return JSON.parse(raw) as { n: number };
    };
    const values = seen.map((l) => parseOnce(l[0]!, parse));
    expect(parses).toBe(1);
    expect(new Set(values).size).toBe(1);
    for (const s of subs) await hub.unsubscribe(s);
    expect(keyHub(etcd, key)).not.toBe(hub); // the last one out closed the watch
  });

  it("keeps its subscribers watching when a cancelled watch cannot be re-opened at once", async () => {
    // A user of our own (client-certificate CN), reading only this test's prefix, so taking its
    // permission away touches no other test.
    const l = layout(`/test-${randomUUID()}/`);
    const user = `shared-test-${randomUUID().slice(0, 8)}`;
    const read = { permission: "Read" as const, range: Range.prefix(`${l.prefix}flags/`) };
    await etcd.role(user).create();
    await etcd.role(user).grant(read);
    await etcd.auth.userAdd({ name: user, options: { no_password: true } });
    await etcd.user(user).addRole(user);
    const tlsDir = storePki(join(env.stateDir, "store-pki")).client(user);
    const proxy = await cutProxy(Number(new URL(env.etcd!.url).port));
    const podConn = connectFlagStore({
      store: "etcd",
      url: proxy.endpoint.replace(/^http:/, "https:"),
      tlsDir,
    });
    const key = l.zoneKey("eu", "z1");
    const publish = (epoch: number) => {
      const id = `${String(epoch).padStart(12, "0")}-${"1".padStart(16, "0")}`;
      const doc = {
        v: 1,
        namespace: "eu",
        zone: "z1",
        enabled: true,
        fallback: false,
        services: { "map-server": { enabled: true, fallback: false } },
        maps: [],
        recovery: { mode: "Auto", initialSeconds: 1, maxSeconds: 1, clearToken: "" },
        mesh: { maxPeers: 8, peerTTLSeconds: 30, refreshSeconds: 10 },
        thresholds: {},
        epoch,
        publish: id,
      };
      return etcd.put(key).value(JSON.stringify(doc)).exec();
    };
    // What the hub tells subscribers of the connection (a second subscriber next to the client).
    const heard: string[] = [];
    const probe: KeySubscriber = {
      put: () => {},
      delete: () => {},
      disconnected: (err) => heard.push(`disconnected ${String(err)}`),
      connected: () => {},
      resync: (err) => heard.push(`resync ${String(err)}`),
    };
    const c = new FlagClient({
      client: podConn,
      prefix: l.prefix,
      namespace: "eu",
      zone: "z1",
      service: "map-server",
      pod: "ms-0",
      graceMs: 60_000,
      log: { error: () => {}, warn: () => {}, info: () => {} },
    });
    try {
      await publish(1);
      await c.start();
      expect(c.current().epoch).toBe(1);
      await keyHub(podConn, key).subscribe(probe);

      // Cut off; the user may no longer read; back: etcd cancels the resumed watch (refused, the
      // same `error` a compacted revision gives, without compacting a store other tests share), and
      // the hub's re-open is refused too. Readable again a moment later: the watch must come back
      // by itself, with nobody re-subscribing.
      await proxy.cut();
      await etcd.role(user).revoke(read);
      await publish(2);
      await proxy.restore();
      await eventually("the re-open refused", () => heard.some((h) => /permission denied/i.test(h)), 15_000);
      await etcd.role(user).grant(read);

      await eventually("the change made meanwhile read", () => c.current().epoch === 2, 15_000);
      // The proof that a watch exists again: a later change arrives by itself.
      await publish(3);
      await eventually("a later change arrives by watch", () => c.current().epoch === 3, 10_000);
      expect(c.current().mode).toBe("p2p");
    } finally {
      await keyHub(podConn, key).unsubscribe(probe);
      await c.close();
      podConn.close();
      await proxy.close();
      await etcd.user(user).delete();
      await etcd.role(user).delete();
    }
  });

  it("repeats the reports of one connection's pods as heartbeats, and drops one that stops", async () => {
    const l = layout(`/test-${randomUUID()}/`);
    const table = new ReportTable(nc, l, { namespace: "eu" });
    await table.start();
    const sender = reportSender(nc, l);
    expect(reportSender(nc, l)).toBe(sender);
    const report = (pod: string): PodReport => ({
      v: 1,
      pod,
      namespace: "eu",
      zone: "z",
      service: "map-server",
      epoch: 3,
      mode: "p2p",
      reason: "",
      since: "2026-01-01T00:00:00Z",
      updatedAt: "2026-01-01T00:00:00Z",
    });
    // A ttl of 2 s: heartbeats every ~0.6 s, so a busy test machine's stalls do not expire a live pod.
    sender.send(report("a"), 2);
    sender.send(report("b"), 2);
    await eventually("both reports received", () => table.size === 2);
    sender.stop("eu", "z", "b", false); // crashed: no goodbye
    // b expires a ttl after its last heartbeat, later than a's report was sent: by then a is
    // alive only through its heartbeats.
    await eventually("b's report expired", () => table.size === 1, 10_000);
    expect(table.reports().map((r) => r.pod)).toEqual(["a"]);
    sender.stop("eu", "z", "a", true);
    await eventually("goodbye", () => table.size === 0, 5000);

    // A receiver left holding an old report (the change was lost on the way) learns it from the
    // next heartbeat, which names the version last sent, and asks again.
    sender.send({ ...report("c"), epoch: 5 }, 2);
    await eventually("epoch 5 received", () => table.reports()[0]?.epoch === 5);
    const seen: (number | undefined)[] = [];
    table.on("change", () => seen.push(table.reports()[0]?.epoch));
    nc.publish(l.reportSubject("eu"), JSON.stringify({ ...report("c"), epoch: 4, ttlSeconds: 2 }));
    await eventually(
      "the stale copy held, then healed by the heartbeat's version",
      () => seen.at(-1) === 5,
      5000,
    );
    expect(seen).toEqual([4, 5]);
    // Replaced in place: still one report for the pod, in its zone.
    expect(table.zoneReports("eu", "z").map((r) => [r.pod, r.epoch])).toEqual([["c", 5]]);
    sender.stop("eu", "z", "c", true);
    table.close();
  });
});
