// Sharing among the flag clients of one connection, against real etcd and NATS: one watch per
// key, reads of the same tick as one request, each value parsed once; one report sender per
// NATS connection whose heartbeats keep the reports alive at the receiver.
import { randomUUID } from "node:crypto";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Etcd3, IKeyValue } from "etcd3";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { eventually } from "../../testkit/flags.ts";
import { connectNats } from "../stores/access.ts";
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
    sender.send(report("a"), 1);
    sender.send(report("b"), 1);
    await eventually("both reports received", () => table.size === 2);
    sender.stop("eu", "z", "b", false); // crashed: no goodbye
    await new Promise((r) => setTimeout(r, 1600));
    expect(table.reports().map((r) => r.pod)).toEqual(["a"]); // a's heartbeats kept it alive
    sender.stop("eu", "z", "a", true);
    await eventually("goodbye", () => table.size === 0, 500);

    // A receiver left holding an old report (the change was lost on the way) learns it from the
    // next heartbeat, which names the version last sent, and asks again.
    sender.send({ ...report("c"), epoch: 5 }, 1);
    await eventually("epoch 5 received", () => table.reports()[0]?.epoch === 5);
    nc.publish(l.reportSubject("eu"), JSON.stringify({ ...report("c"), epoch: 4, ttlSeconds: 1 }));
    await eventually("the stale copy held", () => table.reports()[0]?.epoch === 4, 500);
    await eventually("healed by the heartbeat's version", () => table.reports()[0]?.epoch === 5, 2000);
    sender.stop("eu", "z", "c", true);
    table.close();
  });
});
