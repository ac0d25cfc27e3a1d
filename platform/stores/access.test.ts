import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { etcdOptions, natsOptions, pgOptions, redisOptions, storeAccess, storeAccessEnv } from "./access.ts";
import { etcdRoles, natsPermissions, renderNatsConfig } from "./roles.ts";

const tlsDir = (withCert: boolean) => {
  const d = mkdtempSync(join(tmpdir(), "access-test-"));
  writeFileSync(join(d, "ca.crt"), "CA");
  if (withCert) {
    writeFileSync(join(d, "tls.crt"), "CERT");
    writeFileSync(join(d, "tls.key"), "KEY");
  }
  return d;
};

describe("store access from the environment", () => {
  it("reads the address and HYBRIDP2P_<STORE>_USERNAME/_PASSWORD/_TLS_DIR, and writes them back", () => {
    const env = {
      HYBRIDP2P_REDIS_URL: "rediss://r:6380/2",
      HYBRIDP2P_DRAGONFLY_USERNAME: "gw",
      HYBRIDP2P_DRAGONFLY_PASSWORD: "pw",
      HYBRIDP2P_DRAGONFLY_TLS_DIR: "/tls",
    };
    const a = storeAccess("dragonfly", undefined, env)!;
    expect(a).toEqual({
      store: "dragonfly",
      url: "rediss://r:6380/2",
      username: "gw",
      password: "pw",
      tlsDir: "/tls",
    });
    expect(storeAccessEnv(a)).toEqual(env);
    expect(storeAccess("nats", undefined, {})).toBeUndefined();
  });

  it("gives each client its credentials and TLS", () => {
    const withCert = tlsDir(true);
    expect(etcdOptions({ store: "etcd", url: "https://e1:2379,https://e2:2379", tlsDir: withCert })).toEqual({
      hosts: ["https://e1:2379", "https://e2:2379"],
      credentials: {
        rootCertificate: Buffer.from("CA"),
        certChain: Buffer.from("CERT"),
        privateKey: Buffer.from("KEY"),
      },
    });
    const caOnly = tlsDir(false);
    expect(
      natsOptions({ store: "nats", url: "nats://n:4222", username: "u", password: "p", tlsDir: caOnly }),
    ).toEqual({ servers: ["nats://n:4222"], user: "u", pass: "p", tls: { caFile: join(caOnly, "ca.crt") } });
    const pg = pgOptions({
      store: "postgres",
      url: "postgres://app@db:5432/x?sslmode=require",
      password: "p w",
      tlsDir: caOnly,
    });
    expect(pg.connectionString).toBe("postgres://app:p%20w@db:5432/x");
    expect(pg.ssl).toMatchObject({ ca: Buffer.from("CA"), rejectUnauthorized: true });
    expect(redisOptions({ store: "dragonfly", url: "redis://r:6379/1", password: "pw" })).toEqual({
      host: "r",
      port: 6379,
      db: 1,
      password: "pw",
    });
  });

  it("names the variable and the path of missing TLS material", () => {
    expect(() => natsOptions({ store: "nats", url: "nats://n:4222", tlsDir: "/nonexistent" })).toThrow(
      /\/nonexistent\/ca\.crt \(from HYBRIDP2P_NATS_TLS_DIR\)/,
    );
    expect(() => etcdOptions({ store: "nats", url: "x" })).toThrow(
      /a nats access given where etcd was expected/,
    );
  });
});

describe("store roles", () => {
  it("etcd: the operator writes flags and its fence; a map server only its Region's ownership keys", () => {
    const roles = Object.fromEntries(etcdRoles(["eu"], "/p/").map((r) => [r.name, r.grants]));
    expect(roles["hybridp2p-operator"]).toEqual([
      { permission: "Readwrite", prefix: "/p/flags/" },
      { permission: "Readwrite", key: "/p/ownership/publisher" },
    ]);
    expect(roles["hybridp2p-map-server@eu"]).toEqual([
      { permission: "Read", prefix: "/p/flags/" },
      { permission: "Readwrite", prefix: "/p/ownership/maps/eu/" },
    ]);
    expect(roles["hybridp2p-gateway@eu"]).toEqual([{ permission: "Read", prefix: "/p/flags/" }]);
  });

  it("NATS: a gateway publishes requests to its Region's maps, never what a map server publishes", () => {
    const gw = natsPermissions("gateway", "eu");
    expect(gw.publish).toContain("hp2p.eu.*.*.join");
    expect(gw.publish).not.toContain("hp2p.eu.*.*.aoi.*");
    expect(gw.publish.some((s) => s.includes(".sync."))).toBe(false);
    expect(natsPermissions("operator", "eu").publish).toEqual(["hybridp2p.flags.hybridp2p_v1.sync.*"]);
    expect(() => natsPermissions("gateway", "e.u")).toThrow(/invalid region/);
  });

  it("renders a nats-server configuration with TLS and users", () => {
    const conf = renderNatsConfig({
      port: 4222,
      tls: { certFile: "/t/tls.crt", keyFile: "/t/tls.key", caFile: "/t/ca.crt" },
      users: [
        { user: "admin", password: 'p"w' },
        { user: "gw", password: "x", permissions: { publish: ["a.>"], subscribe: ["b"] } },
      ],
    });
    expect(conf).toContain('cert_file: "/t/tls.crt"');
    expect(conf).toContain('{ user: "admin", password: "p\\"w" }');
    expect(conf).toContain(
      '{ user: "gw", password: "x", permissions: { publish: { allow: ["a.>"] }, subscribe: { allow: ["b"] }, allow_responses: true } }',
    );
    expect(() => renderNatsConfig({ users: [] })).toThrow(/at least one user/);
  });
});
