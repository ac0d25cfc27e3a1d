// The local cluster runs pods: kube-scheduler and kube-controller-manager against the shared
// apiserver, the node agent with podman (the local base image) and a second agent running pods
// as local processes. A Deployment gets Running, Ready pods with the downward API and ConfigMap
// values in their environment; a deleted pod is stopped and replaced; exit codes are reported.
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import type { V1Pod } from "@kubernetes/client-node";
import { KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { KubeClient } from "../../operator/runtime/kube.ts";
import { pollUntil } from "../../platform/time.ts";
import { computeStatus, type KObject } from "../../testkit/kstatus.ts";
import { startCluster } from "../../testkit/local/services.ts";
import { freePort, type Proc } from "../../testkit/processes.ts";
import { NodeAgent } from "./agent.ts";

const env = inject("localEnv");
const repoRoot = new URL("../..", import.meta.url).pathname;
const NS = "node-agent-int";
const PODMAN_NODE = "agent-int-podman";
const PROCESS_NODE = "agent-int-process";
const WORKLOAD_IMAGE = "ghcr.io/hybrid-p2p/workload:0.1.0";

// Asks the API server who it is, through client-node's default loading (in-cluster config in a
// podman pod, the agent's KUBECONFIG for a process), as the operator does; then serves the answer.
const WHOAMI = `import { AuthenticationV1Api, KubeConfig } from "@kubernetes/client-node";
import { createServer } from "node:http";
const kc = new KubeConfig();
kc.loadFromDefault();
let who;
try {
  const r = await kc.makeApiClient(AuthenticationV1Api).createSelfSubjectReview({ body: { apiVersion: "authentication.k8s.io/v1", kind: "SelfSubjectReview" } });
  who = r.status.userInfo.username;
} catch (e) { who = "error: " + e; }
createServer((q, r) => r.end(who)).listen(Number(process.env.PORT));`;

// Answers /readyz, and everything else with its environment as JSON.
const SERVER = `require("http").createServer((q, r) => r.end(q.url === "/readyz" ? "ok" : JSON.stringify(process.env))).listen(Number(process.env.PORT))`;

let client: KubeClient;
let procs: Proc[] = [];
let processAgent: NodeAgent;
let baseImage: string;

const api = <T>(method: string, path: string, body?: unknown) => client.request<T>(method, path, { body });

const waitFor = <T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 120_000) =>
  pollUntil(what, probe, timeoutMs, 250);

const podsOf = async (app: string) =>
  (await api<{ items: V1Pod[] }>("GET", `/api/v1/namespaces/${NS}/pods?labelSelector=app%3D${app}`)).items;
const isReady = (p: V1Pod) => p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True");

function deployment(name: string, node: string, image: string, port: number): unknown {
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name, namespace: NS },
    spec: {
      replicas: 1,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name } },
        spec: {
          nodeSelector: { "kubernetes.io/hostname": node },
          terminationGracePeriodSeconds: 5,
          containers: [
            {
              name: "server",
              image,
              command: ["node", "-e", SERVER],
              env: [
                { name: "PORT", value: String(port) },
                { name: "POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
                { name: "POD_IP", valueFrom: { fieldRef: { fieldPath: "status.podIP" } } },
                { name: "APP_LABEL", valueFrom: { fieldRef: { fieldPath: "metadata.labels['app']" } } },
                { name: "GREETING", valueFrom: { configMapKeyRef: { name: "settings", key: "greeting" } } },
                { name: "MESSAGE", value: "$(GREETING) from $(POD_NAME)" },
              ],
              ports: [{ name: "http", containerPort: port }],
              readinessProbe: { httpGet: { path: "/readyz", port: "http" }, periodSeconds: 1 },
              livenessProbe: { tcpSocket: { port }, periodSeconds: 2 },
            },
          ],
        },
      },
    },
  };
}

beforeAll(async () => {
  baseImage = execFileSync("bash", [join(repoRoot, "hack/build-base-image.sh")], { encoding: "utf8" }).trim();
  execFileSync("bash", [join(repoRoot, "hack/build-images.sh"), "workload"], { stdio: "ignore" });
  const kc = new KubeConfig();
  kc.loadFromFile(env.kubeconfig!);
  client = await new KubeClient(kc).init();
  procs = (await startCluster(env, { nodeName: PODMAN_NODE, runtime: "podman" })).procs;
  processAgent = new NodeAgent({
    kubeconfig: env.kubeconfig!,
    nodeName: PROCESS_NODE,
    runtime: "process",
    stateDir: join(env.stateDir, "node-agent-process"),
    repoRoot,
    log: () => {},
  });
  await processAgent.start();
  await api("POST", "/api/v1/namespaces", { metadata: { name: NS } });
  await api("POST", `/api/v1/namespaces/${NS}/configmaps`, {
    metadata: { name: "settings" },
    data: { greeting: "hello" },
  });
  // Pods need the namespace's default ServiceAccount, which the controller manager creates.
  await waitFor("the default ServiceAccount", () =>
    api("GET", `/api/v1/namespaces/${NS}/serviceaccounts/default`),
  );
});

