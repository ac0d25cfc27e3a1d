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
// either way the port is not reachable. Each target is tried again until it opens or 15 s pass:
// enforcers admit a new pod's traffic only once they have seen its IP (kube-router on the local
// node syncs a second or so after the pod starts), so one early attempt would race them.
const SCRIPT = `
const net = require("node:net");
const targets = JSON.parse(process.env.TARGETS);
const once = (t) => new Promise((resolve) => {
  const s = net.connect({ host: t.host, port: t.port });
  const done = (r) => { s.destroy(); resolve(r); };
  s.setTimeout(2000, () => done("blocked"));
  s.once("connect", () => done("open"));
  s.once("error", () => done("blocked"));
});
const probe = async (t) => {
  const deadline = Date.now() + 15000;
  for (;;) {
    const r = await once(t);
    if (r === "open" || Date.now() > deadline) return [t.host + ":" + t.port, r];
    await new Promise((ok) => setTimeout(ok, 500));
  }
};
Promise.all(targets.map(probe)).then((r) => console.log("REACH " + JSON.stringify(Object.fromEntries(r))));
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
