import { describe, expect, it } from "vitest";
import { isSubset } from "./children.ts";
import { mergeConditions, phaseConditions } from "./conditions.ts";

describe("isSubset (does applying desired change live?)", () => {
  it("ignores fields the server added and compares the rest", () => {
    const desired = {
      spec: { replicas: 1, template: { spec: { containers: [{ name: "a", image: "x" }] } } },
    };
    const live = {
      spec: {
        replicas: 1,
        revisionHistoryLimit: 10,
        template: { spec: { containers: [{ name: "a", image: "x", imagePullPolicy: "IfNotPresent" }] } },
      },
    };
    expect(isSubset(desired, live)).toBe(true);
    expect(isSubset(desired, { spec: { ...live.spec, replicas: 5 } })).toBe(false);
    expect(
      isSubset(desired, {
        spec: { replicas: 1, template: { spec: { containers: [{ name: "a", image: "y" }] } } },
      }),
    ).toBe(false);
  });

  it("treats canonicalised quantities as equal", () => {
    expect(isSubset({ cpu: "0.5", memory: "1024Mi" }, { cpu: "500m", memory: "1Gi" })).toBe(true);
    expect(isSubset({ cpu: "1" }, { cpu: "1000m" })).toBe(true);
    expect(isSubset({ cpu: "2" }, { cpu: "1" })).toBe(false);
    expect(isSubset({ image: "a:v1.2" }, { image: "a:v1.3" })).toBe(false);
  });

  it("treats an empty desired list or map as matching an omitted one", () => {
    expect(isSubset({ a: [], b: {} }, {})).toBe(true);
    expect(isSubset({ a: [1] }, {})).toBe(false);
  });

  it("matches lists others extended, in any order", () => {
    expect(isSubset([{ uid: "1" }], [{ uid: "2" }, { uid: "1" }])).toBe(true);
    expect(isSubset([{ uid: "3" }], [{ uid: "2" }, { uid: "1" }])).toBe(false);
  });
});

describe("conditions", () => {
  const t0 = new Date("2026-01-01T00:00:00Z");
  const t1 = new Date("2026-01-01T00:05:00Z");

  it("sets Ready, Reconciling and Stalled consistently", () => {
    const c = phaseConditions({
      phase: "Stalled",
      reason: "RegionNotFound",
      message: 'Region "x" not found',
    });
    expect(c.map((x) => [x.type, x.status])).toEqual([
      ["Ready", "False"],
      ["Reconciling", "False"],
      ["Stalled", "True"],
    ]);
  });

  it("moves lastTransitionTime only when a status flips, and keeps other writers' conditions", () => {
    const first = mergeConditions(
      [
        {
          type: "P2PActive",
          status: "True",
          reason: "X",
          message: "",
          lastTransitionTime: "2025-01-01T00:00:00Z",
        },
      ],
      phaseConditions({ phase: "Reconciling", reason: "Progressing", message: "waiting" }),
      1,
      t0,
    );
    const again = mergeConditions(
      first,
      phaseConditions({ phase: "Reconciling", reason: "Progressing", message: "waiting" }),
      1,
      t1,
    );
    expect(again).toEqual(first);
    const ready = mergeConditions(
      again,
      phaseConditions({ phase: "Ready", reason: "Available", message: "ok" }),
      2,
      t1,
    );
    expect(ready.find((c) => c.type === "Ready")).toMatchObject({
      status: "True",
      lastTransitionTime: "2026-01-01T00:05:00Z",
      observedGeneration: 2,
    });
    expect(ready.find((c) => c.type === "Stalled")?.lastTransitionTime).toBe("2026-01-01T00:00:00Z");
    expect(ready.find((c) => c.type === "P2PActive")?.lastTransitionTime).toBe("2025-01-01T00:00:00Z");
  });
});
