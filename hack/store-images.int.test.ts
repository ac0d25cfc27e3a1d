// The operator's managed data stores run on the local cluster: the StatefulSets and Services
// that renderManagedStore makes for etcd, NATS, DragonflyDB and PostgreSQL, with the local
// stand-in images (hack/build-store-images.sh), become Current, and a pod reaches each by its Service
// name. The cluster (a real node on this host) is this file's own.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { V1Pod } from "@kubernetes/client-node";
import { KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import type { Region } from "../operator/api/index.ts";
import { regionPods } from "../operator/render/common.ts";
import { MAP_SERVER_COMPONENT } from "../operator/render/constants.ts";
import { renderManagedStore, storeAddress } from "../operator/render/stores.ts";
import { KubeClient } from "../platform/kube/kube.ts";
import type { KubeObject } from "../platform/kube/meta.ts";
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
// catches up with the endpoints, and serves the results.
const CLIENT = `import net from "node:net"; import http from "node:http";
const out = {};
const retry = async (f) => { let r; for (let i = 0; i < 60; i++) { r = await f().catch((e) => "error " + (e.cause?.code ?? e.code ?? e)); if (!r.startsWith("error")) break; await new Promise((ok) => setTimeout(ok, 500)); } return r; };
const get = (u) => retry(async () => { const r = await fetch(u); return r.status + " " + (await r.text()).slice(0, 30); });
const ping = (u) => retry(() => new Promise((res, rej) => { const s = net.connect(Number(u.port), u.hostname, () => s.write("PING\\r\\n")); s.on("data", (d) => { res(String(d).trim()); s.destroy(); }); s.on("error", rej); }));
out.etcd = await get(process.env.ETCD + "/health");
out.nats = await ping(new URL(process.env.NATS));
out.redis = await ping(new URL(process.env.REDIS));
const pg = (await import("pg")).default;
out.postgres = await retry(async () => { const c = new pg.Client({ connectionString: process.env.PG }); await c.connect(); const r = await c.query("select current_database() as db"); await c.end(); return r.rows[0].db; });
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
    for (const store of STORES) {
      for (const obj of renderManagedStore(region, store)) {
        // No Region object here: without its owner the garbage collector would delete them.
        const { ownerReferences: _, ...metadata } = obj.metadata;
        await client.apply({ ...obj, metadata } as KubeObject);
      }
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
    const etcd = storeAddress(region, "etcd");
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
                { name: "ETCD", value: etcd },
                { name: "NATS", value: storeAddress(region, "nats") },
                { name: "REDIS", value: storeAddress(region, "dragonfly") },
                { name: "PG", value: storeAddress(region, "postgres") },
              ],
              readinessProbe: { tcpSocket: { port: 8080 }, periodSeconds: 1 },
            },
          ],
        },
      },
    });
    const pod = await waitFor("the client", async () => {
      const p = await client.request<V1Pod>("GET", `/api/v1/namespaces/${NS}/pods/client`);
      return p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ? p : undefined;
    });
    const seen = (await (await fetch(`http://${pod.status!.podIP}:8080/`)).json()) as Record<string, string>;
    expect(seen.etcd).toMatch(/^200 .*"health":"true"/);
    // Its client port (the NetworkPolicy admits no other): the server greets with INFO.
    expect(seen.nats).toMatch(/^INFO \{/);
    expect(seen.redis).toBe("+PONG");
    expect(seen.postgres).toBe("hybridp2p");
  }, 300_000);
});
