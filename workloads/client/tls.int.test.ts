// The player-facing hops over TLS, with the workloads as pods run them: `node workloads/main.ts
// <name>` serving the certificate HYBRIDP2P_SERVING_TLS_DIR names (a throwaway CA made with the
// openssl CLI, laid out as a kubernetes.io/tls Secret). A client given the CA logs in (https),
// plays through the gateway (wss) and joins the coordinator (wss); a client without it, or with
// another CA, is refused for the certificate; plain ws/http to the TLS ports gets nothing; a
// rotated certificate is served without a restart. This file trusts nothing by default (it
// never calls testkit's testCa), so "without the CA" means what it says.
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { cpSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect as tlsConnect } from "node:tls";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { connectNats, requireStoreAccess } from "../../platform/stores/access.ts";
import { createServingServer } from "../../platform/tls.ts";
import { freshDatabase, keysetFile, uniquePrefix } from "../../testkit/auth.ts";
import { envVars } from "../../testkit/local/services.ts";
import { StandInMapServer } from "../../testkit/map-server-standin.ts";
import { freePort } from "../../testkit/processes.ts";
import { RoTestPlayer } from "../../testkit/ro/client.ts";
import { makeTestCa, type TestCa } from "../../testkit/tls.ts";
import { AuthClient } from "../auth/client.ts";
import { RoTickets } from "../auth/ro-tickets.ts";
import { ensureEventStream } from "../gateway/events.ts";
import { createRedis } from "../runtime/redis.ts";
import { runBots } from "./bots.ts";
import { GameClient } from "./client.ts";
import { nodeFetch } from "./https.ts";
import { MeshClient } from "./mesh.ts";
import { devToken } from "./token.ts";
import { nodeSocketWith } from "./ws.ts";

const env = inject("localEnv");
const main = new URL("../main.ts", import.meta.url).pathname;
const children: ChildProcess[] = [];
const stops: Array<() => Promise<unknown>> = [];
// Whatever the caller's shell says, "no CA" here means the system's trust only.
delete process.env.HYBRIDP2P_CA_FILE;

