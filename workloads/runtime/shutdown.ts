// Graceful shutdown: hooks registered as resources come up run in reverse order on SIGTERM or
// SIGINT (or when asked), each bounded by the overall deadline, so a pod drains its requests,
// persists what it must and closes its connections before Kubernetes kills it.

import { createLogger, type Logger } from "../../platform/log.ts";
import { ConfigError } from "./config.ts";

export type ShutdownHook = () => Promise<void> | void;

export class Shutdown {
  private readonly hooks: Array<{ name: string; fn: ShutdownHook }> = [];
  private readonly first: Array<{ name: string; fn: ShutdownHook }> = [];
  private running: Promise<void> | undefined;
  private readonly log: Logger;
  private readonly timeoutMs: number;

  constructor(log: Logger, timeoutMs = 20_000) {
    this.log = log;
    this.timeoutMs = timeoutMs;
  }

  get stopping(): boolean {
    return this.running !== undefined;
  }

  /** Register a hook; hooks run last-registered first. */
  add(name: string, fn: ShutdownHook): void {
    this.hooks.push({ name, fn });
  }

  /** Register a hook that runs before all those added with add() (e.g. readiness off). */
  addFirst(name: string, fn: ShutdownHook): void {
    this.first.push({ name, fn });
  }

  /** Runs every hook once (later calls return the same promise). Never rejects. */
  run(reason: string): Promise<void> {
    this.running ??= this.runHooks(reason);
    return this.running;
  }

  private async runHooks(reason: string): Promise<void> {
    const started = Date.now();
    this.log.info("shutting down", { reason });
    for (const { name, fn } of [...this.first, ...[...this.hooks].reverse()]) {
      const left = Math.max(0, this.timeoutMs - (Date.now() - started));
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          Promise.resolve().then(fn),
          new Promise((_r, reject) => {
            timer = setTimeout(() => reject(new Error(`did not finish within the shutdown deadline`)), left);
          }),
        ]);
      } catch (err) {
        this.log.error("shutdown hook failed", { hook: name, err });
      } finally {
        clearTimeout(timer);
      }
    }
    this.log.info("shutdown complete", { ms: Date.now() - started });
  }

  /** SIGTERM/SIGINT run the hooks and then exit; a second signal exits at once. */
  installSignalHandlers(exit: (code: number) => void = (c) => process.exit(c)): void {
    const onSignal = (sig: NodeJS.Signals) => {
      if (this.stopping) {
        this.log.warn("second signal, exiting now", { signal: sig });
        exit(1);
        return;
      }
      void this.run(sig).then(() => exit(0));
    };
    process.on("SIGTERM", onSignal);
    process.on("SIGINT", onSignal);
  }
}

/**
 * The usual life of a workload process: start it, then on SIGTERM/SIGINT close it within the
 * deadline and exit. A start failure is logged and exits 1.
 */
export async function runUntilSignalled(
  log: Logger,
  timeoutMs: number,
  start: () => Promise<{ close(): Promise<void> }>,
): Promise<void> {
  const shutdown = new Shutdown(log, timeoutMs);
  shutdown.installSignalHandlers();
  try {
    const running = await start();
    shutdown.add("workload", () => running.close());
  } catch (err) {
    log.error("start failed", { err });
    process.exitCode = 1;
    await shutdown.run("start failed");
    process.exit(1);
  }
}

/** A workload's configuration, or exit 2 with every problem logged: a pod with bad settings
 * stops at once and says why, rather than failing later on a missing value. */
export function configOrExit<T>(component: string, read: () => T): T {
  try {
    return read();
  } catch (err) {
    if (err instanceof ConfigError) {
      createLogger(component).error(err.message, { problems: err.problems });
      process.exit(2);
    }
    throw err;
  }
}
