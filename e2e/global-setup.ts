// Hands the e2e suite a kubeconfig. With KUBECONFIG set, that cluster (which must already run the
// images: see hack/kind-e2e.sh). Without it, the local cluster: the API server,
// kube-controller-manager, kube-scheduler and a real node on this host (containerd, kubelet,
// kube-proxy, CoreDNS, kube-router: testkit/local/node.ts), the images built first (the build
// scripts skip cached work) and imported into the node's containerd; everything torn down afterwards.
import type { TestProject } from "vitest/node";
import { buildImages, startLocalEnv } from "../testkit/local/services.ts";

declare module "vitest" {
  export interface ProvidedContext {
    kubeconfig: string;
  }
}

export default async function setup(project: TestProject): Promise<(() => Promise<void>) | undefined> {
  if (process.env.KUBECONFIG) {
    project.provide("kubeconfig", process.env.KUBECONFIG);
    return undefined;
  }
  const running = await startLocalEnv({
    services: ["kube", "cluster"],
    images: buildImages(["build-images.sh"], ["build-store-images.sh"]),
    log: (m) => console.log(`[local] ${m}`),
  });
  project.provide("kubeconfig", running.env.kubeconfig!);
  // Stopping also removes the state directory (HYBRIDP2P_KEEP_STATE=1 keeps it).
  return () => running.stop();
}
