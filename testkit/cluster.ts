// What every e2e file (and a chaos scenario on a cluster) needs against the cluster its
// kubeconfig names: the pinned CLIs, a poll with the suite's patience, a token keyset, and a chart
// install that copes with the CRDs an earlier file's release left behind (they are kept on
// uninstall, on purpose).
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import type { KubeClient } from "../platform/kube/kube.ts";
import { pollUntil } from "../platform/time.ts";
import type { ClientTls } from "../workloads/client/socket.ts";
import { binDir } from "./local/services.ts";

export const repoRoot = new URL("..", import.meta.url).pathname;
const node = join(repoRoot, "node_modules/.bin/node");

export function clusterTools(kubeconfig: string) {
  const run = (cmd: string, args: string[], input?: string) =>
    execFileSync(cmd, args, {
      encoding: "utf8",
      input,
      env: { ...process.env, KUBECONFIG: kubeconfig },
      stdio: ["pipe", "pipe", "pipe"],
    });
  return {
    run,
    helm: (args: string[]) => run(join(binDir(), "helm"), [...args, "--kubeconfig", kubeconfig]),
    kubectl: (args: string[]) => run(join(binDir(), "kubectl"), ["--kubeconfig", kubeconfig, ...args]),
    hybridctl: (args: string[]) => run(node, [join(repoRoot, "cli/hybridctl.ts"), ...args]),
    /** A fresh token keyset (what `node workloads/main.ts keyset new` prints). */
    newKeyset: () => run(node, [join(repoRoot, "workloads/main.ts"), "keyset", "new"]),
  };
}

export const waitFor = <T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 300_000) =>
  pollUntil(what, probe, timeoutMs, 500);

/** Installs the chart as `release`, without its CRDs when an earlier release left them. */
export async function installChart(
  client: KubeClient,
  helm: (args: string[]) => string,
  release: string,
  namespace: string,
  extra: string[] = [],
): Promise<void> {
  const crds = await client
    .request("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/regions.hybridp2p.io")
    .then(
      () => true,
      () => false,
    );
  helm([
    "install",
    release,
    join(repoRoot, "charts/hybrid-p2p"),
    "-n",
    namespace,
    "--create-namespace",
    ...(crds ? ["--set", "crds.install=false"] : []),
    ...extra,
  ]);
}

/** Uninstalls what installChart installed and deletes its namespace; quiet when already gone. */
export async function uninstallChart(
  client: KubeClient | undefined,
  helm: (args: string[]) => string,
  release: string,
  namespace: string,
): Promise<void> {
  try {
    helm(["uninstall", release, "-n", namespace, "--wait", "--timeout", "120s"]);
  } catch {}
  await client?.request("DELETE", `/api/v1/namespaces/${namespace}`).catch(() => {});
}

/** The Region's token keyset Secret (`<region>-auth-keyset`), as an operator of the world makes it. */
export async function createKeysetSecret(
  client: KubeClient,
  namespace: string,
  region: string,
  keyset: string,
) {
  await client.request("POST", `/api/v1/namespaces/${namespace}/secrets`, {
    body: { metadata: { name: `${region}-auth-keyset` }, stringData: { "keyset.json": keyset } },
  });
}

/**
 * How a player's client trusts the Region's endpoints (wss, https): the CA from its
 * `<region>-serving-tls` Secret (what `--ca-file` names in the main job), checked for the gateway
 * Service's name, as the tests dial pod and ClusterIP addresses the certificate does not name.
 */
export async function regionTls(client: KubeClient, namespace: string, region: string): Promise<ClientTls> {
  const secret = await waitFor(`the Region's serving certificate (${region}-serving-tls)`, () =>
    client
      .request<{ data?: Record<string, string> }>(
        "GET",
        `/api/v1/namespaces/${namespace}/secrets/${region}-serving-tls`,
      )
      .then(
        (s) => s.data?.["ca.crt"],
        () => undefined,
      ),
  );
  return { ca: Buffer.from(secret, "base64").toString(), serverName: `${region}-gateway.${namespace}.svc` };
}