afterAll(async () => {
  await api("DELETE", `/api/v1/namespaces/${NS}`).catch(() => {});
  await processAgent?.stop();
  for (const p of procs.reverse()) await p.stop();
  for (const n of [PODMAN_NODE, PROCESS_NODE]) {
    await api("DELETE", `/api/v1/nodes/${n}`).catch(() => {});
    await api(
      "DELETE",
      `/api/v1/persistentvolumes?labelSelector=node.hybridp2p.io%2Fprovisioned-by%3D${n}`,
    ).catch(() => {});
  }
  client?.close();
});

describe.each([
  { runtime: "podman", node: PODMAN_NODE, app: "web-podman" },
  { runtime: "process", node: PROCESS_NODE, app: "web-process" },
])("a Deployment on the $runtime node", ({ node, app, runtime }) => {
  let pod: V1Pod;

  it("gets a Running, Ready pod through the scheduler and the agent", async () => {
    // Local processes share the host's ports; a podman pod has its own network namespace.
    const port = runtime === "process" ? await freePort() : 8080;
    await api("POST", `/apis/apps/v1/namespaces/${NS}/deployments`, deployment(app, node, baseImage, port));
    pod = await waitFor(`a ready pod of ${app}`, async () => (await podsOf(app)).find(isReady));
    expect(pod.spec?.nodeName).toBe(node);
    expect(pod.status?.phase).toBe("Running");
    expect(pod.status?.containerStatuses?.[0]).toMatchObject({ name: "server", ready: true, started: true });
    const ip = pod.status!.podIP!;
    if (runtime === "process") expect(ip).toBe("127.0.0.1");
    else expect(ip).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
    // kstatus (used by the e2e suite) agrees the Deployment is rolled out.
    const dep = await waitFor("the Deployment to be Current", async () => {
      const d = await api<KObject>("GET", `/apis/apps/v1/namespaces/${NS}/deployments/${app}`);
      return computeStatus(d).status === "Current" ? d : undefined;
    });
    expect(computeStatus(dep).message).toContain("Deployment is available");
  }, 180_000);

  it("gives the container its downward API, ConfigMap and expanded values", async () => {
    const port = pod.spec!.containers[0]!.ports![0]!.containerPort;
    const seen = (await (await fetch(`http://${pod.status!.podIP}:${port}/env`)).json()) as Record<
      string,
      string
    >;
    expect(seen.POD_NAME).toBe(pod.metadata!.name);
    expect(seen.POD_IP).toBe(pod.status!.podIP);
    expect(seen.APP_LABEL).toBe(app);
    expect(seen.GREETING).toBe("hello");
    expect(seen.MESSAGE).toBe(`hello from ${pod.metadata!.name}`);
  });

  it("stops a deleted pod, removes it, and the Deployment's replacement becomes Ready", async () => {
    await api("DELETE", `/api/v1/namespaces/${NS}/pods/${pod.metadata!.name}`);
    const next = await waitFor("a ready replacement", async () =>
      (await podsOf(app)).find((p) => isReady(p) && p.metadata!.uid !== pod.metadata!.uid),
    );
    expect(next.spec?.nodeName).toBe(node);
    await waitFor("the old pod to be gone", async () =>
      (await podsOf(app)).some((p) => p.metadata!.uid === pod.metadata!.uid) ? undefined : true,
    );
  }, 180_000);
});

describe.each([
  { runtime: "podman", node: PODMAN_NODE },
  { runtime: "process", node: PROCESS_NODE },
])("a pod on the $runtime node", ({ runtime, node }) => {
  it("reaches the API server as its ServiceAccount, with client-node's in-cluster loading", async () => {
    const name = `whoami-${runtime}`;
    const port = runtime === "process" ? await freePort() : 8080;
    await api("POST", `/api/v1/namespaces/${NS}/pods`, {
      metadata: { name, namespace: NS },
      spec: {
        nodeName: node,
        containers: [
          {
            name: "main",
            image: WORKLOAD_IMAGE,
            command: ["node", "--input-type=module", "-e", WHOAMI],
            env: [{ name: "PORT", value: String(port) }],
            readinessProbe: { tcpSocket: { port }, periodSeconds: 1 },
          },
        ],
      },
    });
    const pod = await waitFor(`${name} ready`, async () => {
      const p = await api<V1Pod>("GET", `/api/v1/namespaces/${NS}/pods/${name}`);
      return isReady(p) ? p : undefined;
    });
    const who = await (await fetch(`http://${pod.status!.podIP}:${port}/`)).text();
    expect(who).toBe(`system:serviceaccount:${NS}:default`);
  }, 180_000);
});

