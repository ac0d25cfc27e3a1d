// Batched report writes against real etcd: one transaction per tick and per 120 keys, the last
// write of a key wins, and a bad lease fails only its own write.
import { randomUUID } from "node:crypto";
import type { Etcd3 } from "etcd3";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { connectFlagStore } from "./etcd.ts";
import { batchedPut } from "./shared.ts";

const env = inject("localEnv");

describe("batched report writes", () => {
  let etcd: Etcd3;
  beforeAll(() => {
    etcd = connectFlagStore(env.etcdEndpoints!);
  });
  afterAll(() => etcd.close());

  it("writes 300 keys under their own leases, the last write of a key winning", async () => {
    const prefix = `/test-${randomUUID()}/`;
    const leases = await Promise.all(Array.from({ length: 3 }, () => etcd.lease(30).grant()));
    const before = Number((await etcd.get("/").exec()).header.revision);
    const writes = Array.from({ length: 300 }, (_, i) =>
      batchedPut(etcd, `${prefix}k${i}`, `v${i}`, String(leases[i % 3])),
    );
    writes.push(batchedPut(etcd, `${prefix}k0`, "last", String(leases[0])));
    await Promise.all(writes);
    const kvs = (await etcd.getAll().prefix(prefix).exec()).kvs;
    expect(kvs).toHaveLength(300);
    expect(kvs.find((kv) => kv.key.toString() === `${prefix}k0`)!.value.toString()).toBe("last");
    expect(new Set(kvs.map((kv) => kv.lease))).toEqual(new Set(leases.map(String)));
    const after = Number((await etcd.get("/").exec()).header.revision);
    expect(after - before).toBe(3); // 300 keys in three transactions
  });

  it("fails only the write whose lease is gone", async () => {
    const prefix = `/test-${randomUUID()}/`;
    const good = String(await etcd.lease(30).grant());
    const gone = etcd.lease(30);
    const goneId = String(await gone.grant());
    await gone.revoke();
    const results = await Promise.allSettled([
      batchedPut(etcd, `${prefix}a`, "1", good),
      batchedPut(etcd, `${prefix}b`, "2", goneId),
      batchedPut(etcd, `${prefix}c`, "3", good),
    ]);
    expect(results.map((r) => r.status)).toEqual(["fulfilled", "rejected", "fulfilled"]);
    expect(String((results[1] as PromiseRejectedResult).reason)).toMatch(/lease not found/);
    expect(await etcd.getAll().prefix(prefix).keys()).toEqual([`${prefix}a`, `${prefix}c`]);
  });
});
