// `hybrid-workload char-server`: configuration from the environment, then serve until SIGTERM.
import { createLogger } from "../../platform/log.ts";
import { configOrExit, runUntilSignalled } from "../runtime/shutdown.ts";
import { charConfigFromEnv } from "./config.ts";
import { startCharServer } from "./server.ts";

export async function run(): Promise<void> {
  const cfg = configOrExit("char-server", () => charConfigFromEnv());
  const log = createLogger("char-server", {
    level: cfg.runtime.logLevel,
    fields: { pod: cfg.runtime.podName },
  });
  await runUntilSignalled(log, cfg.runtime.shutdownTimeoutMs, () => startCharServer(cfg, { log }));
}
