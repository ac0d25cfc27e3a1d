// The operator secures a Region's managed stores, against a real kube-apiserver and real stores:
// on the first reconcile it generates the Region's CA, certificates and passwords into Secrets
// (typed, labelled, owned by the Region), keeps them as made across reconciles and an operator
// restart, never logs a value; it applies the etcd roles once the Region's etcd answers (an etcd
// started here from the generated Secrets, as the pod would), and its flag plane reaches that
// etcd with its own client certificate and the Region's NATS (a nats-server started from the
// rendered configuration) as its own NATS user.
import { X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect as natsConnect } from "@nats-io/transport-node";
import { Etcd3 } from "etcd3";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { layout } from "../../platform/flags/layout.ts";
import { type KubeClient, resources } from "../../platform/kube/kube.ts";
import type { Manager } from "../../platform/kube/manager.ts";
import type { KubeObject } from "../../platform/kube/meta.ts";
import { createLogger } from "../../platform/log.ts";
import { createNamespace, deleteNamespace, installCrds, testClient, waitFor } from "../../testkit/kube.ts";
import { binDir } from "../../testkit/local/services.ts";
import { freePort, type Proc, startProcess, waitUntil } from "../../testkit/processes.ts";
import { mountSecret as mountSecretIn, startRegionEtcd } from "../../testkit/region-stores.ts";
import { API_VERSION, type Region } from "../api/index.ts";
import { startOperator } from "../main.ts";
import { GENERATED_LABEL } from "../render/constants.ts";
import { planRegionSecrets } from "../render/secrets.ts";
import { regionResource } from "./context.ts";
import { decodeSecret } from "./secrets.ts";

const env = inject("localEnv");
const ns = "op-secrets";
const R = "sec";
let client: KubeClient;
let mgr: Manager | undefined;
const logs: string[] = [];
const work = mkdtempSync(join(tmpdir(), "op-secrets-"));
const procs: Proc[] = [];
const ports = { etcd: 0, nats: 0, natsHttp: 0, etcdPeer: 0 };

const regionObj = (spec: Record<string, unknown> = {}): KubeObject => ({
  apiVersion: API_VERSION,
  kind: "Region",
  metadata: { name: R, namespace: ns },
  spec,
});
const applyRegion = (obj: KubeObject) =>
  client.request<KubeObject>("PATCH", `/apis/${API_VERSION}/namespaces/${ns}/${regionResource.plural}/${R}`, {
    query: { fieldManager: "test-user", force: true },
    body: obj,
    contentType: "application/apply-patch+yaml",
  });
const secret = (name: string) => client.get(resources.secret, ns, name);

function start(): Promise<Manager> {
  return startOperator({
    kubeconfig: env.kubeconfig!,
    namespace: ns,
    leaderElect: false,
    metricsBindAddress: "127.0.0.1:0",
    healthProbeBindAddress: "127.0.0.1:0",
    log: createLogger("operator", { level: "debug", sink: (l) => logs.push(l) }),
    // No pods here: the Region's etcd and NATS run on this host, started below.
    storeEndpoint: (_r, store) =>
      store === "etcd" ? `https://127.0.0.1:${ports.etcd}` : `nats://127.0.0.1:${ports.nats}`,
  });
}

let expected: string[] = [];

beforeAll(async () => {
  for (const k of Object.keys(ports) as Array<keyof typeof ports>) ports[k] = await freePort();
  client = await testClient(env.kubeconfig!);
  await installCrds(client);
  await createNamespace(client, ns);
  mgr = await start();
  expected = planRegionSecrets({ ...regionObj(), spec: {} } as Region).map((p) => p.name);
});

afterAll(async () => {
  await mgr?.stop();
  await Promise.all(procs.map((p) => p.stop()));
  if (client) await deleteNamespace(client, ns);
  client?.close();
  rmSync(work, { recursive: true, force: true });
});

const mountSecret = (name: string) => mountSecretIn(client, ns, name, work);

const snapshot = async () =>
  Object.fromEntries(
    await Promise.all(
      expected.map(async (n) => {
        const s = await secret(n);
        return [
          n,
          { rv: s?.metadata.resourceVersion, uid: s?.metadata.uid, data: s && decodeSecret(s) },
        ] as const;
      }),
    ),
  );

