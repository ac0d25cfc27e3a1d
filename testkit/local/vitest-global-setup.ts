// Starts the local control plane and data services once for the integration run, hands
// their addresses to the tests through vitest's provide/inject, and stops them afterwards.
import type { TestProject } from "vitest/node";
import { type LocalEnv, startLocalEnv } from "./services.ts";

declare module "vitest" {
  export interface ProvidedContext {
    localEnv: LocalEnv;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const running = await startLocalEnv({ log: (m) => console.log(`[local] ${m}`) });
  project.provide("localEnv", running.env);
  // Stopping also removes the state directory (HYBRIDP2P_KEEP_STATE=1 keeps it).
  return () => running.stop();
}
