// The browser client's static bundle: index.html, style.css and the ES modules of app.ts and
// everything it imports, with their types stripped (Node's own stripTypeScriptTypes: the same
// erasable TypeScript Node runs, no bundler) and `.ts` imports renamed `.js`. Paths inside the
// bundle mirror the repository's, so relative imports resolve unchanged.
//
//   node workloads/web/bundle.ts DIR    writes the bundle (the workload image does, at build time)
//
// A static import of anything but a relative module (a Node built-in, a package) fails the
// build: the browser could not load it. Dynamic imports (the SDK's default werift and `ws`
// stacks) are left alone: the browser client always passes its own, so they never run there.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { stripTypeScriptTypes } from "node:module";
import { dirname, join, relative, resolve } from "node:path";

const repoRoot = resolve(new URL("../..", import.meta.url).pathname);
const webDir = join(repoRoot, "workloads/web");
const ENTRY = join(webDir, "app.ts");
const STATIC = ["index.html", "style.css"];

const STATIC_IMPORT = /^[ \t]*(?:import|export)\b[^;]*?\bfrom\s*"([^"]+)"|^[ \t]*import\s*"([^"]+)"/gm;

export const CONTENT_TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".json": "application/json",
  ".png": "image/png",
};

/** Bundle path -> contents. */
export function buildWebBundle(): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const f of STATIC) out.set(f, readFileSync(join(webDir, f)));
  const seen = new Set<string>();
  const queue = [ENTRY];
  while (queue.length > 0) {
    const file = queue.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    const stripped = withoutWarning(() =>
      stripTypeScriptTypes(readFileSync(file, "utf8"), { mode: "strip" }),
    );
    const js = stripped.replace(STATIC_IMPORT, (whole: string, from?: string, bare?: string) => {
      const spec = (from ?? bare)!;
      if (!spec.startsWith("./") && !spec.startsWith("../"))
        throw new Error(`${relative(repoRoot, file)}: the browser cannot load "${spec}"`);
      queue.push(resolve(dirname(file), spec));
      return whole.replace(`"${spec}"`, `"${spec.replace(/\.ts$/, ".js")}"`);
    });
    out.set(relative(repoRoot, file).replace(/\.ts$/, ".js"), Buffer.from(js));
  }
  return out;
}

/** stripTypeScriptTypes is experimental in Node 24 and says so once per process. */
function withoutWarning<T>(fn: () => T): T {
  const emit = process.emitWarning;
  process.emitWarning = ((w: string | Error, ...rest: unknown[]) => {
    if (String(w).includes("stripTypeScriptTypes")) return;
    (emit as (...a: unknown[]) => void).call(process, w, ...rest);
  }) as typeof process.emitWarning;
  try {
    return fn();
  } finally {
    process.emitWarning = emit;
  }
}

export function writeWebBundle(dir: string): number {
  const files = buildWebBundle();
  for (const [path, body] of files) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), body);
  }
  return files.size;
}

if (import.meta.main) {
  const dir = process.argv[2];
  if (!dir) {
    process.stderr.write("usage: node workloads/web/bundle.ts DIR\n");
    process.exit(2);
  }
  const n = writeWebBundle(dir);
  process.stdout.write(`wrote ${n} files to ${dir}\n`);
}
