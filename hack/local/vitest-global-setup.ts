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
  return async () => {
    await running.stop();
    if (!process.env.HYBRIDP2P_KEEP_STATE) {
      const { rmSync } = await import("node:fs");
      rmSync(running.env.stateDir, { recursive: true, force: true });
    }
  };
}
