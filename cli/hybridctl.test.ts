import { describe, expect, it } from "vitest";
import type { PodReport } from "../platform/flags/layout.ts";
import { parseSelector } from "./commands/p2p.ts";
import { type Io, table } from "./common.ts";
import { run } from "./hybridctl.ts";
import { byReports, byStatus, progress } from "./rollout.ts";

const report = (pod: string, zone: string, epoch: number): PodReport => ({
  v: 1,
  pod,
  zone,
  namespace: "eu",
  service: "map-server",
  epoch,
  mode: "p2p",
  reason: "",
  since: "",
  updatedAt: "",
});

describe("hybridctl", () => {
  it("parses label selectors like kubectl", () => {
    expect(parseSelector("tier=field,size!=big,env in (a, b),!legacy,region")).toEqual({
      matchLabels: { tier: "field" },
      matchExpressions: [
        { key: "size", operator: "NotIn", values: ["big"] },
        { key: "env", operator: "In", values: ["a", "b"] },
        { key: "legacy", operator: "DoesNotExist" },
        { key: "region", operator: "Exists" },
      ],
    });
    expect(() => parseSelector("a b")).toThrow(/cannot parse/);
  });

  it("names what is missing: lagging pods and replicas not reporting", () => {
    const desired = new Map([
      ["a", 2],
      ["b", 3],
      ["c", 1],
    ]);
    const missing = progress(
      ["a", "b", "c"],
      desired,
      byReports(
        (zone) =>
          [report("a-0", "a", 7), report("a-1", "a", 7), report("b-0", "b", 7), report("b-1", "b", 6)].filter(
            (r) => r.zone === zone,
          ),
        () => 7,
      ),
    );
    expect(missing).toEqual([
      { zone: "b", detail: "1 of 3 replicas at epoch 7; lagging: b-1 at epoch 6; 1 replicas not reporting" },
      { zone: "c", detail: "0 of 1 replicas at epoch 7; 1 replicas not reporting" },
    ]);
  });

  it("reads the same progress from the Zones' status when there is no report channel", () => {
    const zone = (name: string, appliedEpoch: number | undefined, applied: number) => ({
      metadata: { name, namespace: "eu" },
      status: { appliedEpoch, replicas: { applied } },
    });
    const desired = new Map([
      ["a", 2],
      ["b", 3],
      ["c", 1],
      ["d", 0],
    ]);
    const missing = progress(
      ["a", "b", "c", "d"],
      desired,
      byStatus([zone("a", 7, 2), zone("b", 6, 2), zone("c", undefined, 0), zone("d", undefined, 0)], () => 7),
    );
    expect(missing).toEqual([
      { zone: "b", detail: "status: 2 of 3 replicas at the live epoch, lowest applied epoch 6" },
      { zone: "c", detail: "status: 0 of 1 replicas at the live epoch, lowest applied epoch none" },
    ]);
  });

  it("aligns tables", () => {
    expect(
      table([
        ["A", "BB"],
        ["ccc", "d"],
      ]),
    ).toBe("A     BB\nccc   d");
  });

  it("rejects bad usage with exit code 1 and a message", async () => {
    const lines: string[] = [];
    const io: Io = { out: (s) => lines.push(s), err: (s) => lines.push(s) };
    expect(await run(["p2p", "enable", "--kubeconfig", "/nonexistent"], io)).toBe(1);
    expect(
      await run(["fallback", "force", "--zone", "z", "--policy", "p", "--kubeconfig", "/dev/null"], io),
    ).toBe(1);
    expect(await run(["nonsense"], io)).toBe(1);
    expect(lines.join("\n")).toMatch(/error/);
  });
});
