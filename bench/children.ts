// Child processes of a benchmark: the parent forks its own script with a role, then calls into
// the child (`call(cmd, arg)` answered by the child's handler) until it tells it to exit.
import { type ChildProcess, fork } from "node:child_process";

type Request = { id: number; cmd: string; arg?: unknown };
export type Handler = (cmd: string, arg: unknown) => Promise<unknown> | unknown;

/** A child's side: answer the parent's requests until told to exit. */
export function serve(handler: Handler): void {
  process.on("message", async (m: Request) => {
    try {
      process.send!({ id: m.id, ok: true, value: await handler(m.cmd, m.arg) });
    } catch (err) {
      process.send!({ id: m.id, ok: false, error: String(err) });
    }
    if (m.cmd === "exit") setTimeout(() => process.exit(0), 10);
  });
  process.on("disconnect", () => process.exit(0));
}

export interface Child {
  proc: ChildProcess;
  call<T>(cmd: string, arg?: unknown): Promise<T>;
  exit(): Promise<void>;
}

/** Forks `script` (a module's own path) with `role` as its argument. `profileDir`: CPU profiles. */
export function spawnChild(script: string, role: string, profileDir?: string): Child {
  const proc = fork(script, [role], {
    stdio: ["ignore", "inherit", "inherit", "ipc"],
    execArgv: [...process.execArgv, ...(profileDir ? ["--cpu-prof", `--cpu-prof-dir=${profileDir}`] : [])],
  });
  let next = 0;
  const waiting = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  proc.on("message", (m: { id: number; ok: boolean; value?: unknown; error?: string }) => {
    const w = waiting.get(m.id);
    waiting.delete(m.id);
    if (m.ok) w?.resolve(m.value);
    else w?.reject(new Error(m.error));
  });
  proc.on("exit", () => {
    for (const w of waiting.values()) w.reject(new Error(`${role} exited`));
  });
  const call = <T>(cmd: string, arg?: unknown) =>
    new Promise<T>((resolve, reject) => {
      const id = next++;
      waiting.set(id, { resolve: resolve as (v: unknown) => void, reject });
      proc.send({ id, cmd, arg });
    });
  return {
    proc,
    call,
    async exit() {
      const gone = new Promise((r) => proc.once("exit", r));
      await call("exit").catch(() => undefined);
      const t = setTimeout(() => proc.kill("SIGKILL"), 5000);
      await gone;
      clearTimeout(t);
    },
  };
}
