// `kubectl get` is the first thing an operator of a game world reads: the example region,
// applied for real, shows the printer columns, short names and category.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, inject, it } from "vitest";
import { parseAllDocuments, stringify } from "yaml";
import { binDir } from "../../testkit/local/services.ts";

const env = inject("localEnv");
const repoRoot = new URL("../..", import.meta.url).pathname;
const namespace = `printer-columns-${process.pid}`;

function kubectl(args: string[], input?: string): string {
  return execFileSync(join(binDir(), "kubectl"), ["--kubeconfig", env.kubeconfig!, ...args], {
    encoding: "utf8",
    input,
  });
}

/** Header row of `kubectl get` output, split on runs of spaces. */
function header(table: string): string[] {
  return table
    .split("\n")[0]!
    .trim()
    .split(/\s{2,}/);
}

describe("kubectl get on the example region", () => {
  beforeAll(() => {
    kubectl(["apply", "--server-side", "-f", join(repoRoot, "crds")]);
    kubectl(["wait", "--for=condition=Established", "--timeout=60s", "-f", join(repoRoot, "crds")]);
    kubectl(["create", "namespace", namespace]);
    const docs = parseAllDocuments(readFileSync(join(repoRoot, "examples/demo-region.yaml"), "utf8"))
      .map((d) => d.toJS())
      .filter((o) => o.kind !== "Namespace")
      .map((o) => ({ ...o, metadata: { ...o.metadata, namespace } }));
    kubectl(
      ["apply", "--server-side", "-f", "-"],
      docs.map((d) => stringify(d, { version: "1.1" })).join("---\n"),
    );
  });

  it("shows the Region columns", () => {
    expect(header(kubectl(["get", "regions", "-n", namespace]))).toEqual([
      "NAME",
      "READY",
      "ZONES",
      "P2P",
      "GATEWAY",
      "AGE",
    ]);
  });

  it("shows the Zone columns, one row per example zone", () => {
    const out = kubectl(["get", "zones", "-n", namespace]);
    expect(header(out)).toEqual(expect.arrayContaining(["NAME", "REGION", "MODE", "EPOCH", "READY", "AGE"]));
    expect(out).toMatch(/^prontera\s+demo\s/m);
    expect(out).toMatch(/^prt-fild08\s+demo\s/m);
  });

  it("shows the P2PPolicy columns with the spec values", () => {
    const out = kubectl(["get", "p2ppolicies", "-n", namespace]);
    expect(header(out)).toEqual(
      expect.arrayContaining(["NAME", "ENABLED", "PRIORITY", "MATCHED", "APPLIED", "EPOCH", "AGE"]),
    );
    expect(out).toMatch(/\strue\s/);
  });

  it("lists all three kinds by the hybridp2p category and by short names", () => {
    const all = kubectl(["get", "hybridp2p", "-n", namespace, "-o", "name"]).trim().split("\n").sort();
    expect(all).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^region\.hybridp2p\.io\/demo$/),
        expect.stringMatching(/^zone\.hybridp2p\.io\/prontera$/),
        expect.stringMatching(/^p2ppolicy\.hybridp2p\.io\//),
      ]),
    );
    const short = kubectl(["get", "rgn,zn,p2pp", "-n", namespace, "-o", "name"]).trim().split("\n").sort();
    expect(short).toEqual(all);
  });
});
