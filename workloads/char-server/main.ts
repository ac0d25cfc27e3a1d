// `hybrid-workload char-server`: configuration from the environment, then serve until SIGTERM.
import { ConfigError } from "../runtime/config.ts";
import { createLogger } from "../runtime/log.ts";
import { runUntilSignalled } from "../runtime/shutdown.ts";
import { type CharConfig, charConfigFromEnv } from "./config.ts";
import { startCharServer } from "./server.ts";

export async function run(): Promise<void> {
  let cfg: CharConfig;
  try {
    cfg = charConfigFromEnv();
  } catch (err) {
    if (err instanceof ConfigError) {
      createLogger("char-server").error(err.message, { problems: err.problems });
      process.exit(2);
    }
    throw err;
  }
  const log = createLogger("char-server", {
    level: cfg.runtime.logLevel,
    fields: { pod: cfg.runtime.podName },
  });
  await runUntilSignalled(log, cfg.runtime.shutdownTimeoutMs, () => startCharServer(cfg, { log }));
}
