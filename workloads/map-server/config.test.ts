import { describe, expect, it } from "vitest";
import { ConfigError } from "../runtime/config.ts";
import { mapServerConfigFromEnv } from "./config.ts";

const good = {
  HYBRIDP2P_ETCD_ENDPOINTS: "http://127.0.0.1:2379,http://10.0.0.2:2379",
  HYBRIDP2P_NATS_URL: "nats://127.0.0.1:4222",
  HYBRIDP2P_REDIS_URL: "redis://127.0.0.1:6379",
  HYBRIDP2P_DATABASE_URL: "postgres://u:p@127.0.0.1/db",
  HYBRIDP2P_REGION: "eu1",
  HYBRIDP2P_ZONE: "fields",
  HYBRIDP2P_MAPS: "prt_fild08, prt_fild07",
  POD_NAME: "fields-map-server-0",
};

describe("map server configuration", () => {
  it("reads the pod contract with defaults", () => {
    const c = mapServerConfigFromEnv(good);
    expect(c).toMatchObject({
      etcdEndpoints: ["http://127.0.0.1:2379", "http://10.0.0.2:2379"],
      zone: "fields",
      maps: ["prt_fild08", "prt_fild07"],
      workerThreads: 2,
      tickHz: 20,
      maxPlayers: 1000,
      flagPrefix: "/hybridp2p/v1/",
    });
    expect(c.runtime.podName).toBe("fields-map-server-0");
  });

  it("names every bad variable at once, without echoing secrets", () => {
    let err: unknown;
    try {
      mapServerConfigFromEnv({
        ...good,
        HYBRIDP2P_MAPS: "ok,bad.map",
        HYBRIDP2P_ZONE: "",
        HYBRIDP2P_TICK_RATE_HZ: "0",
        HYBRIDP2P_DATABASE_URL: "mysql://u:secret@h/db",
        HYBRIDP2P_ETCD_ENDPOINTS: "127.0.0.1:2379",
      });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const msg = (err as ConfigError).message;
    for (const v of [
      "HYBRIDP2P_MAPS",
      "HYBRIDP2P_ZONE",
      "HYBRIDP2P_TICK_RATE_HZ",
      "HYBRIDP2P_DATABASE_URL",
      "HYBRIDP2P_ETCD_ENDPOINTS",
    ])
      expect(msg).toContain(v);
    expect(msg).not.toContain("secret");
  });
});