describe("a StatefulSet with a volume claim template", () => {
  // Counts its starts in a file on its volume, and serves the count.
  const COUNTER = `const fs = require("fs"); const f = "/data/starts"; const n = (fs.existsSync(f) ? Number(fs.readFileSync(f, "utf8")) : 0) + 1; fs.writeFileSync(f, String(n)); require("http").createServer((q, r) => r.end(String(n))).listen(8080)`;

  it("gets a local volume on the scheduled node that outlives its pod", async () => {
    await api("POST", `/apis/apps/v1/namespaces/${NS}/statefulsets`, {
      apiVersion: "apps/v1",
      kind: "StatefulSet",
      metadata: { name: "store", namespace: NS },
      spec: {
        serviceName: "store",
        replicas: 1,
        selector: { matchLabels: { app: "store" } },
        template: {
          metadata: { labels: { app: "store" } },
          spec: {
            nodeSelector: { "kubernetes.io/hostname": PODMAN_NODE },
            terminationGracePeriodSeconds: 2,
            containers: [
              {
                name: "main",
                image: baseImage,
                command: ["node", "-e", COUNTER],
                volumeMounts: [{ name: "data", mountPath: "/data" }],
                readinessProbe: { tcpSocket: { port: 8080 }, periodSeconds: 1 },
              },
            ],
          },
        },
        volumeClaimTemplates: [
          {
            metadata: { name: "data" },
            spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "1Gi" } } },
          },
        ],
      },
    });
    const starts = async (uid?: string) => {
      const p = await waitFor("store-0 ready", async () => {
        const p = await api<V1Pod>("GET", `/api/v1/namespaces/${NS}/pods/store-0`).catch(() => undefined);
        return p && isReady(p) && p.metadata!.uid !== uid ? p : undefined;
      });
      return { pod: p, count: await (await fetch(`http://${p.status!.podIP}:8080/`)).text() };
    };
    const first = await starts();
    expect(first.count).toBe("1");
    const pvc = await api<{ spec: { storageClassName: string; volumeName: string } }>(
      "GET",
      `/api/v1/namespaces/${NS}/persistentvolumeclaims/data-store-0`,
    );
    expect(pvc.spec.storageClassName).toBe("local");
    const pv = await api<{ spec: { nodeAffinity: unknown } }>(
      "GET",
      `/api/v1/persistentvolumes/${pvc.spec.volumeName}`,
    );
    expect(JSON.stringify(pv.spec.nodeAffinity)).toContain(PODMAN_NODE);
    await api("DELETE", `/api/v1/namespaces/${NS}/pods/store-0`);
    const second = await starts(first.pod.metadata!.uid);
    expect(second.count).toBe("2");
  }, 180_000);
});

