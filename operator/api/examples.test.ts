import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { TSchema } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { API_VERSION, P2P_POLICY, REGION, ZONE } from "./constants.ts";
import { type P2PPolicy, P2PPolicySchema } from "./p2ppolicy.ts";
import { type Region, RegionSchema } from "./region.ts";
import { type Zone, ZoneSchema } from "./zone.ts";

const examplePath = fileURLToPath(new URL("../../examples/demo-region.yaml", import.meta.url));
const docs = parseAllDocuments(readFileSync(examplePath, "utf8")).map((d) => {
  expect(d.errors).toEqual([]);
  return d.toJS() as {
    apiVersion: string;
    kind: string;
    metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  };
});

const schemas: Record<string, TSchema> = {
  [REGION.kind]: RegionSchema,
  [ZONE.kind]: ZoneSchema,
  [P2P_POLICY.kind]: P2PPolicySchema,
};

describe("examples/demo-region.yaml", () => {
  it("holds a namespace, a region, two zones and a policy", () => {
    expect(docs.map((d) => `${d.kind}/${d.metadata.name}`)).toEqual([
      "Namespace/demo",
      "Region/demo",
      "Zone/prontera",
      "Zone/prt-fild08",
      "P2PPolicy/fields-p2p",
    ]);
    for (const d of docs.slice(1)) {
      expect(d.apiVersion).toBe(API_VERSION);
      expect(d.metadata.namespace).toBe("demo");
    }
  });

  it("matches the TypeBox schemas once defaulted", () => {
    for (const d of docs.slice(1)) {
      const schema = schemas[d.kind]!;
      const defaulted = Value.Default(schema, structuredClone(d));
      expect(
        [...Value.Errors(schema, defaulted)].map((e) => `${e.path}: ${e.message}`),
        d.kind,
      ).toEqual([]);
    }
  });

  it("wires the zones to the region and the policy to the field zone only", () => {
    const region = docs[1] as unknown as Region;
    const zones = docs.filter((d) => d.kind === ZONE.kind) as unknown as Zone[];
    const policy = docs[4] as unknown as P2PPolicy;
    for (const z of zones) expect(z.spec.regionRef.name).toBe(region.metadata!.name);
    const selected = zones.filter((z) =>
      Object.entries(policy.spec.zoneSelector.matchLabels ?? {}).every(
        ([k, v]) => z.metadata?.labels?.[k] === v,
      ),
    );
    expect(selected.map((z) => z.metadata!.name)).toEqual(["prt-fild08"]);
    expect(policy.spec.includeTowns ?? false).toBe(false);
    const town = zones.find((z) => z.metadata!.name === "prontera")!;
    expect(town.spec.maps.every((m) => m.type === "Town")).toBe(true);
  });

  it("uses managed data stores", () => {
    const region = docs[1] as unknown as Region;
    const stores = (Value.Default(RegionSchema, structuredClone(region)) as Region).spec.dataStores!;
    expect(Object.values(stores).map((s) => s?.mode)).toEqual(["Managed", "Managed", "Managed", "Managed"]);
  });
});
