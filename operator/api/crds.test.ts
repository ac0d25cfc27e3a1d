import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Value } from "@sinclair/typebox/value";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { invalidManifests } from "../../testkit/invalid-manifests.ts";
import { CATEGORY, GROUP, VERSION } from "./constants.ts";
import { customResourceDefinitions } from "./crd.ts";
import { CRDS_DIR, HEADER, renderCrds } from "./generate.ts";
import { P2PPolicySpec } from "./p2ppolicy.ts";

type Node = Record<string, unknown>;
const isNode = (v: unknown): v is Node => typeof v === "object" && v !== null && !Array.isArray(v);

/** Every schema node of an openAPIV3Schema with its path. */
function* schemaNodes(node: Node, path = ""): Generator<[string, Node]> {
  yield [path || "<root>", node];
  if (isNode(node.properties)) {
    for (const [name, child] of Object.entries(node.properties))
      yield* schemaNodes(child as Node, `${path}.${name}`);
  }
  if (isNode(node.additionalProperties)) yield* schemaNodes(node.additionalProperties, `${path}.*`);
  if (isNode(node.items)) yield* schemaNodes(node.items, `${path}[]`);
}

interface CrdShape {
  metadata: { name: string };
  spec: {
    group: string;
    scope: string;
    names: { kind: string; plural: string; shortNames: string[]; categories: string[] };
    versions: {
      name: string;
      subresources: { status?: object };
      additionalPrinterColumns: { name: string; jsonPath: string }[];
      schema: { openAPIV3Schema: Node };
    }[];
  };
}
const crds = customResourceDefinitions() as unknown as CrdShape[];
const schemaOf = (crd: CrdShape) => crd.spec.versions[0]!.schema.openAPIV3Schema;
const allRules = crds.flatMap((crd) =>
  [...schemaNodes(schemaOf(crd))].flatMap(([path, node]) =>
    ((node["x-kubernetes-validations"] ?? []) as { rule: string; message?: string }[]).map((r) => ({
      kind: crd.spec.names.kind,
      path,
      ...r,
    })),
  ),
);

describe("crds/", () => {
  it("matches renderCrds() (run `npm run gen:crds` after changing operator/api)", () => {
    const rendered = renderCrds();
    const onDisk = readdirSync(CRDS_DIR).filter((f) => f.startsWith(`${GROUP}_`));
    expect(onDisk.sort()).toEqual(rendered.map((r) => r.fileName).sort());
    for (const { fileName, yaml } of rendered) {
      expect(readFileSync(join(CRDS_DIR, fileName), "utf8"), fileName).toBe(yaml);
    }
  });

  it("starts each file with the generated-file header and parses back to the CRD", () => {
    const rendered = renderCrds();
    rendered.forEach(({ yaml }, i) => {
      expect(yaml.startsWith(HEADER)).toBe(true);
      expect(parse(yaml)).toEqual(crds[i]);
    });
  });
});

