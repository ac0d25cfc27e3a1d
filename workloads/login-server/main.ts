// `hybrid-workload login-server`: configuration from the environment, then serve until SIGTERM.
import { createLogger } from "../../platform/log.ts";
import { configOrExit, runUntilSignalled } from "../runtime/shutdown.ts";
import { loginConfigFromEnv } from "./config.ts";
import { startLoginServer } from "./server.ts";

export async function run(): Promise<void> {
  const cfg = configOrExit("login-server", () => loginConfigFromEnv());
  const log = createLogger("login-server", {
    level: cfg.runtime.logLevel,
    fields: { pod: cfg.runtime.podName },
  });
  await runUntilSignalled(log, cfg.runtime.shutdownTimeoutMs, () => startLoginServer(cfg, { log }));
}
