// TLS material read from a Secret through the API, written where the store clients (which take a
// TLS directory, access.ts) read it: a private directory per Secret under the process's
// /tmp (a memory-backed emptyDir in the chart). Regions come and go, so the operator and the
// orchestrator read their Secrets from the API rather than from mounts.
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const root = join(tmpdir(), `hybridp2p-tls-${process.pid}`);
let cleanup = false;

/** Writes `files` (name → content) into the directory `name` (mode 0700, files 0600), rewriting
 * only what changed, and returns the directory. */
export function materialise(name: string, files: Record<string, string>): string {
  if (!/^[A-Za-z0-9._-]+$/.test(name)) throw new Error(`invalid directory name "${name}"`);
  if (!cleanup) {
    cleanup = true;
    process.once("exit", () => rmSync(root, { recursive: true, force: true }));
  }
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  for (const [file, content] of Object.entries(files)) {
    const path = join(dir, file);
    let same = false;
    try {
      same = readFileSync(path, "utf8") === content;
    } catch {}
    if (!same) writeFileSync(path, content, { mode: 0o600 });
  }
  return dir;
}
