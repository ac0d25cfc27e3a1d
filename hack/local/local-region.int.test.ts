// The README's main job, end to end in smoke mode: its own control plane and data services,
// the operator, the example region reconciled, then everything stopped again.
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const repoRoot = new URL("../..", import.meta.url).pathname;

describe("local region (hack/local/cli.ts up)", () => {
  it("comes up with the operator reconciling the example region, then stops cleanly", async () => {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [join(repoRoot, "hack/local/cli.ts"), "up", "--exit"],
      {
        encoding: "utf8",
        timeout: 170_000,
      },
    );
    expect(stdout).toMatch(/zone\.hybridp2p\.io\/prt-fild08\s+demo\s+(P2P|Server|Mixed|Fallback)\s/);
    expect(stdout).toMatch(/region\.hybridp2p\.io\/demo\s+\S+\s+2\s/);
    expect(stdout).toContain("The local region is up");
    expect(stdout).toContain("stopped; nothing left running");
  }, 180_000);
});
