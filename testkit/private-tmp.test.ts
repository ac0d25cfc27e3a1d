import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { mountsUnder } from "./private-tmp.ts";

describe("mountsUnder", () => {
  const info = [
    "22 1 0:21 / / rw,relatime - ext4 /dev/vda rw",
    "30 22 0:30 / /tmp/run-a/node/pods rw - tmpfs tmpfs rw",
    "31 22 0:31 / /tmp/run-a rw - tmpfs tmpfs rw",
    "32 22 0:32 / /tmp/run-ab/x rw - tmpfs tmpfs rw",
    "33 22 0:33 / /tmp/with\\040space/m rw - tmpfs tmpfs rw",
    "",
  ].join("\n");

  it("finds the directory itself and mounts below it, not siblings sharing a prefix", () => {
    expect(mountsUnder(info, "/tmp/run-a")).toEqual(["/tmp/run-a/node/pods", "/tmp/run-a"]);
    expect(mountsUnder(info, "/tmp/run-c")).toEqual([]);
  });

  it("reads the kernel's octal escapes", () => {
    expect(mountsUnder(info, "/tmp/with space")).toEqual(["/tmp/with space/m"]);
  });
});

describe("usePrivateTmp in a process", () => {
  const module = new URL("./private-tmp.ts", import.meta.url).pathname;
  let base: string;
  afterEach(() => rmSync(base, { recursive: true, force: true }));

  /** Runs a node process that takes a private temp dir, writes into it, and has a child take one. */
  const run = (env: Record<string, string>) => {
    base = mkdtempSync(join(tmpdir(), "private-tmp-test-"));
    const script = `
      import { execFileSync } from "node:child_process";
      import { writeFileSync } from "node:fs";
      import { tmpdir } from "node:os";
      import { usePrivateTmp } from ${JSON.stringify(module)};
      const dir = usePrivateTmp("t");
      writeFileSync(tmpdir() + "/file", "x");
      const child = execFileSync(process.execPath, ["--input-type=module", "-e",
        "import { usePrivateTmp } from " + ${JSON.stringify(JSON.stringify(module))} + "; console.log(usePrivateTmp('c'));"],
        { encoding: "utf8" }).trim();
      console.log(JSON.stringify({ dir, tmp: tmpdir(), child }));`;
    const clean: NodeJS.ProcessEnv = { ...process.env, TMPDIR: base, ...env };
    delete clean.HYBRIDP2P_PRIVATE_TMP;
    const out = execFileSync(process.execPath, ["--input-type=module", "-e", script], {
      env: clean,
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
    });
    return JSON.parse(out.trim().split("\n").at(-1)!) as { dir: string; tmp: string; child: string };
  };

  it("points TMPDIR into a new directory, shares it with children, and removes it at exit", () => {
    const got = run({ HYBRIDP2P_KEEP_STATE: "" });
    expect(got.dir.startsWith(`${base}/hybridp2p-t-`)).toBe(true);
    expect(got.tmp).toBe(got.dir);
    expect(got.child).toBe(got.dir);
    expect(existsSync(got.dir)).toBe(false);
    expect(readdirSync(base)).toEqual([]);
  });

  it("keeps it with HYBRIDP2P_KEEP_STATE=1", () => {
    const got = run({ HYBRIDP2P_KEEP_STATE: "1" });
    expect(readdirSync(got.dir)).toEqual(["file"]);
  });
});
