// The local stores run with auth and TLS on (testkit/local/services.ts), with the roles of
// platform/stores/roles.ts. Each refusal below names the store's own error: with auth or TLS
// switched off the same call would succeed (or answer in plaintext), and the test would fail.
import { randomUUID } from "node:crypto";
import { connect as tcpConnect } from "node:net";
import type { NatsConnection, Status } from "@nats-io/transport-node";
import { Etcd3, EtcdPermissionDeniedError } from "etcd3";
import { Redis } from "ioredis";
import pg from "pg";
import { afterAll, describe, expect, inject, it } from "vitest";
import { roleAccess } from "../../testkit/local/services.ts";
import {
  createCharacters,
  FakeGateway,
  servicesFrom,
  startTestServer,
  unique,
} from "../../testkit/map-server/harness.ts";
import { subjects } from "../bus/contract.ts";
import { connectFlagStore } from "../flags/etcd.ts";
import { DEFAULT_PREFIX, layout } from "../flags/layout.ts";
import { connectNats, etcdOptions, pgOptions, redisOptions, type StoreAccess } from "./access.ts";

const env = inject("localEnv");
const l = layout(); // the roles are granted on the default prefix
const hostPort = (url: string) => {
  const u = new URL(url.split(",")[0]!);
  return { host: u.hostname, port: Number(u.port) };
};

/** Bytes a server sends to a plaintext client that says `hello` first (up to 2 s, or until it closes). */
function plaintextAnswer(url: string, hello: string): Promise<{ data: string; closed: boolean }> {
  const { host, port } = hostPort(url);
  return new Promise((resolve) => {
    let data = "";
    const s = tcpConnect({ host, port }, () => s.write(hello));
    const done = (closed: boolean) => {
      clearTimeout(t);
      s.destroy();
      resolve({ data, closed });
    };
    const t = setTimeout(() => done(false), 2000);
    s.on("data", (d) => {
      data += d.toString("latin1");
    });
    s.on("close", () => done(true));
    s.on("error", () => done(true));
  });
}

describe("etcd: TLS, client certificates and roles by key prefix", () => {
  const clients: Etcd3[] = [];
  const as = (a: StoreAccess) => {
    const c = connectFlagStore(a, { callTimeoutMs: 5000 });
    clients.push(c);
    return c;
  };
  afterAll(() => {
    for (const c of clients) c.close();
  });
  const mapServerEast = () => as(roleAccess(env, "etcd", "map-server", "east"));
  const gatewayEast = () => as(roleAccess(env, "etcd", "gateway", "east"));
  const ownKey = (region: string) => `${l.ownershipPrefix}maps/${region}/z/${randomUUID()}`;

  it("happy path: the operator writes flags, a map server writes its own Region's ownership keys, workloads read flags", async () => {
    const key = l.zoneKey("refusal", randomUUID());
    await as(roleAccess(env, "etcd", "operator"))
      .put(key)
      .value("{}");
    expect(await gatewayEast().get(key).string()).toBe("{}");
    const own = ownKey("east");
    await mapServerEast().put(own).value("ms-0");
    expect(await mapServerEast().get(own).string()).toBe("ms-0");
  });

  it("a map server cannot write a flag key", async () => {
    const err = await mapServerEast()
      .put(l.zoneKey("refusal", "z"))
      .value("{}")
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EtcdPermissionDeniedError);
  });

  it("a map server cannot write another Region's ownership keys; a gateway writes none", async () => {
    const other = await mapServerEast()
      .put(ownKey("west"))
      .value("ms-0")
      .catch((e: unknown) => e);
    expect(other).toBeInstanceOf(EtcdPermissionDeniedError);
    const gw = await gatewayEast()
      .put(ownKey("east"))
      .value("gw")
      .catch((e: unknown) => e);
    expect(gw).toBeInstanceOf(EtcdPermissionDeniedError);
    // Nor can it read outside the flags (the publisher's fence).
    const fence = await gatewayEast()
      .get(l.fence)
      .catch((e: unknown) => e);
    expect(fence).toBeInstanceOf(EtcdPermissionDeniedError);
  });

  it("without a client certificate the TLS handshake is refused", async () => {
    const c = new Etcd3({
      ...etcdOptions({ store: "etcd", url: env.etcd!.url, tlsDir: env.redis!.tlsDir }), // the CA only
      dialTimeout: 2000,
    });
    clients.push(c);
    const err = (await c
      .get("x")
      .string()
      .catch((e: unknown) => e)) as Error;
    expect(err).toBeInstanceOf(Error);
    // gRPC gives up on the connection (the server wants a certificate), not an etcd answer.
    expect(err.message).toMatch(/UNAVAILABLE|certificate|handshake|deadline|No connection/i);
    expect(err).not.toBeInstanceOf(EtcdPermissionDeniedError);
  });

  it("plaintext to the TLS client port gets no etcd answer", async () => {
    const { data } = await plaintextAnswer(
      env.etcd!.url,
      "GET /version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    expect(data).not.toMatch(/etcdserver/);
    // Go's TLS listener answers a plaintext HTTP request with a 400 (or the connection just ends).
    if (data.length > 0) expect(data).toMatch(/^HTTP\/1\.[01] 400/);
  });
});