describe("cluster DNS for podman pods", () => {
  // Fetches each URL given in TARGETS and serves what came back.
  // Resolves on every request: the agent's records follow EndpointSlices a moment later.
  const CLIENT = `const probe = async () => { const out = {}; for (const u of process.env.TARGETS.split(" ")) { try { out[u] = (await (await fetch(u)).text()).slice(0, 40); } catch (e) { out[u] = "error: " + (e.cause?.code ?? e); } } return out; }; (await import("node:http")).createServer(async (q, r) => r.end(JSON.stringify(await probe()))).listen(8080);`;

  it("resolves Services to their ClusterIPs, which route (port to targetPort), and StatefulSet pods by hostname", async () => {
    await api("POST", `/api/v1/namespaces/${NS}/services`, {
      metadata: { name: "web" },
      spec: { selector: { app: "web-podman" }, ports: [{ port: 8080, targetPort: 8080 }] },
    });
    // A port that differs from its target, and a NodePort: only a service proxy makes these work.
    const web80 = await api<{ spec: { clusterIP: string; ports: { nodePort: number }[] } }>(
      "POST",
      `/api/v1/namespaces/${NS}/services`,
      {
        metadata: { name: "web80" },
        spec: {
          type: "NodePort",
          selector: { app: "web-podman" },
          ports: [{ name: "http", port: 80, targetPort: 8080 }],
        },
      },
    );
    await api("POST", `/api/v1/namespaces/${NS}/services`, {
      metadata: { name: "store" },
      spec: { clusterIP: "None", selector: { app: "store" }, ports: [{ port: 8080 }] },
    });
    const targets = [
      `http://web.${NS}.svc:8080/readyz`,
      "http://web:8080/readyz",
      `http://store-0.store.${NS}.svc.cluster.local:8080/`,
      "http://missing:8080/",
      "http://web80/readyz",
    ];
    // The records follow EndpointSlices, which follow readiness: wait until both Services have one.
    await waitFor("endpoints of web and store", async () => {
      const l = await api<{ items: { endpoints?: unknown[] }[] }>(
        "GET",
        `/apis/discovery.k8s.io/v1/namespaces/${NS}/endpointslices`,
      );
      return l.items.filter((sl) => (sl.endpoints ?? []).length > 0).length >= 2 ? true : undefined;
    });
    await api("POST", `/api/v1/namespaces/${NS}/pods`, {
      metadata: { name: "dns-client" },
      spec: {
        nodeName: PODMAN_NODE,
        containers: [
          {
            name: "main",
            image: baseImage,
            command: ["node", "--input-type=module", "-e", CLIENT],
            env: [{ name: "TARGETS", value: targets.join(" ") }],
            readinessProbe: { tcpSocket: { port: 8080 }, periodSeconds: 1 },
          },
        ],
      },
    });
    const pod = await waitFor("dns-client ready", async () => {
      const p = await api<V1Pod>("GET", `/api/v1/namespaces/${NS}/pods/dns-client`);
      return isReady(p) ? p : undefined;
    });
    const seen = await waitFor("the Services resolving inside the pod", async () => {
      const s = (await (await fetch(`http://${pod.status!.podIP}:8080/`)).json()) as Record<string, string>;
      return s[targets[0]!] === "ok" &&
        s[targets[1]!] === "ok" &&
        /^\d+$/.test(s[targets[2]!] ?? "") &&
        s[targets[4]!] === "ok"
        ? s
        : undefined;
    });
    expect(seen[targets[0]!]).toBe("ok");
    expect(seen[targets[1]!]).toBe("ok");
    expect(seen[targets[2]!]).toMatch(/^\d+$/);
    expect(seen[targets[3]!]).toBe("error: ENOTFOUND");
    expect(seen[targets[4]!]).toBe("ok");

    // From the host too: the ClusterIP, and the NodePort on the node's address.
    const node = await api<{ status: { addresses: { type: string; address: string }[] } }>(
      "GET",
      `/api/v1/nodes/${PODMAN_NODE}`,
    );
    const nodeIP = node.status.addresses.find((a) => a.type === "InternalIP")!.address;
    for (const url of [
      `http://${web80.spec.clusterIP}/readyz`,
      `http://${nodeIP}:${web80.spec.ports[0]!.nodePort}/readyz`,
    ])
      expect(await (await fetch(url)).text()).toBe("ok");
  }, 180_000);
});

describe("pod phases from exit codes", () => {
  const bare = (name: string, restartPolicy: string, code: number) => ({
    metadata: { name, namespace: NS },
    spec: {
      nodeName: PROCESS_NODE,
      restartPolicy,
      containers: [
        {
          name: "main",
          image: "localhost/hybrid-p2p/node-base:any",
          command: ["node", "-e", `process.exit(${code})`],
        },
      ],
    },
  });
  const podNamed = (name: string) => api<V1Pod>("GET", `/api/v1/namespaces/${NS}/pods/${name}`);

  it("a pod that exits 0 with restartPolicy Never Succeeded; exit 3 Failed with its code", async () => {
    await api("POST", `/api/v1/namespaces/${NS}/pods`, bare("ok", "Never", 0));
    await api("POST", `/api/v1/namespaces/${NS}/pods`, bare("bad", "Never", 3));
    await waitFor("ok to succeed", async () =>
      (await podNamed("ok")).status?.phase === "Succeeded" ? true : undefined,
    );
    const bad = await waitFor("bad to fail", async () => {
      const p = await podNamed("bad");
      return p.status?.phase === "Failed" ? p : undefined;
    });
    expect(bad.status?.containerStatuses?.[0]?.state?.terminated).toMatchObject({
      exitCode: 3,
      reason: "Error",
    });
  });

  it("a crashing container under restartPolicy Always is restarted and counted", async () => {
    await api("POST", `/api/v1/namespaces/${NS}/pods`, bare("crash", "Always", 1));
    const p = await waitFor("two restarts", async () => {
      const p = await podNamed("crash");
      return (p.status?.containerStatuses?.[0]?.restartCount ?? 0) >= 2 ? p : undefined;
    });
    expect(p.status?.phase).toBe("Running");
    expect(p.status?.containerStatuses?.[0]?.lastState?.terminated?.exitCode).toBe(1);
  });
});
