// The publisher against the real flags etcd: atomic visibility for thousands of zones, no-op
// publishes, growing epochs, fencing of a deposed leader, deleted zones.
import { randomUUID } from "node:crypto";
import type { Etcd3 } from "etcd3";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { FlagClient, type FlagSnapshot } from "../../platform/flags/client.ts";
import { connectFlagStore } from "../../platform/flags/etcd.ts";
import { parsePointer, parsePublishedZone } from "../../platform/flags/layout.ts";
import { eventually } from "../../testkit/flags.ts";
import { type CompiledFlags, compile, type ZoneInput } from "./compiler.ts";
import { FencedError, FlagPublisher } from "./publisher.ts";

const env = inject("localEnv");
const quiet = { error: () => {}, warn: () => {}, info: () => {} };

function world(ns: string, zones: number, enabled: boolean, tag = "webrtc"): CompiledFlags {
  const zs: ZoneInput[] = Array.from({ length: zones }, (_, i) => ({
    metadata: { name: `zone-${String(i).padStart(5, "0")}`, namespace: ns, labels: { kind: "field" } },
    spec: { regionRef: "r1", maps: [{ name: `map${i}`, type: "Field" }] },
  }));
  return compile({
    policies: [
      {
        metadata: { name: "p", namespace: ns },
        spec: { zoneSelector: { matchLabels: { kind: "field" } }, enabled, transports: [tag] },
      },
    ],
    zones: zs,
    regions: [{ metadata: { name: "r1", namespace: ns } }],
  });
}