describe("NATS: TLS and a user per role with subject permissions", () => {
  const conns: NatsConnection[] = [];
  afterAll(async () => {
    for (const c of conns) await c.close().catch(() => undefined);
  });
  const open = async (a: StoreAccess) => {
    const c = await connectNats(a, { timeout: 3000 });
    conns.push(c);
    return c;
  };
  /** Whether a message published by `from` on `subject` reaches the administrator, and the
   * permission error the server sent `from` (if any). */
  async function publishAs(from: NatsConnection, subject: string) {
    const admin = await open(env.nats!);
    const got: string[] = [];
    const sub = admin.subscribe(subject, {
      callback: (_e, m) => {
        got.push(m.string());
      },
    });
    await admin.flush();
    const errors: Status[] = [];
    void (async () => {
      for await (const s of from.status()) if (s.type === "error") errors.push(s);
    })();
    from.publish(subject, "hello");
    await from.flush();
    await admin.flush(); // the server passed the message on to admin before this pong
    await new Promise((r) => setTimeout(r, 300)); // an -ERR on `from` surfaces through its status
    sub.unsubscribe();
    return { delivered: got.length > 0, errors: errors.map((s) => String((s as { error?: Error }).error)) };
  }

  it("happy path: a gateway sends a join to its Region's map servers", async () => {
    const gw = await open(roleAccess(env, "nats", "gateway", "east"));
    const r = await publishAs(gw, subjects.join({ region: "east", zone: "z", map: "m" }));
    expect(r).toEqual({ delivered: true, errors: [] });
  });

  it("a gateway cannot publish as a map server (its AOI frames)", async () => {
    const gw = await open(roleAccess(env, "nats", "gateway", "east"));
    const subject = subjects.aoi({ region: "east", zone: "z", map: "m" }, "gw-1");
    const r = await publishAs(gw, subject);
    expect(r.delivered).toBe(false);
    expect(r.errors.join("\n")).toMatch(new RegExp(`Permissions Violation for Publish to "${subject}"`, "i"));
  });

  it("a map server cannot ask pods to report again (only the operator publishes flag subjects)", async () => {
    const ms = await open(roleAccess(env, "nats", "map-server", "east"));
    const subject = l.syncSubject("refusal");
    const r = await publishAs(ms, subject);
    expect(r.delivered).toBe(false);
    expect(r.errors.join("\n")).toMatch(/Permissions Violation for Publish/i);
  });

  it("a gateway of one Region cannot publish into another Region's maps", async () => {
    const gw = await open(roleAccess(env, "nats", "gateway", "east"));
    const r = await publishAs(gw, subjects.join({ region: "west", zone: "z", map: "m" }));
    expect(r.delivered).toBe(false);
    expect(r.errors.join("\n")).toMatch(/Permissions Violation for Publish/i);
  });

  it("no credentials, or a wrong password, are refused", async () => {
    const none = await connectNats(
      { ...env.nats!, username: undefined, password: undefined },
      { timeout: 3000 },
    )
      .then((c) => c.close())
      .catch((e: unknown) => e as Error);
    expect(String(none)).toMatch(/Authorization Violation/i);
    const wrong = await connectNats({ ...env.nats!, password: "wrong" }, { timeout: 3000 })
      .then((c) => c.close())
      .catch((e: unknown) => e as Error);
    expect(String(wrong)).toMatch(/Authorization Violation/i);
  });

  it("plaintext is refused: the server requires TLS", async () => {
    const { data, closed } = await plaintextAnswer(
      env.nats!.url,
      `CONNECT ${JSON.stringify({ user: env.nats!.username, pass: env.nats!.password, verbose: false })}\r\nPING\r\n`,
    );
    // The server announces TLS, takes the plaintext CONNECT for a failed handshake and hangs up;
    // without TLS the same bytes would log in and get a PONG.
    expect(data).toMatch(/"tls_required":true/);
    expect(data).not.toMatch(/PONG/);
    expect(closed).toBe(true);
  });
});

