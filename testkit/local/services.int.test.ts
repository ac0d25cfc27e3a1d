// The local environment is real: each service answers a real client.
import { CoreV1Api, KubeConfig, VersionApi } from "@kubernetes/client-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { Etcd3 } from "etcd3";
import { Redis } from "ioredis";
import pg from "pg";
import { describe, expect, inject, it } from "vitest";

const env = inject("localEnv");

describe("local environment", () => {
  it("serves a kube-apiserver with RBAC that the admin kubeconfig can use", async () => {
    const kc = new KubeConfig();
    kc.loadFromFile(env.kubeconfig!);
    const version = await kc.makeApiClient(VersionApi).getCode();
    expect(version.gitVersion).toMatch(/^v1\.\d+\.\d+/);
    const ns = await kc.makeApiClient(CoreV1Api).readNamespace({ name: "default" });
    expect(ns.metadata?.name).toBe("default");
  });

  it("serves a flags etcd separate from the apiserver's", async () => {
    const etcd = new Etcd3({ hosts: env.etcdEndpoints! });
    try {
      await etcd.put("/probe").value("ok");
      expect(await etcd.get("/probe").string()).toBe("ok");
      const keys = await etcd.getAll().prefix("/registry").keys();
      expect(keys).toHaveLength(0);
    } finally {
      etcd.close();
    }
  });

  it("serves NATS with JetStream", async () => {
    const nc = await connect({ servers: env.natsUrl! });
    try {
      const jsm = await jetstreamManager(nc);
      await jsm.streams.add({ name: "PROBE", subjects: ["probe.>"] });
      const ack = await jetstream(nc).publish("probe.one", "hello");
      expect(ack.stream).toBe("PROBE");
      expect(ack.seq).toBe(1);
      await jsm.streams.delete("PROBE");
    } finally {
      await nc.close();
    }
  });

  it("serves Redis", async () => {
    const redis = new Redis(env.redisUrl!);
    try {
      await redis.set("probe", "ok");
      expect(await redis.get("probe")).toBe("ok");
    } finally {
      redis.disconnect();
    }
  });

  it("serves PostgreSQL with the hybridp2p database", async () => {
    const client = new pg.Client({ connectionString: env.databaseUrl! });
    await client.connect();
    try {
      const res = await client.query<{ db: string }>("select current_database() as db");
      expect(res.rows[0]?.db).toBe("hybridp2p");
    } finally {
      await client.end();
    }
  });
});