describe("flag publisher", () => {
  let etcd: Etcd3;
  beforeAll(() => {
    etcd = connectFlagStore(env.etcd!);
  });
  afterAll(() => etcd.close());

  const prefixFor = () => `/test-${randomUUID()}/`;

  it("publishes 2000 zones atomically: a watching client never sees a mix of two publishes", async () => {
    const prefix = prefixFor();
    const pub = new FlagPublisher({ client: etcd, identity: "op-a", prefix });
    await pub.acquire();
    const client = new FlagClient({
      client: etcd,
      prefix,
      namespace: "big",
      service: "gateway",
      pod: "gw-0",
      report: false,
      log: quiet,
      pageSize: 300,
    });
    const seen: FlagSnapshot[] = [];
    client.on("snapshot", (s) => seen.push(s));
    await client.start();
    const on = world("big", 2000, true);
    const off = world("big", 2000, false);
    const results = [];
    for (let i = 0; i < 6; i++) results.push(await pub.publish(i % 2 === 0 ? on : off));
    expect(results.map((r) => r.published)).toEqual([true, true, true, true, true, true]);
    expect(results.every((r) => r.chunks > 1)).toBe(true); // really spread over many transactions
    const last = results.at(-1)!.epoch;
    await eventually("client at the last epoch", () => client.snapshot().epoch === last);
    await client.close();
    for (const s of seen.filter((x) => x.epoch > 0)) {
      expect(s.zones.size).toBe(2000);
      const enabled = new Set([...s.zones.values()].map((z) => z.enabled));
      expect(enabled.size).toBe(1); // all on or all off: one publish, whole
      expect([...enabled][0]).toBe(s.epoch % 2 === 1);
    }
    const epochs = seen.map((s) => s.epoch).filter((e) => e > 0);
    expect(epochs).toEqual([...epochs].sort((a, b) => a - b));
    console.log(
      `2000 zones: ${results[0]!.chunks} transactions of documents per publish, snapshots seen at epochs ${epochs.join(",")}`,
    );
  });

  it("publishes nothing when a compile changes nothing", async () => {
    const prefix = prefixFor();
    const pub = new FlagPublisher({ client: etcd, identity: "op-a", prefix });
    await pub.acquire();
    const first = await pub.publish(world("n", 10, true));
    const revBefore = (await etcd.get(pub.layout.pointer).exec()).kvs[0]!.mod_revision;
    const again = await pub.publish(world("n", 10, true));
    expect(first.published).toBe(true);
    expect(again.published).toBe(false);
    expect(again.epoch).toBe(first.epoch);
    expect((await etcd.get(pub.layout.pointer).exec()).kvs[0]!.mod_revision).toBe(revBefore);
    const changed = await pub.publish(world("n", 10, false));
    expect(changed).toMatchObject({ published: true, epoch: first.epoch + 1 });
  });

  it("keeps epochs growing when the pointer and every zone key were overwritten with garbage", async () => {
    const prefix = prefixFor();
    const pub = new FlagPublisher({ client: etcd, identity: "op-a", prefix });
    await pub.acquire();
    const first = await pub.publish(world("g", 3, true));
    // By hand, straight into the store: nothing readable says which epoch was last.
    await etcd.put(pub.layout.pointer).value("{not json");
    const keys = await etcd.getAll().prefix(pub.layout.zonesPrefix()).keys();
    for (const k of keys) await etcd.put(k).value('{"epoch": "many"');
    const next = await pub.publish(world("g", 3, false));
    expect(next.epoch).toBeGreaterThan(first.epoch);
  });

  it("fences a deposed leader: its publish fails, epochs keep growing under the new leader", async () => {
    const prefix = prefixFor();
    const a = new FlagPublisher({ client: etcd, identity: "op-a", prefix });
    const b = new FlagPublisher({ client: etcd, identity: "op-b", prefix });
    await a.acquire();
    const e1 = await a.publish(world("f", 50, true));
    await b.acquire(); // b is elected; a has not noticed yet
    await expect(a.publish(world("f", 50, false))).rejects.toBeInstanceOf(FencedError);
    const e2 = await b.publish(world("f", 50, false));
    expect(e2.epoch).toBe(e1.epoch + 1);
    const ptr = parsePointer("p", (await etcd.get(b.layout.pointer).string())!);
    expect(ptr).toMatchObject({ epoch: e2.epoch, publisher: "op-b" });
    await expect(a.publish(world("f", 50, true))).rejects.toBeInstanceOf(FencedError);
  });

  it("two operators racing to publish: every flip is one leader's whole publish, epochs strictly grow", async () => {
    const prefix = prefixFor();
    const a = new FlagPublisher({ client: etcd, identity: "op-a", prefix });
    const b = new FlagPublisher({ client: etcd, identity: "op-b", prefix });
    const watcher = new FlagClient({
      client: etcd,
      prefix,
      namespace: "race",
      service: "gateway",
      pod: "w",
      report: false,
      log: quiet,
    });
    const seen: FlagSnapshot[] = [];
    watcher.on("snapshot", (s) => seen.push(s));
    await watcher.start();
    const outcomes = { published: 0, fenced: 0 };
    // Each round both think they lead: both acquire in a random order, then both publish at once
    // (each a different world, 300 zones so staging spans several transactions).
    for (let round = 0; round < 8; round++) {
      const order = round % 2 === 0 ? [a, b] : [b, a];
      await Promise.all(order.map((p) => p.acquire()));
      const res = await Promise.allSettled([
        a.publish(world("race", 300, true, `a${round}`)),
        b.publish(world("race", 300, false, `b${round}`)),
      ]);
      for (const r of res) {
        if (r.status === "fulfilled") outcomes.published++;
        else if (r.reason instanceof FencedError) outcomes.fenced++;
        else throw r.reason;
      }
    }
    expect(outcomes.published).toBe(8); // exactly the token holder of each round
    expect(outcomes.fenced).toBe(8);
    const ptr = parsePointer("p", (await etcd.get(a.layout.pointer).string())!);
    await eventually("watcher at the last epoch", () => watcher.snapshot().epoch === ptr.epoch);
    await watcher.close();
    expect(ptr.epoch).toBe(8);
    for (const s of seen.filter((x) => x.epoch > 0)) {
      const tags = new Set([...s.zones.values()].map((z) => `${z.enabled}:${z.transports[0]}`));
      expect(tags.size).toBe(1); // every zone from the same publish
      expect(s.zones.size).toBe(300);
    }
    const epochs = seen.map((s) => s.epoch).filter((e) => e > 0);
    expect(new Set(epochs).size).toBe(epochs.length);
    expect(epochs).toEqual([...epochs].sort((x, y) => x - y));
  });

  it("deletes the documents of zones that are gone; a new holder's first publish rewrites every document", async () => {
    const prefix = prefixFor();
    const a = new FlagPublisher({ client: etcd, identity: "op-a", prefix });
    await a.acquire();
    await a.publish(world("gc", 5, true));
    const three = await a.publish(world("gc", 3, false));
    const docs = async () =>
      Object.entries(await etcd.getAll().prefix(a.layout.zonesPrefix("gc")).strings()).map(([k, v]) =>
        parsePublishedZone(k, v),
      );
    expect((await docs()).map((d) => d.zone)).toEqual(["zone-00000", "zone-00001", "zone-00002"]);
    expect((await docs()).every((d) => d.publish === three.publish && d.epoch === three.epoch)).toBe(true);

    // A holder deposed half-way leaves documents of a publish that never flipped; the next holder
    // writes every document on its first publish, even when the compile equals the live one.
    await etcd.put(a.layout.zoneKey("gc", "zone-00001")).value(
      JSON.stringify({
        ...(await docs())[1],
        epoch: three.epoch + 1,
        publish: a.layout.publishId(three.epoch + 1, "1"),
      }),
    );
    const b = new FlagPublisher({ client: etcd, identity: "op-b", prefix });
    await b.acquire();
    const again = await b.publish(world("gc", 3, false));
    expect(again.published).toBe(true);
    expect((await docs()).every((d) => d.publish === again.publish)).toBe(true);
    expect((await b.publish(world("gc", 3, false))).published).toBe(false); // and then only on change
  });

  it("a publish that failed half-way is written again, even when the next compile equals the live one", async () => {
    // A store that goes away between the chunks of a publish (an etcd restart): the chunk that
    // landed holds documents of a publish that never flipped, and map servers apply them (they
    // watch their own key). The next compile may equal the live pointer again (the change was
    // undone meanwhile): it must still rewrite every document, or those zones keep the undone
    // change while the pointer says otherwise.
    const prefix = prefixFor();
    let commits = 0;
    let failAt = -1;
    const flaky = new Proxy(etcd, {
      get(target, prop) {
        if (prop === "if")
          return (...args: Parameters<Etcd3["if"]>) => {
            const txn = target.if(...args);
            const commit = txn.commit.bind(txn);
            txn.commit = () =>
              ++commits === failAt ? Promise.reject(new Error("14 UNAVAILABLE: gone")) : commit();
            return txn;
          };
        const v = Reflect.get(target, prop, target);
        return typeof v === "function" ? v.bind(target) : v;
      },
    });
    // Two documents per transaction: 4 zones are two chunks and a flip.
    const pub = new FlagPublisher({ client: flaky, identity: "op-a", prefix, maxOpsPerTxn: 2 });
    await pub.acquire();
    const off = await pub.publish(world("hw", 4, false));
    failAt = commits + 2; // the second chunk of the next publish fails; the first lands
    await expect(pub.publish(world("hw", 4, true))).rejects.toThrow(/UNAVAILABLE/);
    const docs = async () =>
      Object.entries(await etcd.getAll().prefix(pub.layout.zonesPrefix("hw")).strings()).map(([k, v]) =>
        parsePublishedZone(k, v),
      );
    // The half that landed (the first chunk may still be on its way when the second fails).
    await eventually("the first chunk landed", async () => (await docs()).some((d) => d.enabled));
    const again = await pub.publish(world("hw", 4, false)); // the change undone
    expect(again.epoch).toBeGreaterThan(off.epoch);
    const live = parsePointer(pub.layout.pointer, (await etcd.get(pub.layout.pointer).string())!);
    expect(live.publish).toBe(again.publish);
    const after = await docs();
    expect(after.map((d) => [d.zone, d.enabled, d.publish])).toEqual(
      after.map((d) => [d.zone, false, live.publish]),
    );
    expect((await pub.publish(world("hw", 4, false))).published).toBe(false); // and then only on change
  });
});
