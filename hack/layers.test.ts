// The layer rules in biome.json (DESIGN.md, Layout) must fail on a planted violation: each case
// writes a tiny tree into a temporary folder, lints it with the repository's own biome.json and
// expects the named rule to fire; a tree that keeps the layers lints clean.
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";

const repoRoot = new URL("..", import.meta.url).pathname;
const biome = join(repoRoot, "node_modules/.bin/biome");
const config = JSON.parse(readFileSync(join(repoRoot, "biome.json"), "utf8")) as Record<string, unknown>;
delete config.$schema;
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** Lints `files` (path -> source) under the project's rules; returns biome's exit code and output. */
function lint(files: Record<string, string>): { code: number; out: string } {
  const dir = mkdtempSync(join(tmpdir(), "layers-"));
  dirs.push(dir);
  writeFileSync(join(dir, "biome.json"), JSON.stringify(config));
  for (const [path, src] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), src);
  }
  const r = spawnSync(biome, ["lint", "--max-diagnostics=50", "."], { cwd: dir, encoding: "utf8" });
  return { code: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
}

const leaf = "export const x = 1;\n";
const uses = (spec: string) => `import { x } from "${spec}";\nexport const y = x;\n`;

describe("layer rules (biome.json)", () => {
  it("pass a tree that keeps the layers", () => {
    const r = lint({
      "platform/log.ts": leaf,
      "operator/main.ts": uses("../platform/log.ts"),
      "workloads/main.ts": uses("../platform/log.ts"),
      "cli/main.ts": `${uses("../operator/main.ts")}import { y as z } from "../workloads/main.ts";\nexport const w = z;\n`,
      "testkit/kit.ts": uses("../operator/main.ts"),
      "workloads/main.test.ts": uses("../testkit/kit.ts"),
      "hack/tool.ts": uses("../testkit/kit.ts"),
    });
    expect(r.out).not.toContain("noRestrictedImports");
    expect(r.code).toBe(0);
  });

  it.each([
    ["a workload importing the operator", "workloads/a.ts", "../operator/b.ts", "operator/b.ts"],
    ["the operator importing a workload", "operator/a.ts", "../workloads/b.ts", "workloads/b.ts"],
    ["platform importing the operator", "platform/a.ts", "../operator/b.ts", "operator/b.ts"],
    ["product code importing the test kit", "workloads/a.ts", "../testkit/b.ts", "testkit/b.ts"],
    ["product code importing dev tooling", "operator/a.ts", "../hack/b.ts", "hack/b.ts"],
    ["the CLI importing the test kit", "cli/a.ts", "../testkit/b.ts", "testkit/b.ts"],
    ["the test kit importing dev tooling", "testkit/a.ts", "../hack/b.ts", "hack/b.ts"],
    ["a workload test importing the operator", "workloads/a.test.ts", "../operator/b.ts", "operator/b.ts"],
  ])("fail on %s", (_what, from, spec, target) => {
    const r = lint({ [from]: uses(spec), [target]: leaf });
    expect(r.out).toContain("lint/style/noRestrictedImports");
    expect(r.code).not.toBe(0);
  });

  it("fail on an import circle, type-only imports included", () => {
    const r = lint({
      "operator/a.ts": 'import type { B } from "./b.ts";\nexport interface A { b?: B }\n',
      "operator/b.ts": 'import type { A } from "./a.ts";\nexport interface B { a?: A }\n',
    });
    expect(r.out).toContain("lint/suspicious/noImportCycles");
    expect(r.code).not.toBe(0);
  });
});
