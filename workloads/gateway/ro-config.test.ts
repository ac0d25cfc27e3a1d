// The RO endpoints' settings: off unless their port is set, and what each needs with it.
import { describe, expect, it } from "vitest";
import { charConfigFromEnv } from "../char-server/config.ts";
import { loginConfigFromEnv } from "../login-server/config.ts";
import { ConfigError } from "../runtime/config.ts";
import { gatewayConfigFromEnv } from "./config.ts";

const stores = {
  HYBRIDP2P_DATABASE_URL: "postgres://u:p@db:5432/x",
  HYBRIDP2P_REDIS_URL: "redis://r:6379",
};

describe("RO endpoint settings", () => {
  it("are off by default", () => {
    expect(loginConfigFromEnv(stores).ro).toBeUndefined();
    expect(charConfigFromEnv({ ...stores, HYBRIDP2P_GATEWAY_ADDRESS: "gw:7000" }).ro).toBeUndefined();
    expect(
      gatewayConfigFromEnv({ HYBRIDP2P_NATS_URL: "nats://n:4222", HYBRIDP2P_GATEWAY_MAPS: "z=m" }).ro,
    ).toBe(undefined);
  });

  it("name the next endpoint as clients reach it", () => {
    const login = loginConfigFromEnv({
      ...stores,
      HYBRIDP2P_RO_LOGIN_PORT: "6901",
      HYBRIDP2P_RO_CHAR_ADDRESS: "192.0.2.1:30612",
      HYBRIDP2P_REGION: "demo",
    });
    expect(login.ro).toMatchObject({
      port: 6901,
      charAddress: { host: "192.0.2.1", port: 30612 },
      serverName: "demo",
    });
    const char = charConfigFromEnv({
      ...stores,
      HYBRIDP2P_GATEWAY_ADDRESS: "gw:7000",
      HYBRIDP2P_RO_CHAR_PORT: "6122",
      HYBRIDP2P_RO_MAP_ADDRESS: "ro.example.org:5121",
    });
    expect(char.ro).toMatchObject({ port: 6122, mapAddress: { host: "ro.example.org", port: 5121 } });
    expect(() => loginConfigFromEnv({ ...stores, HYBRIDP2P_RO_LOGIN_PORT: "6901" })).toThrow(
      /HYBRIDP2P_RO_CHAR_ADDRESS/,
    );
  });

  it("need Redis at the gateway (the map tickets live there)", () => {
    const base = {
      HYBRIDP2P_NATS_URL: "nats://n:4222",
      HYBRIDP2P_GATEWAY_MAPS: "z=m",
      HYBRIDP2P_RO_MAP_PORT: "5122",
    };
    expect(() => gatewayConfigFromEnv(base)).toThrow(ConfigError);
    expect(() => gatewayConfigFromEnv(base)).toThrow(/HYBRIDP2P_REDIS_URL/);
    const c = gatewayConfigFromEnv({ ...base, HYBRIDP2P_REDIS_URL: "redis://r:6379" });
    expect(c.ro).toMatchObject({ port: 5122, redisUrl: "redis://r:6379" });
  });
});