/** Starts a workload process and waits for /readyz on its ops port (plain http, as kubelet probes it). */
async function startWorkload(name: string, portVar: string, vars: Record<string, string>) {
  const [port, health, metrics] = [await freePort(), await freePort(), await freePort()];
  const child = spawn(process.execPath, [main, name], {
    env: {
      PATH: process.env.PATH,
      ...vars,
      [portVar]: String(port),
      HYBRIDP2P_HEALTH_PORT: String(health),
      HYBRIDP2P_METRICS_PORT: String(metrics),
      HYBRIDP2P_LISTEN_HOST: "127.0.0.1",
      HYBRIDP2P_DRAIN_DELAY: "0s",
      HYBRIDP2P_LOG_LEVEL: "warn",
      POD_NAME: `${name}-0`,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.push(child);
  let out = "";
  child.stdout!.on("data", (d) => {
    out += d;
  });
  child.stderr!.on("data", (d) => {
    out += d;
  });
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`${name} exited ${child.exitCode}: ${out}`);
    const ok = await fetch(`http://127.0.0.1:${health}/readyz`)
      .then((r) => r.status === 200)
      .catch(() => false);
    if (ok) break;
    if (i > 300) throw new Error(`${name} never became ready: ${out}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return { port, output: () => out };
}

let ca: TestCa;
let keys: Awaited<ReturnType<typeof keysetFile>>;
const region = `tls${randomBytes(3).toString("hex")}`;
const urls = { login: "", char: "", gateway: "", coordinator: "" };
const ports = { login: 0, char: 0, gateway: 0, coordinator: 0, roMap: 0 };
let redisPrefix = "";

beforeAll(async () => {
  ca = makeTestCa("tls-int");
  keys = await keysetFile("tls");
  redisPrefix = uniquePrefix("tls");
  ports.roMap = await freePort();
  // Static map lists, no flag plane: the stores' variables without etcd's.
  const stores = Object.fromEntries(
    Object.entries(envVars(env)).filter(([k]) => !k.startsWith("HYBRIDP2P_ETCD_")),
  );
  const common = {
    ...stores,
    HYBRIDP2P_REGION: region,
    HYBRIDP2P_AUTH_KEYSET_FILE: keys.path,
    HYBRIDP2P_REDIS_PREFIX: redisPrefix,
    HYBRIDP2P_SERVING_TLS_DIR: ca.servingDir,
  };
  const nc = await connectNats(env.nats!);
  await ensureEventStream(nc);
  const field = new StandInMapServer({ nc, region, zone: "z", maps: ["prontera"] });
  field.start();
  stops.push(
    async () => field.stop(),
    () => nc.drain(),
  );
  const db = await freshDatabase(env.databaseUrl!, "tls");
  const auth = {
    ...common,
    HYBRIDP2P_DATABASE_URL: db,
    HYBRIDP2P_SCRYPT_LOG_N: "10",
    HYBRIDP2P_SCRYPT_P: "1",
    HYBRIDP2P_GATEWAY_ADDRESS: "127.0.0.1:7000",
  };
  const [login, char, gateway, coordinator] = await Promise.all([
    startWorkload("login-server", "HYBRIDP2P_LOGIN_PORT", auth),
    startWorkload("char-server", "HYBRIDP2P_CHAR_PORT", auth),
    startWorkload("gateway", "HYBRIDP2P_GATEWAY_PORT", {
      ...common,
      HYBRIDP2P_GATEWAY_MAPS: "z=prontera",
      // The RO map endpoint: its bridge dials this gateway's own wss listener (loopbackTls).
      HYBRIDP2P_RO_MAP_PORT: String(ports.roMap),
      // Development tokens have no login session behind them.
      HYBRIDP2P_GATEWAY_CHECK_SESSIONS: "false",
    }),
    startWorkload("coordinator", "HYBRIDP2P_COORDINATOR_PORT", {
      ...common,
      HYBRIDP2P_COORDINATOR_MAPS: "z=prontera",
      HYBRIDP2P_COORDINATOR_LOCATE: "false",
      HYBRIDP2P_COORDINATOR_CHECK_SESSIONS: "false",
    }),
  ]);
  ports.login = login.port;
  ports.char = char.port;
  ports.gateway = gateway.port;
  ports.coordinator = coordinator.port;
  urls.login = `https://127.0.0.1:${login.port}`;
  urls.char = `https://127.0.0.1:${char.port}`;
  urls.gateway = `wss://127.0.0.1:${gateway.port}`;
  urls.coordinator = `wss://localhost:${coordinator.port}`;
});

afterAll(async () => {
  for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
  for (const s of stops.reverse()) await s().catch(() => undefined);
});

const CERT_ERROR = /SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT/;

describe("player-facing TLS", () => {
  it("a client given the Region's CA signs up and logs in (https) and plays through the gateway (wss)", async () => {
    const fleet = await runBots({
      count: 2,
      gatewayUrl: urls.gateway,
      maps: ["prontera"],
      accounts: { loginUrl: urls.login, charUrl: urls.char },
      idPrefix: "tlsbot",
      decodeMode: "full",
      moveEveryMs: 0,
      failFast: true,
      tls: { caFile: ca.caFile },
    });
    stops.push(() => fleet.stop());
    expect(fleet.stats()).toMatchObject({ connected: 2, failed: 0 });
    const c = fleet.clients[0]!;
    expect(c.map).toBe("prontera");
    expect(await c.ping()).toBeGreaterThanOrEqual(0);
  });

  it("a client given the CA's PEM (not a file) joins the coordinator's signaling over wss", async () => {
    const token = await devToken({ keyset: keys.path, characterId: "77", map: "prontera" });
    const mesh = new MeshClient({
      urls: [urls.coordinator],
      tls: { ca: ca.caPem },
      token,
      session: "s-77",
      entity: 77,
      position: () => ({ x: 10, y: 10 }),
    });
    mesh.start();
    stops.push(async () => mesh.stop("test over"));
    for (let i = 0; i < 100 && mesh.status !== "p2p"; i++) await new Promise((r) => setTimeout(r, 100));
    expect(mesh.status).toBe("p2p");
  });

  it("the gateway's RO bridge reaches its own wss listener (the one plaintext hop stays RO's own)", async () => {
    const redis = createRedis(requireStoreAccess("dragonfly", env.redisUrl!));
    stops.push(async () => redis.disconnect());
    const ticket = {
      accountId: "2000501",
      characterId: "501",
      loginId1: 4242,
      token: await devToken({ keyset: keys.path, characterId: "501", map: "prontera" }),
      baseExp: "0",
      zeny: "0",
    };
    await new RoTickets(redis, redisPrefix).putMap(ticket, 30_000);
    const player = new RoTestPlayer("127.0.0.1");
    player.accountId = 2000501;
    player.loginId1 = 4242;
    const accepted = await player.enterMap(ports.roMap, 501);
    player.map?.close();
    // Refused (0x0081 mapRefused) when the bridge cannot open its wss session.
    expect(accepted.type).toBe("mapAccept");
  });

  it("a client without the CA, or with another CA, is refused for the certificate", async () => {
    const token = await devToken({ keyset: keys.path, characterId: "78", map: "prontera" });
    const other = makeTestCa("other");
    for (const tls of [undefined, { caFile: other.caFile }]) {
      const err = await GameClient.connect({ url: urls.gateway, token, tls }).then(
        () => undefined,
        (e: Error & { code?: string }) => e,
      );
      expect(err?.code).toMatch(CERT_ERROR);
      expect(err?.message).toMatch(/certificate is not trusted.*--ca-file/);
      await expect(nodeSocketWith(tls)(urls.coordinator, 5000)).rejects.toMatchObject({
        code: expect.stringMatching(CERT_ERROR),
      });
    }
    // The login server: the global fetch (no CA given) and node:https with the wrong CA.
    const noCa = await new AuthClient({ loginUrl: urls.login, charUrl: urls.char, fetch: nodeFetch() })
      .signUp("nocauser", "no-ca-password")
      .then(
        () => undefined,
        (e: Error & { code?: string }) => e,
      );
    expect(noCa?.code).toMatch(CERT_ERROR);
    expect(noCa?.message).toMatch(/certificate is not trusted/);
    const wrongCa = await new AuthClient({
      loginUrl: urls.login,
      charUrl: urls.char,
      fetch: nodeFetch({ caFile: other.caFile }),
    })
      .signUp("wrongca", "wrong-ca-password")
      .then(
        () => undefined,
        (e: Error & { code?: string }) => e,
      );
    expect(wrongCa?.code).toMatch(CERT_ERROR);
  });

  it("a certificate for another name is refused, and serverName checks it against a name it holds", async () => {
    const token = await devToken({ keyset: keys.path, characterId: "79", map: "prontera" });
    await expect(
      GameClient.connect({
        url: urls.gateway,
        token,
        tls: { caFile: ca.caFile, serverName: "gateway.example" },
      }),
    ).rejects.toMatchObject({ code: "ERR_TLS_CERT_ALTNAME_INVALID" });
    const c = await GameClient.connect({
      url: urls.gateway,
      token,
      tls: { caFile: ca.caFile, serverName: "localhost" },
    });
    await c.close();
  });

  it("plain ws and http to the TLS ports get nothing", async () => {
    const token = await devToken({ keyset: keys.path, characterId: "80", map: "prontera" });
    for (const port of [ports.gateway, ports.coordinator]) {
      await expect(
        GameClient.connect({ url: `ws://127.0.0.1:${port}`, token, timeoutMs: 5000 }),
      ).rejects.toThrow();
    }
    for (const port of [ports.login, ports.char]) {
      const outcome = await fetch(`http://127.0.0.1:${port}/v1/accounts`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ username: "plainuser", password: "plain-password" }),
        signal: AbortSignal.timeout(5000),
      }).then(
        (r) => r.status,
        () => "refused",
      );
      // Node's TLS server drops a plaintext request (or answers 400): never a served request.
      expect([400, "refused"]).toContain(outcome);
    }
  });

  it("says which files it needs when the directory has no key pair", () => {
    expect(() => createServingServer(() => {}, { dir: join(tmpdir(), "no-such-tls-dir") })).toThrow(
      /cannot read .*no-such-tls-dir\/tls\.crt \(ENOENT\); HYBRIDP2P_SERVING_TLS_DIR must name a directory with tls\.crt and tls\.key/,
    );
  });

  it("serves a rotated certificate to new connections without a restart", async () => {
    const dir = mkdtempSync(join(tmpdir(), "hybridp2p-rotate-"));
    cpSync(ca.servingDir, dir, { recursive: true });
    const server = createServingServer((_req, res) => res.end("ok"), { dir, reloadMs: 100 });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    stops.push(() => new Promise((r) => server.close(r)));
    const port = (server.address() as { port: number }).port;
    const serial = () =>
      new Promise<string>((resolve, reject) => {
        const s = tlsConnect({ port, host: "127.0.0.1", ca: ca.caPem, servername: "localhost" }, () => {
          resolve(s.getPeerCertificate().serialNumber);
          s.end();
        });
        s.on("error", reject);
      });
    const before = await serial();
    const next = ca.issue("rotated");
    // Half a rotation (the new certificate beside the old key) is refused: the old pair stays.
    cpSync(join(next, "tls.crt"), join(dir, "tls.crt"));
    await new Promise((r) => setTimeout(r, 500));
    expect(await serial()).toBe(before);
    cpSync(join(next, "tls.key"), join(dir, "tls.key"));
    let after = before;
    for (let i = 0; i < 50 && after === before; i++) {
      await new Promise((r) => setTimeout(r, 100));
      after = await serial();
    }
    expect(after).not.toBe(before);
  });
});
