import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Value } from "@sinclair/typebox/value";
import { describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { API_VERSION, WORLD_EVENT } from "./constants.ts";
import { WorldEventSchema } from "./worldevent.ts";

const path = fileURLToPath(new URL("../../examples/world-event.yaml", import.meta.url));
const docs = parseAllDocuments(readFileSync(path, "utf8")).map((d) => {
  expect(d.errors).toEqual([]);
  return d.toJS() as { apiVersion: string; kind: string; metadata: { name: string; namespace: string } };
});

describe("examples/world-event.yaml", () => {
  it("holds WorldEvents of the demo namespace that match the schema once defaulted", () => {
    expect(docs.map((d) => `${d.kind}/${d.metadata.name}`)).toEqual([
      "WorldEvent/evening-baphomet",
      "WorldEvent/crowded-fields",
    ]);
    for (const d of docs) {
      expect(d.apiVersion).toBe(API_VERSION);
      expect(d.kind).toBe(WORLD_EVENT.kind);
      expect(d.metadata.namespace).toBe("demo");
      const defaulted = Value.Default(WorldEventSchema, structuredClone(d));
      expect([...Value.Errors(WorldEventSchema, defaulted)].map((e) => `${e.path}: ${e.message}`)).toEqual(
        [],
      );
    }
  });
});
