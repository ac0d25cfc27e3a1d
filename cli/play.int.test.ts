// `hybridctl bots` and `hybridctl token` against a real gateway (stand-in map server on real
// NATS) and a Zone read from the real API server.
import { randomUUID } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { CustomObjectsApi, KubeConfig } from "@kubernetes/client-node";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { GROUP, VERSION } from "../operator/api/constants.ts";
import { connectNats } from "../platform/stores/access.ts";
import { startTestGateway } from "../testkit/gateway.ts";
import { createNamespace, installCrds, testClient } from "../testkit/kube.ts";
import { StandInMapServer } from "../testkit/map-server-standin.ts";
import { makeTestCa, testCa } from "../testkit/tls.ts";
import { GameClient } from "../workloads/client/client.ts";
import { ensureEventStream } from "../workloads/gateway/events.ts";
import { staticDirectory } from "../workloads/gateway/gateway.ts";
import type { Io } from "./common.ts";
import { run } from "./hybridctl.ts";

const env = inject("localEnv");

describe("hybridctl bots and token", () => {
  const ns = `play-${randomUUID().slice(0, 8)}`;
  const keysetFile = join(env.stateDir, `keyset-${ns}.json`);
  let gw: Awaited<ReturnType<typeof startTestGateway>>;
  let nc: NatsConnection;
  let field: StandInMapServer;

  const ctl = async (...args: string[]) => {
    const out: string[] = [];
    const err: string[] = [];
    const io: Io = { out: (s) => out.push(s), err: (s) => err.push(s) };
    const code = await run([...args, "--kubeconfig", env.kubeconfig!], io);
    return { code, out: out.join("\n"), err: err.join("\n") };
  };
  /** `hybridctl bots` with development tokens. */
  const bots = (count: number, zone: string, ...more: string[]) =>
    ctl(
      "bots",
      "--count",
      String(count),
      "--zone",
      zone,
      "-n",
      ns,
      "--gateway",
      gw.url,
      "--keyset",
      keysetFile,
      ...more,
    );

  beforeAll(async () => {
    const client = await testClient(env.kubeconfig!);
    await installCrds(client);
    await createNamespace(client, ns);
    const kc = new KubeConfig();
    kc.loadFromFile(env.kubeconfig!);
    await kc.makeApiClient(CustomObjectsApi).createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: ns,
      plural: "zones",
      body: {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: "Zone",
        metadata: { name: "fields", namespace: ns },
        spec: { regionRef: { name: "r1" }, maps: [{ name: "pay_fild01", type: "Field" }] },
      },
    });
    gw = await startTestGateway({
      natsUrl: env.natsUrl!,
      directory: staticDirectory({ fields: ["pay_fild01"] }),
    });
    writeFileSync(keysetFile, JSON.stringify(gw.keyset));
    nc = await connectNats(env.nats!);
    await ensureEventStream(nc);
    field = new StandInMapServer({
      nc,
      region: gw.region,
      zone: "fields",
      maps: ["pay_fild01"],
      mode: "server",
    });
    field.start();
  });

  afterAll(async () => {
    await field?.stop();
    await gw?.stop();
    await nc?.drain();
  });

  it("connects N bots to the zone's maps and reports what they saw", async () => {
    const r = await bots(5, "fields", "--duration", "3");
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    expect(r.out).toContain("pay_fild01");
    const last = r.out.trim().split("\n").at(-1)!;
    expect(last).toMatch(/connected=5 failed=0 closed=\d+ aoi=[1-9]\d* seq_errors=0 /);
  });

  it("trusts the CA --ca-file names; with another CA every bot fails and the first failure says why", async () => {
    // The gateway serves wss from the suite's test CA (testkit/gateway.ts).
    const ok = await bots(2, "fields", "--duration", "1", "--ca-file", testCa().caFile);
    expect(ok.code).toBe(0);
    expect(ok.out.trim().split("\n").at(-1)).toMatch(/connected=2 failed=0 /);
    const other = await bots(2, "fields", "--duration", "1", "--ca-file", makeTestCa("other").caFile);
    expect(other.out.trim().split("\n").at(-1)).toMatch(/connected=0 failed=2 /);
    expect(other.err).toMatch(/first failure: .*certificate is not trusted \(SELF_SIGNED_CERT_IN_CHAIN/);
    const missing = await bots(1, "fields", "--ca-file", join(env.stateDir, "no-such-ca.crt"));
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/the CA file .*no-such-ca\.crt cannot be read: ENOENT/);
  });

  it("asks for exactly one way of getting tokens", async () => {
    const r = await ctl("bots", "--count", "1", "--zone", "fields", "-n", ns, "--gateway", gw.url);
    expect(r.code).toBe(1);
    expect(r.err).toContain(
      "give either --login and --char (real accounts) or --keyset (development tokens)",
    );
  });

  it("asks for a coordinator when some bots are P2P", async () => {
    const r = await bots(2, "fields", "--p2p-share", "0.5");
    expect(r.code).toBe(1);
    expect(r.err).toContain("--p2p-share needs --coordinator <url>");
  });

  it("names a missing zone instead of connecting anything", async () => {
    const r = await bots(1, "nope");
    expect(r.code).toBe(1);
    expect(r.err).toContain(`zone ${ns}/nope not found`);
  });

  it("signs a development token the gateway accepts", async () => {
    const r = await ctl("token", "--keyset", keysetFile, "--character", "4242", "--map", "pay_fild01");
    expect(r.code).toBe(0);
    const client = await GameClient.connect({ url: gw.url, token: r.out.trim() });
    try {
      expect(client.map).toBe("pay_fild01");
    } finally {
      await client.close();
    }
  });
});
