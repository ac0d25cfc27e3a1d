// The local environment is real: each service answers a real client.
import { CoreV1Api, KubeConfig, VersionApi } from "@kubernetes/client-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Etcd3 } from "etcd3";
import { Redis } from "ioredis";
import pg from "pg";
import { describe, expect, inject, it } from "vitest";
import { connectNats, etcdOptions, pgOptions, redisOptions } from "../../platform/stores/access.ts";

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

  it("serves a flags etcd (TLS, client-certificate auth) separate from the apiserver's", async () => {
    const etcd = new Etcd3(etcdOptions(env.etcd!));
    try {
      await etcd.put("/probe").value("ok");
      expect(await etcd.get("/probe").string()).toBe("ok");
      const keys = await etcd.getAll().prefix("/registry").keys();
      expect(keys).toHaveLength(0);
    } finally {
      etcd.close();
    }
  });

  it("serves NATS with JetStream (TLS, users)", async () => {
    const nc = await connectNats(env.nats!);
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

  it("serves Redis (TLS, password)", async () => {
    const redis = new Redis(redisOptions(env.redis!));
    try {
      await redis.set("probe", "ok");
      expect(await redis.get("probe")).toBe("ok");
    } finally {
      redis.disconnect();
    }
  });

  it("serves PostgreSQL with the hybridp2p database (TLS, scram)", async () => {
    const client = new pg.Client(pgOptions(env.postgres!));
    await client.connect();
    try {
      const res = await client.query<{ db: string }>("select current_database() as db");
      expect(res.rows[0]?.db).toBe("hybridp2p");
    } finally {
      await client.end();
    }
  });
});