describe("CRD definitions", () => {
  it("are namespaced, in one group and version, with status, short names and the category", () => {
    expect(crds.map((c) => c.spec.names.kind)).toEqual(["Region", "Zone", "P2PPolicy", "WorldEvent"]);
    const shortNames = crds.flatMap((c) => c.spec.names.shortNames);
    expect(new Set(shortNames).size).toBe(shortNames.length);
    for (const crd of crds) {
      expect(crd.metadata.name).toBe(`${crd.spec.names.plural}.${GROUP}`);
      expect(crd.spec.group).toBe(GROUP);
      expect(crd.spec.scope).toBe("Namespaced");
      expect(crd.spec.names.categories).toEqual([CATEGORY]);
      expect(crd.spec.names.shortNames.length).toBeGreaterThan(0);
      expect(crd.spec.versions.map((v) => v.name)).toEqual([VERSION]);
      expect(crd.spec.versions[0]!.subresources.status).toEqual({});
    }
  });

  it("have structural schemas", () => {
    const problems: string[] = [];
    for (const crd of crds) {
      for (const [path, node] of schemaNodes(schemaOf(crd))) {
        const where = `${crd.spec.names.kind} ${path}`;
        const intOrString = node["x-kubernetes-int-or-string"] === true;
        if (intOrString) {
          if ("type" in node) problems.push(`${where}: int-or-string must not have a type`);
          // The one anyOf structural schemas allow.
          if ("anyOf" in node && JSON.stringify(node.anyOf) !== '[{"type":"integer"},{"type":"string"}]') {
            problems.push(`${where}: unexpected anyOf`);
          }
        } else {
          if (typeof node.type !== "string") problems.push(`${where}: no type`);
          if ("anyOf" in node) problems.push(`${where}: anyOf`);
        }
        for (const key of ["oneOf", "allOf", "not", "const", "patternProperties", "$ref", "nullable"]) {
          if (key in node) problems.push(`${where}: ${key}`);
        }
        if (("properties" in node || "additionalProperties" in node) && node.type !== "object") {
          problems.push(`${where}: properties on a non-object`);
        }
        if ("properties" in node && "additionalProperties" in node) {
          problems.push(`${where}: both properties and additionalProperties`);
        }
        if (node.type === "array" && !isNode(node.items)) problems.push(`${where}: array without items`);
        if ("enum" in node && node.type !== "string") problems.push(`${where}: enum on a non-string`);
        for (const key of Object.keys(node)) {
          if (key.startsWith("x-") && !key.startsWith("x-kubernetes-")) problems.push(`${where}: ${key}`);
        }
        if (node["x-kubernetes-list-type"] === "map") {
          const items = node.items as Node;
          const required = (items.required ?? []) as string[];
          for (const key of node["x-kubernetes-list-map-keys"] as string[]) {
            if (!required.includes(key)) problems.push(`${where}: list map key ${key} not required`);
          }
        }
      }
    }
    expect(problems).toEqual([]);
  });

  it("give every CEL rule a message", () => {
    expect(allRules.length).toBeGreaterThan(10);
    for (const r of allRules) expect(r.message, `${r.kind} ${r.path}: ${r.rule}`).toMatch(/\S/);
  });

  it("bound every string and list that a CEL rule or a list map depends on", () => {
    // The apiserver refuses CRDs whose estimated CEL cost is too high; unbounded lists are the usual cause.
    for (const crd of crds) {
      for (const [path, node] of schemaNodes(schemaOf(crd))) {
        if (node.type === "array")
          expect(node.maxItems, `${crd.spec.names.kind} ${path}`).toBeTypeOf("number");
      }
    }
  });

  it("have printer columns that point at fields of the schema", () => {
    for (const crd of crds) {
      for (const col of crd.spec.versions[0]!.additionalPrinterColumns) {
        if (col.jsonPath === ".metadata.creationTimestamp") continue;
        const segments = col.jsonPath
          .replace(/\[\?.*\]\..*$/, "")
          .split(".")
          .slice(1);
        let node: Node | undefined = schemaOf(crd);
        for (const s of segments) node = (node?.properties as Record<string, Node> | undefined)?.[s];
        expect(node, `${crd.spec.names.kind} column ${col.name}`).toBeDefined();
      }
    }
  });

  it("spell out defaults of objects in full, since the apiserver checks them against CEL as written", () => {
    expect(Value.Default(P2PPolicySpec, { zoneSelector: {} })).toMatchObject({
      enabled: true,
      includeTowns: false,
      forceFallback: false,
      rolloutPercent: 100,
      priority: 0,
      services: ["map-server", "gateway", "coordinator", "char-server", "login-server"],
      transports: ["webrtc-datachannel", "websocket-relay"],
      mesh: { maxPeers: 40, maxLinks: 8, peerTTLSeconds: 30, refreshSeconds: 10 },
      fallback: {
        latencyMs: { warn: 100, critical: 200, max: 300 },
        lossPercent: { warn: 1, critical: 2, max: 5 },
        jitterMs: { warn: 20, critical: 50 },
        coordinatorTimeoutMs: 1500,
        minPeers: 2,
      },
      recovery: { mode: "Auto" },
    });
    const mesh = (schemaOf(crds[2]!).properties as Record<string, Node>).spec!.properties as Record<
      string,
      Node
    >;
    expect(mesh.mesh!.default).toEqual({ maxPeers: 40, maxLinks: 8, peerTTLSeconds: 30, refreshSeconds: 10 });
  });
});

describe("invalid manifests", () => {
  it("are at least 30, with unique names", () => {
    expect(invalidManifests.length).toBeGreaterThanOrEqual(30);
    const names = invalidManifests.map((m) => m.name);
    expect(new Set(names).size).toBe(names.length);
  });

  it("cover every CEL rule", () => {
    const uncovered = allRules.filter(
      (r) => !invalidManifests.some((m) => r.message!.startsWith(m.expectedMessage)),
    );
    expect(uncovered.map((r) => `${r.kind} ${r.path}: ${r.message}`)).toEqual([]);
  });

  it("cover every kind, with enums, bounds, required fields and types", () => {
    const messages = invalidManifests.map((m) => m.expectedMessage);
    for (const kind of ["Region", "Zone", "P2PPolicy", "WorldEvent"]) {
      expect(invalidManifests.filter((m) => m.manifest.kind === kind).length).toBeGreaterThanOrEqual(8);
    }
    for (const fragment of [
      "Unsupported value",
      "less than or equal",
      "greater than or equal",
      "Required value",
      "must be of type",
      "Duplicate value",
      "should match",
      "Too long",
    ]) {
      expect(
        messages.some((m) => m.includes(fragment)),
        fragment,
      ).toBe(true);
    }
  });
});
