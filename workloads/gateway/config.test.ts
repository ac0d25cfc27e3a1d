import { describe, expect, it } from "vitest";
import { ConfigError } from "../runtime/config.ts";
import { gatewayConfigFromEnv } from "./config.ts";

describe("gateway configuration", () => {
  it("reads a development setup with a static map list", () => {
    const c = gatewayConfigFromEnv({
      HYBRIDP2P_NATS_URL: "nats://127.0.0.1:4222",
      HYBRIDP2P_GATEWAY_MAPS: "prt=prontera,prt_fild08; pay = payon",
      HYBRIDP2P_GATEWAY_MSGS_PER_SECOND: "30",
      POD_NAME: "gw-1",
    });
    expect(c.staticMaps).toEqual({ prt: ["prontera", "prt_fild08"], pay: ["payon"] });
    expect(c.etcdEndpoints).toEqual([]);
    expect(c.port).toBe(7000);
    expect(c.limits.msgsPerSecond).toBe(30);
    expect(c.limits.msgsBurst).toBe(60);
    expect(c.redisUrl).toBeUndefined();
    expect(c.runtime.podName).toBe("gw-1");
  });

  it("checks sessions in Redis when it has one, unless told not to", () => {
    const base = { HYBRIDP2P_NATS_URL: "nats://n:4222", HYBRIDP2P_ETCD_ENDPOINTS: "http://e:2379" };
    expect(gatewayConfigFromEnv({ ...base, HYBRIDP2P_REDIS_URL: "redis://r:6379" }).redisUrl).toBe(
      "redis://r:6379",
    );
    expect(
      gatewayConfigFromEnv({
        ...base,
        HYBRIDP2P_REDIS_URL: "redis://r:6379",
        HYBRIDP2P_GATEWAY_CHECK_SESSIONS: "false",
      }).redisUrl,
    ).toBeUndefined();
  });

  it("names every bad variable at once", () => {
    try {
      gatewayConfigFromEnv({ HYBRIDP2P_GATEWAY_MAPS: "nonsense", HYBRIDP2P_GATEWAY_PORT: "99999" });
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      const text = (err as ConfigError).problems.join("\n");
      expect(text).toMatch(/HYBRIDP2P_NATS_URL/);
      expect(text).toMatch(/HYBRIDP2P_GATEWAY_MAPS/);
      expect(text).toMatch(/HYBRIDP2P_GATEWAY_PORT/);
    }
  });
});
