// The local cluster's real node (node.ts): pods run from an image in its containerd, reach each
// other through a Service by its DNS name, `kubectl logs`, `exec`, `port-forward` and `get events`
// work, a NetworkPolicy is enforced; and once stopped, the host is as it was before: netfilter
// rules, nftables, links, addresses, routes, ipsets, sysctls, mounts, cgroups and files.
import { execFile, execFileSync, spawn } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pollUntil } from "../../platform/time.ts";
import { freePort } from "../processes.ts";
import { hostSnapshot } from "./node.ts";
import { binDir, type Running, startLocalEnv } from "./services.ts";

const NS = "node-int";
const BUSYBOX = JSON.parse(
  execFileSync("tar", ["-xOf", join(binDir(), "busybox-image.tar"), "manifest.json"], { encoding: "utf8" }),
)[0].RepoTags[0] as string;

let running: Running | undefined;
const kubectl = (...args: string[]) =>
  execFileSync(join(binDir(), "kubectl"), ["--kubeconfig", running!.env.kubeconfig!, ...args], {
    encoding: "utf8",
    stdio: ["pipe", "pipe", "pipe"],
  });
const kubectlAsync = (...args: string[]) =>
  promisify(execFile)(join(binDir(), "kubectl"), ["--kubeconfig", running!.env.kubeconfig!, ...args], {
    encoding: "utf8",
  }).then((r) => r.stdout);
const apply = (yaml: string) =>
  execFileSync(join(binDir(), "kubectl"), ["--kubeconfig", running!.env.kubeconfig!, "apply", "-f", "-"], {
    input: yaml,
    encoding: "utf8",
  });
/** An HTTP GET from the client pod, through `kubectl exec` (busybox nc; its wget crashes here). */
const getFromClient = (host: string) =>
  kubectlAsync(
    "exec",
    "-n",
    NS,
    "client",
    "--",
    "sh",
    "-c",
    `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 ${host} 80 || true`,
  );

beforeAll(async () => {
  // checkHost: the node snapshots the host once it holds it and again before letting go, so
  // another local node on the machine (waiting for this one) cannot blur the comparison.
  running = await startLocalEnv({
    services: ["kube", "cluster"],
    checkHost: true,
    log: (m) => console.log(`[node] ${m}`),
  });
  kubectl("create", "namespace", NS);
  await pollUntil(
    "the default ServiceAccount",
    async () => kubectl("get", "sa", "default", "-n", NS),
    60_000,
    500,
  );
  apply(`
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: ${NS}, labels: {app: web}}
spec:
  containers:
    - name: web
      image: ${BUSYBOX}
      imagePullPolicy: Never
      command: [sh, -c, "mkdir -p /tmp/www && echo hello from $(hostname) > /tmp/www/index.html && echo serving && exec httpd -f -vv -p 8080 -h /tmp/www"]
      readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: ${NS}}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: ${NS}, labels: {role: client}}
spec:
  terminationGracePeriodSeconds: 0
  containers:
    - name: client
      image: ${BUSYBOX}
      imagePullPolicy: Never
      command: [sleep, "3600"]
`);
  kubectl("wait", "--for=condition=Ready", "--timeout=120s", "pod/web", "pod/client", "-n", NS);
}, 900_000);

afterAll(async () => {
  await running?.stop();
}, 180_000);

describe("the local node", () => {
  it("runs pods that reach a Service by its DNS name; logs, exec, port-forward and events work", async () => {
    const page = await pollUntil(
      "the web Service from the client pod",
      async () => {
        const out = await getFromClient(`web.${NS}.svc.cluster.local`);
        return out.includes("hello from web") ? out : undefined;
      },
      60_000,
      1000,
    );
    expect(page).toMatch(/^HTTP\/1\.[01] 200/);
    expect(
      await kubectlAsync(
        "exec",
        "-n",
        NS,
        "client",
        "--",
        "nslookup",
        "kubernetes.default.svc.cluster.local",
      ),
    ).toContain("10.96.0.1");
    expect(kubectl("logs", "-n", NS, "web")).toContain("serving");
    const port = await freePort();
    const pf = spawn(
      join(binDir(), "kubectl"),
      ["--kubeconfig", running!.env.kubeconfig!, "port-forward", "-n", NS, "pod/web", `${port}:8080`],
      { stdio: "ignore" },
    );
    try {
      const body = await pollUntil(
        "the port-forward",
        async () => (await fetch(`http://127.0.0.1:${port}/`)).text(),
        30_000,
        250,
      );
      expect(body).toContain("hello from web");
    } finally {
      pf.kill();
    }
    expect(kubectl("get", "events", "-n", NS)).toMatch(/Started\s+pod\/web|Started.*container web/);
    // The host reaches pod IPs directly (the e2e suite reads the Region's etcd that way).
    const ip = kubectl("get", "pod", "web", "-n", NS, "-o", "jsonpath={.status.podIP}");
    expect(await (await fetch(`http://${ip}:8080/`)).text()).toContain("hello from web");
  });

  it("enforces a NetworkPolicy (kube-router)", async () => {
    apply(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-friends-only, namespace: ${NS}}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress]
  ingress:
    - from: [{podSelector: {matchLabels: {role: friend}}}]
`);
    await pollUntil(
      "the client denied",
      async () => ((await getFromClient("web")).includes("hello") ? undefined : true),
      60_000,
      1000,
    );
    kubectl("label", "pod", "client", "-n", NS, "role=friend", "--overwrite");
    await pollUntil(
      "the client, now a friend, admitted",
      async () => ((await getFromClient("web")).includes("hello from web") ? true : undefined),
      60_000,
      1000,
    );
  });

  it("stops, leaving the host as it was", async () => {
    // What a running node changed (so the comparison below is no empty one).
    const node = running!.node!;
    const before = node.hostBefore!;
    const during = hostSnapshot();
    for (const k of [
      "iptables",
      "nft",
      "links",
      "addresses",
      "routes",
      "ipsets",
      "sysctls",
      "mounts",
      "cgroups",
    ])
      expect(during[k], k).not.toEqual(before[k]);
    await running!.stop();
    running = undefined;
    expect(node.hostAfter).toEqual(before);
  }, 180_000);
});