describe("generated Secrets", () => {
  let first: Awaited<ReturnType<typeof snapshot>>;

  it("are made on the Region's first reconcile: typed, labelled, owned by the Region", async () => {
    await applyRegion(regionObj());
    const region = await waitFor(() => client.get(regionResource, ns, R), "region");
    for (const name of expected) await waitFor(() => secret(name), `Secret ${name}`);
    first = await snapshot();
    for (const name of expected) {
      const s = (await secret(name))!;
      expect(s.metadata.labels?.[GENERATED_LABEL], name).toBeDefined();
      expect(s.metadata.labels?.["app.kubernetes.io/managed-by"]).toBe("hybrid-operator");
      expect(s.metadata.ownerReferences).toEqual([
        expect.objectContaining({ kind: "Region", name: R, uid: region.metadata.uid, controller: true }),
      ]);
      expect((s as { type?: string }).type).toBe(name.endsWith("-tls") ? "kubernetes.io/tls" : "Opaque");
    }
    const ca = new X509Certificate(first[`${R}-ca`]!.data!["ca.crt"]!);
    const serving = new X509Certificate(first[`${R}-serving-tls`]!.data!["tls.crt"]!);
    expect(serving.verify(ca.publicKey)).toBe(true);
    expect(serving.checkHost(`${R}-gateway.${ns}.svc`)).toBeDefined();
    expect(serving.checkHost(`${R}-login-server.${ns}.svc.cluster.local`)).toBeDefined();
    expect(new X509Certificate(first[`${R}-etcd-gateway-tls`]!.data!["tls.crt"]!).subject).toBe(
      `CN=hybridp2p-gateway@${R}`,
    );
    expect(first[`${R}-postgres-credentials`]!.data!.username).toBe("hybridp2p");
    expect(first[`${R}-postgres-credentials`]!.data!.password).toMatch(/^[A-Za-z0-9_-]{43}$/);
    // The NATS configuration, named by its content, lists every role's user.
    const cfg = await waitFor(async () => {
      const list = await client.list(resources.secret, ns);
      return list.items.find((s) => s.metadata.name.startsWith(`${R}-nats-config-`));
    }, "NATS configuration Secret");
    const conf = decodeSecret(cfg)["nats.conf"]!;
    expect(conf).toContain(`password: "${first[`${R}-nats-credentials`]!.data!.gateway}"`);
  });

  it("are kept as made across reconciles and an operator restart", async () => {
    await applyRegion(regionObj({ gateway: { replicas: 2 } }));
    await waitFor(async () => {
      const r = await client.get<KubeObject & { status?: { observedGeneration?: number } }>(
        regionResource,
        ns,
        R,
      );
      return r?.status?.observedGeneration === r?.metadata.generation && r!.metadata.generation! > 1
        ? r
        : undefined;
    }, "the edit reconciled");
    await mgr!.stop();
    mgr = await start();
    // A fresh operator reads them (it cannot list Secrets): the Region reconciles again.
    await applyRegion(regionObj({ gateway: { replicas: 3 } }));
    await waitFor(async () => {
      const r = await client.get<KubeObject & { status?: { observedGeneration?: number } }>(
        regionResource,
        ns,
        R,
      );
      return r?.status?.observedGeneration === r?.metadata.generation && r!.metadata.generation! > 2
        ? r
        : undefined;
    }, "the second edit reconciled");
    expect(await snapshot()).toEqual(first);
  });

  it("apply the etcd roles once the Region's etcd answers; the operator publishes there as itself", async () => {
    const url = `https://127.0.0.1:${ports.etcd}`;
    const etcdProc = await startRegionEtcd({
      client,
      namespace: ns,
      region: R,
      port: ports.etcd,
      peerPort: ports.etcdPeer,
      dir: work,
    });
    procs.push(etcdProc);
    // Play the StatefulSet controller: the etcd pod is ready.
    const sts = (await client.get(resources.statefulSet, ns, `${R}-etcd`))!;
    await client.patchStatus(resources.statefulSet, ns, `${R}-etcd`, {
      observedGeneration: sts.metadata.generation,
      replicas: 1,
      readyReplicas: 1,
      availableReplicas: 1,
    });
    const as = async (role: string) => {
      const d = await mountSecret(`${R}-etcd-${role}-tls`);
      return new Etcd3({
        hosts: [url],
        credentials: {
          rootCertificate: readFileSync(join(d, "ca.crt")),
          certChain: readFileSync(join(d, "tls.crt")),
          privateKey: readFileSync(join(d, "tls.key")),
        },
      });
    };
    const gateway = await as("gateway");
    const root = await as("root");
    try {
      // Auth on: the gateway may read flags but not write them.
      // (Before the roles, auth is off and the write goes through: only the Region's CA gets in.)
      await waitUntil(etcdProc, "etcd roles applied", async () => {
        try {
          await gateway.put("/hybridp2p/v1/flags/x").value("1");
          return false;
        } catch (e) {
          return /permission denied/i.test(String(e));
        }
      });
      // ...and may still read them (a denied read would throw).
      await gateway.get("/hybridp2p/v1/flags/x").string();
      expect((await root.getRoles()).map((r) => r.name)).toContain(`hybridp2p-map-server@${R}`);
      // The flag plane published this Region's flags with the operator's own certificate.
      await waitUntil(
        etcdProc,
        "flags published",
        async () => (await root.get(layout().pointer).string()) !== null,
      );
      // Plaintext to the TLS port is refused.
      await expect(fetch(`http://127.0.0.1:${ports.etcd}/health`)).rejects.toThrow();
    } finally {
      gateway.close();
      root.close();
    }
  });

  it("give the operator its own NATS user on the Region's NATS; other roles keep to their subjects", async () => {
    const server = await mountSecret(`${R}-nats-server-tls`);
    const cfg = (await client.list(resources.secret, ns)).items.find((s) =>
      s.metadata.name.startsWith(`${R}-nats-config-`),
    )!;
    // The pod's paths and ports, moved to this host's.
    const conf = decodeSecret(cfg)
      ["nats.conf"]!.replaceAll("/etc/hybridp2p/tls/server", server)
      .replace(/^port: \d+/m, `port: ${ports.nats}`)
      .replace(/^http_port: \d+/m, `http_port: ${ports.natsHttp}`)
      .replace('store_dir: "/data"', `store_dir: ${JSON.stringify(join(work, "js"))}`);
    writeFileSync(join(work, "nats.conf"), conf, { mode: 0o600 });
    const natsProc = startProcess(
      "region-nats",
      join(binDir(), "nats-server"),
      ["-c", join(work, "nats.conf")],
      join(work, "nats.log"),
    );
    procs.push(natsProc);
    await waitUntil(natsProc, "the operator on the Region's NATS as hybridp2p-operator", async () => {
      const connz = await fetch(`http://127.0.0.1:${ports.natsHttp}/connz?auth=true`).then((r) => r.json());
      return (
        (connz as { connections?: Array<{ authorized_user?: string }> }).connections?.some(
          (c) => c.authorized_user === "hybridp2p-operator",
        ) === true
      );
    });
    const ca = join(await mountSecret(`${R}-ca`), "ca.crt");
    const pw = first[`${R}-nats-credentials`]!.data!;
    const servers = `nats://127.0.0.1:${ports.nats}`;
    await expect(natsConnect({ servers, tls: { caFile: ca }, reconnect: false })).rejects.toThrow(
      /authoriz/i,
    );
    const gw = await natsConnect({
      servers,
      user: `hybridp2p-gateway@${R}`,
      pass: pw.gateway,
      tls: { caFile: ca },
    });
    const denied = new Promise<string>((resolve) => {
      void (async () => {
        for await (const s of gw.status())
          if (s.type === "error") resolve(String((s as { error?: unknown }).error));
      })();
    });
    // A map server's subject: the gateway may not publish on it.
    gw.publish(`hp2p.${R}.prontera.0.aoi.x`, "spoof");
    expect(await denied).toMatch(/permissions violation/i);
    await gw.close();
  });

  it("never log a generated value", () => {
    expect(logs.length).toBeGreaterThan(0);
    expect(logs.join("\n")).toContain("generated secrets");
    const all = logs.join("\n");
    for (const [name, s] of Object.entries(first)) {
      for (const [k, v] of Object.entries(s.data ?? {})) {
        if (k === "username" || k === "ca.crt" || k === "tls.crt") continue; // public
        for (const line of v.split("\n").filter((l) => l.length > 20 && !l.startsWith("-----")))
          expect(all.includes(line), `${name}/${k} in the log`).toBe(false);
      }
    }
  });
});
