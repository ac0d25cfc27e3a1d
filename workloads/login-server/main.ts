// `hybrid-workload login-server`: configuration from the environment, then serve until SIGTERM.
import { ConfigError } from "../runtime/config.ts";
import { createLogger } from "../runtime/log.ts";
import { runUntilSignalled } from "../runtime/shutdown.ts";
import { type LoginConfig, loginConfigFromEnv } from "./config.ts";
import { startLoginServer } from "./server.ts";

export async function run(): Promise<void> {
  let cfg: LoginConfig;
  try {
    cfg = loginConfigFromEnv();
  } catch (err) {
    if (err instanceof ConfigError) {
      createLogger("login-server").error(err.message, { problems: err.problems });
      process.exit(2);
    }
    throw err;
  }
  const log = createLogger("login-server", {
    level: cfg.runtime.logLevel,
    fields: { pod: cfg.runtime.podName },
  });
  await runUntilSignalled(log, cfg.runtime.shutdownTimeoutMs, () => startLoginServer(cfg, { log }));
}
