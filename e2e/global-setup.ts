// Hands the e2e suite a kubeconfig. With KUBECONFIG set, that cluster (which must already run the
// images: see hack/kind-e2e.sh). Without it, the local cluster: the API server plus
// kube-controller-manager, kube-scheduler and the podman node agent, the images built first
// (the build scripts skip cached work), everything torn down afterwards.
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import type { TestProject } from "vitest/node";
import { startLocalEnv } from "../testkit/local/services.ts";

declare module "vitest" {
  export interface ProvidedContext {
    kubeconfig: string;
  }
}

const repoRoot = new URL("..", import.meta.url).pathname;

export default async function setup(project: TestProject): Promise<(() => Promise<void>) | undefined> {
  if (process.env.KUBECONFIG) {
    project.provide("kubeconfig", process.env.KUBECONFIG);
    return undefined;
  }
  for (const script of ["build-images.sh", "build-store-images.sh"]) {
    execFileSync("bash", [join(repoRoot, "hack", script)], { stdio: "inherit" });
  }
  const running = await startLocalEnv({
    services: ["kube", "cluster"],
    log: (m) => console.log(`[local] ${m}`),
  });
  project.provide("kubeconfig", running.env.kubeconfig!);
  // Stopping also removes the state directory (HYBRIDP2P_KEEP_STATE=1 keeps it).
  return () => running.stop();
}
