import { defineConfig } from "vitest/config";
import { usePrivateTmp } from "./testkit/private-tmp.ts";

// The tests' temp files (CAs, keysets, state dirs) go in one directory removed when vitest exits,
// also when it is run directly rather than through hack/test.sh.
usePrivateTmp("vitest");

// Projects: `unit` (pure logic, no services) and `integration` (real kube-apiserver, etcd, NATS,
// PostgreSQL and Redis on loopback, started once by the global setup).

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: "unit",
          include: ["{platform,operator,workloads,cli,testkit,hack,chaos}/**/*.test.ts"],
          exclude: ["**/*.int.test.ts", "node_modules/**"],
        },
      },
      {
        test: {
          name: "integration",
          include: ["{platform,operator,workloads,cli,testkit,hack}/**/*.int.test.ts"],
          globalSetup: ["testkit/local/vitest-global-setup.ts"],
          // Store credentials and TLS for in-process workloads (the stores run with auth and TLS).
          setupFiles: ["testkit/local/vitest-store-env.ts"],
          testTimeout: 60_000,
          hookTimeout: 180_000,
          // Tests share one control plane; files run one at a time to keep the 2-core machine honest.
          fileParallelism: false,
        },
      },
    ],
  },
});
