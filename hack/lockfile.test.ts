// Installs follow package-lock.json exactly (hack/ensure-deps.sh runs `npm ci`): a package.json
// that asks for something the lock does not name is refused before anything is installed.
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";

const repoRoot = new URL("..", import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), "lockfile-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("package-lock.json", () => {
  it("names every dependency of package.json at a version package.json accepts", () => {
    const pkg = JSON.parse(readFileSync(join(repoRoot, "package.json"), "utf8"));
    const lock = JSON.parse(readFileSync(join(repoRoot, "package-lock.json"), "utf8"));
    const root = lock.packages[""];
    expect(root.dependencies).toEqual(pkg.dependencies);
    expect(root.devDependencies).toEqual(pkg.devDependencies);
    for (const name of [...Object.keys(pkg.dependencies), ...Object.keys(pkg.devDependencies)]) {
      expect(lock.packages[`node_modules/${name}`]?.version, name).toBeTypeOf("string");
    }
  });

  it("makes npm ci refuse a package.json that wants what the lock does not name", () => {
    const pkg = JSON.parse(readFileSync(join(repoRoot, "package.json"), "utf8"));
    pkg.dependencies["left-pad"] = "^1.3.0";
    writeFileSync(join(dir, "package.json"), JSON.stringify(pkg, null, 2));
    copyFileSync(join(repoRoot, "package-lock.json"), join(dir, "package-lock.json"));
    const r = spawnSync("npm", ["ci", "--ignore-scripts", "--no-audit", "--no-fund"], {
      cwd: dir,
      encoding: "utf8",
      timeout: 60_000,
    });
    expect(r.status).not.toBe(0);
    expect(`${r.stdout}${r.stderr}`).toMatch(/in sync|Missing: left-pad/);
    expect(readFileSync(join(dir, "package-lock.json"), "utf8")).toBe(
      readFileSync(join(repoRoot, "package-lock.json"), "utf8"),
    );
  });
});