describe("PostgreSQL: TLS only, scram-sha-256", () => {
  const query = async (config: pg.ClientConfig) => {
    const c = new pg.Client({ ...config, connectionTimeoutMillis: 3000 });
    try {
      await c.connect();
      return (await c.query<{ ok: number }>("select 1 as ok")).rows[0]?.ok;
    } finally {
      await c.end().catch(() => undefined);
    }
  };

  it("happy path: the password over TLS", async () => {
    expect(await query(pgOptions(env.postgres!))).toBe(1);
    const c = new pg.Client(pgOptions(env.postgres!));
    await c.connect();
    try {
      const r = await c.query<{ ssl: boolean }>("select ssl from pg_stat_ssl where pid = pg_backend_pid()");
      expect(r.rows[0]?.ssl).toBe(true);
    } finally {
      await c.end();
    }
  });

  it("a wrong password is refused", async () => {
    const err = await query(pgOptions({ ...env.postgres!, password: "wrong" })).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "28P01" }); // invalid_password
    expect(String(err)).toMatch(/password authentication failed for user "postgres"/);
  });

  it("plaintext is refused even with the right password", async () => {
    const { ssl: _, ...plain } = pgOptions(env.postgres!);
    const err = await query({ ...plain, ssl: false }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "28000" }); // invalid_authorization_specification
    expect(String(err)).toMatch(/no pg_hba\.conf entry .* no encryption/);
  });
});

describe("Redis: TLS only, a password", () => {
  const clients: Redis[] = [];
  afterAll(() => {
    for (const c of clients) c.disconnect();
  });
  const client = (a: StoreAccess) => {
    const r = new Redis({ ...redisOptions(a), maxRetriesPerRequest: 0, retryStrategy: () => null });
    r.on("error", () => {});
    clients.push(r);
    return r;
  };

  it("happy path: the password over TLS", async () => {
    const r = client(env.redis!);
    const key = `refusal:${randomUUID()}`;
    await r.set(key, "ok");
    expect(await r.get(key)).toBe("ok");
  });

  it("no password, or a wrong one, is refused", async () => {
    const none = await client({ ...env.redis!, password: undefined })
      .get("x")
      .catch((e: unknown) => e);
    expect(String(none)).toMatch(/NOAUTH Authentication required/);
    const wrong = await client({ ...env.redis!, password: "wrong" })
      .get("x")
      .catch((e: unknown) => e);
    expect(String(wrong)).toMatch(/WRONGPASS|invalid password/i);
  });

  it("plaintext to the TLS port gets no Redis answer", async () => {
    const { data, closed } = await plaintextAnswer(env.redis!.url, `AUTH ${env.redis!.password}\r\nPING\r\n`);
    // A plaintext port would answer +OK / +PONG (or -NOAUTH); the TLS port drops the connection.
    expect(data).not.toMatch(/^[+-]/m);
    expect(closed).toBe(true);
  });
});

describe("end to end with least privilege", () => {
  it("a map server and a gateway of one Region, each with its own etcd and NATS role, play a session", async () => {
    const svc = servicesFrom(env);
    const zone = unique("z");
    const map = "prontera";
    const [character] = await createCharacters(svc.databaseUrl, [{ name: unique("rp").slice(0, 12), map }]);
    const ms = await startTestServer(
      {
        ...svc,
        etcd: roleAccess(env, "etcd", "map-server", "east"),
        nats: roleAccess(env, "nats", "map-server", "east"),
      },
      { region: "east", zone, pod: "ms-0", maps: [map], prefix: DEFAULT_PREFIX, threads: 1 },
    );
    const gw = await FakeGateway.open(
      svc.natsUrl,
      "east",
      "gw-0",
      roleAccess(env, "nats", "gateway", "east"),
    );
    try {
      const deadline = Date.now() + 20_000;
      while (!(await ms.owns(map)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      expect(ms.server.maps()).toContain(map); // took its etcd ownership key as map-server@east
      const r = await gw.join({ region: "east", zone, map }, randomUUID(), character!);
      expect(r).toMatchObject({ ok: true, owner: "ms-0" });
      // AOI frames reach the gateway: the map server may publish them, the gateway receive them.
      while (gw.frames.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      expect(gw.frames.length).toBeGreaterThan(0);
    } finally {
      await gw.close();
      await ms.close();
    }
  });
});
