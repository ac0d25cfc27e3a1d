import { defineConfig } from "vitest/config";
import { usePrivateTmp } from "../testkit/private-tmp.ts";

// Its temp files go in one directory removed when vitest exits (unless a mount is left in it).
usePrivateTmp("e2e");

// The e2e suite (`npm run e2e`): a separate config so the default unit/integration runs never
// pick it up. Any cluster through KUBECONFIG; without one, the global setup starts the local one.
export default defineConfig({
  test: {
    name: "e2e",
    include: ["e2e/**/*.e2e.test.ts"],
    globalSetup: ["e2e/global-setup.ts"],
    testTimeout: 600_000,
    hookTimeout: 900_000,
    fileParallelism: false,
  },
});
