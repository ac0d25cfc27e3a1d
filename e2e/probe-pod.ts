// A throwaway pod that tries TCP connections from inside the cluster and reports which opened:
// how the e2e suite checks NetworkPolicies where they are enforced. It runs the workload image
// (already on every node the suite uses) with `node -e`, and its report comes back through the
// kubelet (`kubectl logs`), so it works on any cluster.
import { isNotFound, type KubeClient } from "../platform/kube/kube.ts";
import { pollUntil } from "../platform/time.ts";

export interface Target {
  host: string;
  port: number;
}
export type Reachability = Record<string, "open" | "blocked">;

// Connect with a deadline; a NetworkPolicy drop shows as a timeout, a refusal as an error:
// either way the port is not reachable.
const SCRIPT = `
const net = require("node:net");
const targets = JSON.parse(process.env.TARGETS);
Promise.all(targets.map((t) => new Promise((resolve) => {
  const s = net.connect({ host: t.host, port: t.port });
  const done = (r) => { s.destroy(); resolve([t.host + ":" + t.port, r]); };
  s.setTimeout(4000, () => done("blocked"));
  s.once("connect", () => done("open"));
  s.once("error", () => done("blocked"));
}))).then((r) => console.log("REACH " + JSON.stringify(Object.fromEntries(r))));
`;

export async function probeFromPod(
  client: KubeClient,
  o: { namespace: string; name: string; image: string; labels: Record<string, string>; targets: Target[] },
  logs: (namespace: string, pod: string) => string,
): Promise<Reachability> {
  const path = `/api/v1/namespaces/${o.namespace}/pods`;
  await client.request("DELETE", `${path}/${o.name}`).catch(() => {});
  await pollUntil(
    `old ${o.name} gone`,
    async () => {
      try {
        await client.request("GET", `${path}/${o.name}`);
        return undefined;
      } catch (err) {
        if (isNotFound(err)) return true;
        throw err;
      }
    },
    60_000,
    250,
  );
  await client.request("POST", path, {
    body: {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: o.name, labels: o.labels },
      spec: {
        restartPolicy: "Never",
        automountServiceAccountToken: false,
        securityContext: { runAsNonRoot: true, runAsUser: 1000, seccompProfile: { type: "RuntimeDefault" } },
        containers: [
          {
            name: "probe",
            image: o.image,
            imagePullPolicy: "IfNotPresent",
            command: ["node", "-e", SCRIPT],
            env: [{ name: "TARGETS", value: JSON.stringify(o.targets) }],
            securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] } },
          },
        ],
      },
    },
  });
  try {
    return await pollUntil(
      `${o.name} reports`,
      async () => {
        const line = logs(o.namespace, o.name)
          .split("\n")
          .find((l) => l.startsWith("REACH "));
        return line ? (JSON.parse(line.slice(6)) as Reachability) : undefined;
      },
      120_000,
      1000,
    );
  } finally {
    await client.request("DELETE", `${path}/${o.name}`).catch(() => {});
  }
}
