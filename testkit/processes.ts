// Child processes for the local environment: started with their output in a log file,
// stopped with SIGTERM then SIGKILL, and all killed if this process exits first.
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, openSync, readFileSync } from "node:fs";
import { createServer, Socket } from "node:net";
import { sleep } from "../platform/time.ts";

export interface Proc {
  name: string;
  logFile: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

const live = new Set<Proc>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Last resort when the owner forgets or crashes: no service outlives the process that started it.
  process.on("exit", () => {
    for (const p of live) p.child.kill("SIGKILL");
  });
}

export interface StartOptions {
  env?: NodeJS.ProcessEnv;
  uid?: number;
  gid?: number;
  cwd?: string;
  /** How long SIGTERM has before SIGKILL. Default 5 s. */
  stopGraceMs?: number;
}

export function startProcess(
  name: string,
  command: string,
  args: string[],
  logFile: string,
  opts: StartOptions = {},
): Proc {
  installExitHook();
  const fd = openSync(logFile, "a");
  const child = spawn(command, args, {
    stdio: ["ignore", fd, fd],
    env: opts.env ?? process.env,
    uid: opts.uid,
    gid: opts.gid,
    cwd: opts.cwd,
  });
  closeSync(fd);
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const proc: Proc = {
    name,
    logFile,
    child,
    async stop() {
      live.delete(proc);
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), opts.stopGraceMs ?? 5000);
      await exited;
      clearTimeout(timer);
    },
  };
  child.once("exit", () => live.delete(proc));
  live.add(proc);
  return proc;
}

export function logTail(file: string, lines = 25): string {
  try {
    return readFileSync(file, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
}

/** Polls `probe` until it returns true; fails early with the log if the process dies. */
export async function waitUntil(
  proc: Proc,
  what: string,
  probe: () => Promise<boolean>,
  timeoutMs = 60_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (proc.child.exitCode !== null || proc.child.signalCode !== null) {
      throw new Error(
        `${proc.name} exited (${proc.child.exitCode ?? proc.child.signalCode}) before ${what}. Last lines of ${proc.logFile}:\n${logTail(proc.logFile)}`,
      );
    }
    if (await probe().catch(() => false)) return;
    if (Date.now() > deadline) {
      throw new Error(
        `${proc.name}: timed out after ${timeoutMs} ms waiting for ${what}. Last lines of ${proc.logFile}:\n${logTail(proc.logFile)}`,
      );
    }
    await sleep(100);
  }
}

// Ports this process has handed out. A port is free again once freePort closes its probe, so
// the kernel may hand it to the next freePort before its service has bound it: services started
// side by side (the local environment starts nine ports' worth at once) could get the same one.
const handedOut = new Set<number>();

/**
 * A free TCP port on loopback, never one this process has handed out before. The kernel picks it;
 * the small race with other processes' binders is accepted.
 */
export async function freePort(): Promise<number> {
  for (let tries = 0; tries < 1000; tries++) {
    const port = await kernelPickedPort();
    if (handedOut.has(port)) continue;
    handedOut.add(port);
    return port;
  }
  throw new Error(`no free port on loopback that this process has not handed out (${handedOut.size} so far)`);
}

function kernelPickedPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      if (addr === null || typeof addr === "string") return reject(new Error("no port"));
      srv.close(() => resolve(addr.port));
    });
  });
}

/** Whether a TCP connection to `host:port` opens within a second (it is closed at once). */
export function tcpOpen(port: number, host = "127.0.0.1"): Promise<boolean> {
  return new Promise((resolve) => {
    const s = new Socket();
    s.setTimeout(1000);
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
    s.once("timeout", () => {
      s.destroy();
      resolve(false);
    });
    s.connect(port, host);
  });
}
