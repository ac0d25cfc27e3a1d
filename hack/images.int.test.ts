// The images build (hack/build-images.sh: podman here, on the local base image) and run: Node 24
// as a non-root user, every workload subcommand in the workload image, the operator's CLI.
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { WORKLOADS } from "../workloads/main.ts";

const repoRoot = new URL("..", import.meta.url).pathname;
const PODMAN = ["--runtime", "runc", "--cgroup-manager=cgroupfs"];
const LIMITS = ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=4096:4096"];
const images = new Map<string, { size: number; seconds: number }>();

function podmanRun(image: string, args: string[], entrypoint?: string): string {
  const ep = entrypoint ? ["--entrypoint", entrypoint] : [];
  return execFileSync("podman", [...PODMAN, "run", "--rm", ...LIMITS, ...ep, image, ...args], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
  });
}

describe("the operator and workload images", () => {
  beforeAll(() => {
    // Cached layers make a rebuild take seconds; the first build installs the npm dependencies.
    const out = execFileSync("bash", [join(repoRoot, "hack/build-images.sh")], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
    });
    for (const m of out.matchAll(/^IMAGE (\S+) (\d+) (\d+)$/gm)) {
      images.set(m[1]!, { size: Number(m[2]), seconds: Number(m[3]) });
      console.log(`RESULT image ${m[1]} ${(Number(m[2]) / 1e6).toFixed(0)} MB, built in ${m[3]} s`);
    }
  }, 600_000);

  const workload = "ghcr.io/hybrid-p2p/workload:0.1.0";
  const operator = "ghcr.io/hybrid-p2p/operator:0.1.0";

  it("are built under the names the chart and the operator pin", () => {
    expect([...images.keys()].sort()).toEqual([operator, workload]);
  });

  it("run Node 24 as the non-root user 1000", () => {
    for (const image of [workload, operator]) {
      expect(podmanRun(image, ["--version"], "node").trim()).toMatch(/^v24\./);
      expect(podmanRun(image, ["-u"], "id").trim()).toBe("1000");
    }
  });

  it("the workload image has a subcommand for every workload", () => {
    const help = podmanRun(workload, ["--help"]);
    for (const w of WORKLOADS) expect(help).toContain(w.name);
    const first = WORKLOADS[0]!.name;
    expect(podmanRun(workload, [first, "--help"])).toContain(`Usage: hybrid-workload ${first}`);
  });

  it("the operator image starts the operator's CLI", () => {
    expect(podmanRun(operator, ["run", "--help"])).toContain("--leader-elect");
  });

  it("hold production dependencies only, without source maps", () => {
    const ls = podmanRun(workload, ["node_modules"], "ls");
    expect(ls).toContain("@kubernetes");
    for (const dev of ["vitest", "typescript", "@biomejs", "fast-check"]) expect(ls).not.toContain(dev);
    const maps = podmanRun(workload, ["node_modules", "-name", "*.map"], "find").trim();
    expect(maps).toBe("");
  });
});
