// One temp directory per test run, bench or chaos command: TMPDIR points into it, so every temp
// file the process and its children make (test CAs, keysets, state dirs, browser profiles) lands
// there, and it is removed when the process exits. hack/test.sh wraps its whole run the same way;
// this covers `npx vitest`, `npm run bench:*` and `npm run chaos`, which left those in /tmp.
import { chmodSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const OWNED_BY_PARENT = "HYBRIDP2P_PRIVATE_TMP";

/**
 * Mount points at or below `dir`, from /proc/self/mountinfo text (field 5, octal escapes as the
 * kernel writes them). Removing a tree with a mount left in it would delete the mounted files.
 */
export function mountsUnder(mountinfo: string, dir: string): string[] {
  const decode = (p: string) =>
    p.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
  return mountinfo
    .split("\n")
    .map((line) => line.split(" ")[4])
    .filter((p): p is string => p !== undefined)
    .map(decode)
    .filter((p) => p === dir || p.startsWith(`${dir}/`));
}

/**
 * Points TMPDIR at a new directory under the current one and removes it at exit, unless
 * HYBRIDP2P_KEEP_STATE=1 (then it says where it is) or something is still mounted in it. A child
 * process that calls it again keeps its parent's directory: the parent removes it (hack/test.sh
 * marks its own directory so too). Nesting stays shallow on purpose: the local node's unix socket
 * paths live under TMPDIR and must fit in 108 bytes.
 */
export function usePrivateTmp(label: string): string {
  const inherited = process.env[OWNED_BY_PARENT];
  if (inherited !== undefined && inherited === process.env.TMPDIR) return inherited;
  const dir = mkdtempSync(join(tmpdir(), `hybridp2p-${label}-`));
  // As /tmp: services that run as their own user (PostgreSQL) make their files here too.
  chmodSync(dir, 0o1777);
  process.env.TMPDIR = dir;
  process.env[OWNED_BY_PARENT] = dir;
  process.on("exit", () => {
    if (process.env.HYBRIDP2P_KEEP_STATE === "1") {
      console.error(`temp files kept in ${dir}`);
      return;
    }
    const mounted = mountsUnder(readFileSync("/proc/self/mountinfo", "utf8"), dir);
    if (mounted.length > 0) {
      console.error(`temp files left in ${dir}: still mounted there: ${mounted.join(", ")}`);
      return;
    }
    rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}
