// The gateway as a pod runs it: `node workloads/main.ts gateway` with the environment contract
// (static map list, keyset file, NATS), ready on /readyz, serving a client, exposing metrics,
// and closing sessions with `server_shutdown` on SIGTERM.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { expect, inject, it } from "vitest";
import { connectFlagStore } from "../../platform/flags/etcd.ts";
import { closeCodeOf } from "../../platform/protocol/schema.ts";
import { connectNats } from "../../platform/stores/access.ts";
import { keysetFile } from "../../testkit/auth.ts";
import { FlagPublisher } from "../../testkit/flags.ts";
import { testZoneFlags } from "../../testkit/gateway.ts";
import { storeCredentialEnv } from "../../testkit/local/services.ts";
import { StandInMapServer } from "../../testkit/map-server-standin.ts";
import { freePort } from "../../testkit/processes.ts";
import { testServingTls } from "../../testkit/tls.ts";
import { GameClient } from "../client/client.ts";
import { devToken } from "../client/token.ts";
import { ensureEventStream } from "./events.ts";

const env = inject("localEnv");
const main = new URL("../main.ts", import.meta.url).pathname;

async function runGateway(vars: Record<string, string>) {
  const [port, health, metrics] = [await freePort(), await freePort(), await freePort()];
  const child = spawn(process.execPath, [main, "gateway"], {
    env: {
      PATH: process.env.PATH,
      // The stores' credentials and TLS, as the operator renders them into pods.
      ...storeCredentialEnv(env),
      HYBRIDP2P_NATS_URL: env.natsUrl!,
      HYBRIDP2P_GATEWAY_PORT: String(port),
      HYBRIDP2P_HEALTH_PORT: String(health),
      HYBRIDP2P_METRICS_PORT: String(metrics),
      HYBRIDP2P_LISTEN_HOST: "127.0.0.1",
      HYBRIDP2P_DRAIN_DELAY: "0s",
      POD_NAME: "gateway-0",
      // wss, as a Region serves by default (the test process trusts the test CA: testkit/tls.ts).
      HYBRIDP2P_SERVING_TLS_DIR: testServingTls().dir,
      ...vars,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout!.on("data", (d) => {
    out += d;
  });
  child.stderr!.on("data", (d) => {
    out += d;
  });
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`gateway exited ${child.exitCode}: ${out}`);
    const ok = await fetch(`http://127.0.0.1:${health}/readyz`)
      .then((r) => r.status === 200)
      .catch(() => false);
    if (ok) break;
    if (i > 300) {
      child.kill("SIGKILL");
      throw new Error(`gateway never became ready: ${out}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { child, url: `wss://127.0.0.1:${port}`, metrics: `http://127.0.0.1:${metrics}`, output: () => out };
}

it("runs from the environment, serves a client and closes sessions on SIGTERM", async () => {
  const region = `p${randomBytes(4).toString("hex")}`;
  const keys = await keysetFile("gwproc");
  const nc = await connectNats(env.nats!);
  await ensureEventStream(nc);
  const field = new StandInMapServer({ nc, region, zone: "z", maps: ["izlude"] });
  field.start();
  const gw = await runGateway({
    HYBRIDP2P_GATEWAY_MAPS: "z=izlude",
    HYBRIDP2P_AUTH_KEYSET_FILE: keys.path,
    HYBRIDP2P_REGION: region,
  });
  try {
    const c = await GameClient.connect({
      url: gw.url,
      token: await devToken({ keyset: keys.path, characterId: "7", map: "izlude" }),
    });
    expect(c.map).toBe("izlude");
    expect(await c.ping()).toBeGreaterThanOrEqual(0);
    const text = await (await fetch(`${gw.metrics}/metrics`)).text();
    expect(text).toMatch(/hybridp2p_gateway_sessions\{[^}]*\} 1/);
    // Running totals are counters, so rate() works on them.
    expect(text).toContain("# TYPE hybridp2p_gateway_frames_sent_total counter");
    expect(text).toMatch(/hybridp2p_gateway_slow_clients_dropped_total\{[^}]*\} 0/);
    gw.child.kill("SIGTERM");
    expect((await c.closed).code).toBe(closeCodeOf("server_shutdown"));
    const [code] = await once(gw.child, "exit");
    expect(code).toBe(0);
    expect(gw.output()).not.toMatch(/eyJ/); // no token in the logs
  } finally {
    if (gw.child.exitCode === null) gw.child.kill("SIGKILL");
    await field.stop();
    await nc.drain();
  }
});

it("finds maps through the flag plane and holds P2P off until a coordinator is heard", async () => {
  const region = `p${randomBytes(4).toString("hex")}`;
  const namespace = `ns${randomBytes(4).toString("hex")}`;
  const prefix = `/gwproc${randomBytes(4).toString("hex")}/v1/`;
  const etcd = connectFlagStore(env.etcd!);
  const publisher = new FlagPublisher({ client: etcd, identity: "gateway-process-test", prefix });
  await publisher.acquire();
  await publisher.publish({
    zones: [testZoneFlags({ namespace, zone: "z", region, maps: ["alberta"], p2p: true })],
    policies: [],
  });
  const keys = await keysetFile("gwproc2");
  const nc = await connectNats(env.nats!);
  await ensureEventStream(nc);
  const field = new StandInMapServer({ nc, region, zone: "z", maps: ["alberta"], mode: "p2p" });
  field.start();
  const gw = await runGateway({
    HYBRIDP2P_ETCD_ENDPOINTS: env.etcdEndpoints!,
    HYBRIDP2P_FLAG_PREFIX: prefix,
    POD_NAMESPACE: namespace,
    HYBRIDP2P_AUTH_KEYSET_FILE: keys.path,
    HYBRIDP2P_REGION: region,
  });
  try {
    const c = await GameClient.connect({
      url: gw.url,
      token: await devToken({ keyset: keys.path, characterId: "8", map: "alberta" }),
    });
    // The map server and the flags say p2p, but no coordinator replica was ever heard.
    expect(c.map).toBe("alberta");
    expect(c.mode).toBe("server");
    await expect(
      GameClient.connect({
        url: gw.url,
        token: await devToken({ keyset: keys.path, characterId: "9", map: "nowhere" }),
      }),
    ).rejects.toMatchObject({ reason: "map_unavailable" });
    await c.close();
    // The epoch it applied is the one published.
    const text = await (await fetch(`${gw.metrics}/metrics`)).text();
    expect(text).toMatch(/hybridp2p_flags_applied_epoch\{[^}]*\} 1\n/);
    // The pod itself is in p2p (its flags say so); the missing coordinator holds single zones.
    expect(text).toMatch(/hybridp2p_flags_pod_mode\{mode="p2p"[^}]*\} 1\n/);
    expect(text).toMatch(/hybridp2p_flags_pod_mode\{mode="fallback"[^}]*\} 0\n/);
  } finally {
    gw.child.kill("SIGTERM");
    await once(gw.child, "exit");
    await field.stop();
    await nc.drain();
    etcd.close();
  }
});
