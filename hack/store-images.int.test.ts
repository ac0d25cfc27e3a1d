// The operator's managed data stores run on the local cluster: the StatefulSets and Services
// that renderManagedStore makes for etcd, NATS, DragonflyDB and PostgreSQL, with the local
// stand-in images (hack/build-store-images.sh) and the Secrets the operator generates, become
// Current, and a pod reaches each by its Service name over TLS with its credentials, and is
// refused without them. The cluster (a real node on this host) is this file's own.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { V1Pod } from "@kubernetes/client-node";
import { KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import type { Region } from "../operator/api/index.ts";
import { regionPods } from "../operator/render/common.ts";
import { MAP_SERVER_COMPONENT } from "../operator/render/constants.ts";
import { generatedSecret, planRegionSecrets } from "../operator/render/secrets.ts";
import { renderManagedStore, storeWiring } from "../operator/render/stores.ts";
import { caFromData, generateData } from "../operator/secrets/generate.ts";
import type { KeyPair } from "../operator/secrets/pki.ts";
import { KubeClient } from "../platform/kube/kube.ts";
import type { KubeObject } from "../platform/kube/meta.ts";
import { GENERATED_SECRET } from "../platform/stores/generated.ts";
import { computeStatus } from "../testkit/kstatus.ts";
import { buildImages, type Running, startLocalEnv } from "../testkit/local/services.ts";

const repoRoot = new URL("..", import.meta.url).pathname;
const NS = "store-images-int";
const STORES = ["etcd", "nats", "dragonfly", "postgres"] as const;
const WORKLOAD_IMAGE = "ghcr.io/hybrid-p2p/workload:0.1.0";
let running: Running | undefined;
let client: KubeClient;

// The example Region, moved to this test's namespace.
const region = (() => {
  const docs = parseAllDocuments(readFileSync(join(repoRoot, "examples/demo-region.yaml"), "utf8"));
  const r = docs.map((d) => d.toJS()).find((o) => o?.kind === "Region") as Region;
  return { ...r, metadata: { ...r.metadata, namespace: NS } } as Region;
})();

// Checks each store the way its clients first touch it, retrying as clients do while DNS
// catches up with the endpoints, and serves the results: with the map server's credentials
// over TLS, and without them (or in plaintext) to see the refusal. (pg lets the connection
// string override a password given beside it: the password goes into the URL.)
const CLIENT = `import net from "node:net"; import tls from "node:tls"; import http from "node:http"; import https from "node:https"; import fs from "node:fs";
const out = {};
const env = process.env;
const dir = (s) => env["HYBRIDP2P_" + s + "_TLS_DIR"];
const ca = (s) => fs.readFileSync(dir(s) + "/ca.crt");
const retry = async (f) => { let r; for (let i = 0; i < 60; i++) { r = await f().catch((e) => "error " + (e.cause?.code ?? e.code ?? e.message ?? e)); if (!r.startsWith("error")) break; await new Promise((ok) => setTimeout(ok, 500)); } return r; };
const get = (u, opts) => new Promise((res, rej) => https.get(u, opts, (r) => { let b = ""; r.on("data", (d) => (b += d)); r.on("end", () => res(r.statusCode + " " + b.slice(0, 30))); }).on("error", rej));
const talk = (u, secure, line) => new Promise((res, rej) => { const o = { host: u.hostname, port: Number(u.port), servername: u.hostname, ca: ca("DRAGONFLY") }; const s = secure ? tls.connect(o, () => s.write(line)) : net.connect(o.port, o.host, () => s.write(line)); let b = ""; const done = () => { res(b.trim() || "closed"); s.destroy(); }; setTimeout(done, 1000); s.on("data", (d) => { b += d; }); s.on("error", rej); s.on("close", done); });
const etcdTls = { ca: ca("ETCD"), cert: fs.readFileSync(dir("ETCD") + "/tls.crt"), key: fs.readFileSync(dir("ETCD") + "/tls.key") };
out.etcd = await retry(() => get(env.HYBRIDP2P_ETCD_ENDPOINTS + "/health", etcdTls));
out.etcdNoCert = await get(env.HYBRIDP2P_ETCD_ENDPOINTS + "/health", { ca: ca("ETCD") }).catch((e) => "refused " + (e.code ?? e.message));
const { connect } = await import("@nats-io/transport-node");
out.nats = await retry(async () => { const nc = await connect({ servers: env.HYBRIDP2P_NATS_URL, user: env.HYBRIDP2P_NATS_USERNAME, pass: env.HYBRIDP2P_NATS_PASSWORD, tls: { caFile: dir("NATS") + "/ca.crt" } }); await nc.close(); return "connected"; });
out.natsNoPass = await connect({ servers: env.HYBRIDP2P_NATS_URL, tls: { caFile: dir("NATS") + "/ca.crt" }, reconnect: false }).then(() => "connected", (e) => "refused " + e.message);
const redis = new URL(env.HYBRIDP2P_REDIS_URL);
out.redis = await retry(() => talk(redis, true, "AUTH " + env.HYBRIDP2P_DRAGONFLY_PASSWORD + "\\r\\nPING\\r\\n"));
out.redisNoPass = await talk(redis, true, "PING\\r\\n").catch((e) => "refused " + e.message);
out.redisPlain = await talk(redis, false, "PING\\r\\n").catch((e) => "refused " + (e.code ?? e.message));
const pg = (await import("pg")).default;
const pgc = (pw, ssl) => async () => { const u = new URL(env.HYBRIDP2P_DATABASE_URL); u.password = encodeURIComponent(pw); const c = new pg.Client({ connectionString: u.toString(), ssl }); await c.connect(); const r = await c.query("select current_database() as db"); await c.end(); return r.rows[0].db; };
out.postgres = await retry(pgc(env.HYBRIDP2P_POSTGRES_PASSWORD, { ca: ca("POSTGRES") }));
out.postgresPlain = await pgc(env.HYBRIDP2P_POSTGRES_PASSWORD, false)().catch((e) => "refused " + e.message);
http.createServer((q, r) => r.end(JSON.stringify(out))).listen(8080);`;

async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs = 150_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

beforeAll(async () => {
  running = await startLocalEnv({
    services: ["kube", "cluster"],
    images: buildImages(["build-images.sh", "workload"], ["build-store-images.sh"]),
  });
  const kc = new KubeConfig();
  kc.loadFromFile(running.env.kubeconfig!);
  client = await new KubeClient(kc).init();
  await client.request("POST", "/api/v1/namespaces", { body: { metadata: { name: NS } } });
  await waitFor("the default ServiceAccount", () =>
    client.request("GET", `/api/v1/namespaces/${NS}/serviceaccounts/default`),
  );
}, 600_000);

afterAll(async () => {
  client?.close();
  await running?.stop();
}, 120_000);

describe("managed data stores on the local cluster", () => {
  it("run as the operator renders them and answer by their Service names", async () => {
    // No Region object here: without their owner the garbage collector would delete them.
    const unowned = (obj: KubeObject) => {
      const { ownerReferences: _, ...metadata } = obj.metadata;
      return { ...obj, metadata } as KubeObject;
    };
    // The Secrets the operator generates on the Region's first reconcile.
    let ca: KeyPair | undefined;
    const generated = new Map<string, Record<string, string>>();
    for (const plan of planRegionSecrets(region)) {
      const data = await generateData(plan, ca);
      if (plan.kind === "ca") ca = caFromData(data);
      generated.set(plan.name, data);
      await client.apply(unowned(generatedSecret(region, plan, data)));
    }
    const natsPasswords = generated.get(GENERATED_SECRET.credentials(region.metadata!.name!, "nats"))!;
    for (const store of STORES) {
      for (const obj of renderManagedStore(region, store, { natsPasswords }))
        await client.apply(unowned(obj));
    }
    for (const store of STORES) {
      await waitFor(`the ${store} StatefulSet to be Current`, async () => {
        const list = await client.request<{ items: KubeObject[] }>(
          "GET",
          `/apis/apps/v1/namespaces/${NS}/statefulsets`,
        );
        const sts = list.items.find((s) => s.metadata.name.endsWith(store));
        return sts && computeStatus(sts).status === "Current" ? sts : undefined;
      });
    }
    // The map server's wiring: it uses all four stores.
    const wiring = storeWiring(region, MAP_SERVER_COMPONENT);
    await client.request("POST", `/api/v1/namespaces/${NS}/pods`, {
      body: {
        // Labelled as the region's map server, a client each store's NetworkPolicy admits (the
        // local node enforces them).
        metadata: {
          name: "client",
          labels: regionPods(region.metadata!.name!, MAP_SERVER_COMPONENT).podSelector.matchLabels,
        },
        spec: {
          containers: [
            {
              name: "main",
              // The workload image: its node_modules has the PostgreSQL client.
              image: WORKLOAD_IMAGE,
              command: ["node", "--input-type=module", "-e", CLIENT],
              env: [
                ...Object.entries(wiring.config).map(([name, value]) => ({ name, value })),
                ...wiring.secretEnv,
              ],
              volumeMounts: wiring.volumeMounts,
              readinessProbe: { tcpSocket: { port: 8080 }, periodSeconds: 1 },
            },
          ],
          volumes: wiring.volumes,
        },
      },
    });
    const pod = await waitFor("the client", async () => {
      const p = await client.request<V1Pod>("GET", `/api/v1/namespaces/${NS}/pods/client`);
      return p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ? p : undefined;
    });
    const seen = (await (await fetch(`http://${pod.status!.podIP}:8080/`)).json()) as Record<string, string>;
    expect(seen.etcd).toMatch(/^200 .*"health":"true"/);
    expect(seen.etcdNoCert).toMatch(/^refused|^4\d\d/);
    expect(seen.nats).toBe("connected");
    expect(seen.natsNoPass).toMatch(/^refused .*authorization/i);
    expect(seen.redis).toBe("+OK\r\n+PONG");
    expect(seen.redisNoPass).toMatch(/NOAUTH/);
    expect(seen.redisPlain).not.toMatch(/PONG|NOAUTH/);
    expect(seen.postgres).toBe("hybridp2p");
    expect(seen.postgresPlain).toMatch(/^refused .*(no pg_hba.conf entry|no encryption)/);
  }, 300_000);
});
