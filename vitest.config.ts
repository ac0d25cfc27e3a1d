import { defineConfig } from "vitest/config";

// Projects: `unit` (pure logic, no services), `integration` (real kube-apiserver, etcd, NATS,
// PostgreSQL and Redis on loopback, started once by the global setup) and `isolated`.
// `isolated` runs on its own control plane, in a vitest run of its own (hack/test.sh): it fails when it shares
// the apiserver and podman with the other cluster tests, and passes alone; the cause is not yet
// found (see the closing note of issue 8).
const ISOLATED = ["hack/chart-cluster.int.test.ts"];

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: "unit",
          include: ["{operator,workloads,hack}/**/*.test.ts"],
          exclude: ["**/*.int.test.ts", "node_modules/**"],
        },
      },
      {
        test: {
          name: "integration",
          include: ["{operator,workloads,hack}/**/*.int.test.ts"],
          exclude: ISOLATED,
          globalSetup: ["hack/local/vitest-global-setup.ts"],
          testTimeout: 60_000,
          hookTimeout: 180_000,
          // Tests share one control plane; files run one at a time to keep the 2-core machine honest.
          fileParallelism: false,
        },
      },
      {
        test: {
          name: "isolated",
          include: ISOLATED,
          globalSetup: ["hack/local/vitest-global-setup.ts"],
          testTimeout: 60_000,
          hookTimeout: 600_000,
        },
      },
    ],
  },
});
