// Helpers that make TypeBox emit Kubernetes structural schemas while keeping precise static types.
//
// TypeBox's own encodings of some types are not structural: literal unions become anyOf/const,
// records become patternProperties. The helpers below emit the Kubernetes forms instead and give
// TypeBox a builtin [Kind] where one fits, so Value.Default and Value.Check still work on them.

import {
  FormatRegistry,
  Kind,
  type ObjectOptions,
  type SchemaOptions,
  type Static,
  type TObject,
  type TProperties,
  type TSchema,
  type TUnsafe,
  Type,
} from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";

/** One x-kubernetes-validations entry. */
export interface CelRule {
  rule: string;
  message: string;
  fieldPath?: string;
  reason?: "FieldValueInvalid" | "FieldValueForbidden" | "FieldValueRequired" | "FieldValueDuplicate";
}

/** Schema options carrying CEL rules: `Type.Object({...}, { ...cel(rule1, rule2) })`. */
export function cel(...rules: CelRule[]): { "x-kubernetes-validations": CelRule[] } {
  return { "x-kubernetes-validations": rules };
}

/** `{type: string, enum: [...]}` typed as the union of the values. */
export function StringEnum<const T extends readonly string[]>(
  values: T,
  options: SchemaOptions = {},
): TUnsafe<T[number]> {
  return Type.Unsafe<T[number]>({ ...options, [Kind]: "String", type: "string", enum: [...values] });
}

/**
 * An object whose own default is the object its fields' defaults make, so the apiserver fills
 * nested defaults when the object is absent. The default is spelled out in full because the
 * apiserver checks a default against the CEL rules as written, without defaulting inside it.
 */
export function DefaultedObject<T extends TProperties>(
  properties: T,
  options: ObjectOptions = {},
): TObject<T> {
  const schema = Type.Object(properties, options);
  return { ...schema, default: Value.Default(schema, {}) };
}

/** A map with string keys: `{type: object, additionalProperties: value}`. */
export function StringMap<V extends TSchema>(
  value: V,
  options: ObjectOptions = {},
): TUnsafe<Record<string, Static<V>>> {
  return Type.Unsafe<Record<string, Static<V>>>({
    ...options,
    [Kind]: "Object",
    type: "object",
    properties: {},
    additionalProperties: value,
  });
}

// resource.Quantity's serialization, as kubebuilder emits it; compute resources take no sign.
const NON_NEGATIVE_QUANTITY_PATTERN =
  "^\\+?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))))?$";
const QUANTITY_PATTERN =
  "^(\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))))?$";

/** A resource.Quantity ("500m", "1Gi", 2): int-or-string, in the exact form structural schemas allow. */
export function Quantity(options: SchemaOptions & { nonNegative?: boolean } = {}): TUnsafe<string | number> {
  const { nonNegative, ...rest } = options;
  return Type.Unsafe<string | number>({
    ...rest,
    [Kind]: "Union",
    anyOf: [Type.Integer(), Type.String()],
    // minimum applies to the integer form, the pattern to the string form.
    // maxLength bounds the cost of CEL rules that parse it.
    ...(nonNegative ? { minimum: 0, maxLength: 64 } : {}),
    pattern: nonNegative ? NON_NEGATIVE_QUANTITY_PATTERN : QUANTITY_PATTERN,
    "x-kubernetes-int-or-string": true,
  });
}

/** An object node typed as T without describing its fields (the top-level metadata). */
export function OpaqueObject<T>(options: SchemaOptions = {}): TUnsafe<T> {
  return Type.Unsafe<T>({ ...options, [Kind]: "Object", type: "object", properties: {} });
}

/** int64 counters and epochs. Typed as number: JSON numbers are exact up to 2^53. */
export function Int64(options: SchemaOptions = {}) {
  return Type.Integer({ format: "int64", ...options });
}

/** RFC 3339 timestamp (metav1.Time). */
export function DateTime(options: SchemaOptions = {}) {
  return Type.String({ format: "date-time", ...options });
}

// Value.Check rejects unknown formats; register the ones used here.
if (!FormatRegistry.Has("date-time")) {
  FormatRegistry.Set("date-time", (value) => !Number.isNaN(Date.parse(value)));
}

/** RFC 1123 label: names of Regions, Zones, Secrets' keys excepted. */
export function DnsLabel(options: SchemaOptions = {}) {
  return Type.String({ minLength: 1, maxLength: 63, pattern: "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", ...options });
}

/** RFC 1123 subdomain: names of Secrets and most other objects. */
export function DnsSubdomain(options: SchemaOptions = {}) {
  return Type.String({
    minLength: 1,
    maxLength: 253,
    pattern: "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
    ...options,
  });
}

// Readable key order in the generated YAML: what a node is, then its bounds, then its children.
const KEY_ORDER = [
  "description",
  "type",
  "format",
  "enum",
  "default",
  "minimum",
  "maximum",
  "minLength",
  "maxLength",
  "pattern",
  "minItems",
  "maxItems",
  "minProperties",
  "maxProperties",
  "anyOf",
  "x-kubernetes-int-or-string",
  "required",
  "properties",
  "additionalProperties",
  "items",
];
function keyRank(key: string): number {
  const i = KEY_ORDER.indexOf(key);
  return i >= 0 ? i : KEY_ORDER.length;
}
function isSchemaNode(node: { [key: string]: Json }): boolean {
  return typeof node.type === "string" || "x-kubernetes-int-or-string" in node || "anyOf" in node;
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/**
 * The plain OpenAPI v3 form of a TypeBox schema: symbol keys dropped (JSON round trip) and
 * empty `properties` removed (structural schemas forbid properties next to additionalProperties).
 */
export function toOpenApi(schema: TSchema): Record<string, Json> {
  const plain = JSON.parse(JSON.stringify(schema)) as Record<string, Json>;
  const visit = (node: Json): void => {
    if (Array.isArray(node)) {
      for (const item of node) visit(item);
      return;
    }
    if (node === null || typeof node !== "object") return;
    const props = node.properties;
    if (
      props !== null &&
      typeof props === "object" &&
      !Array.isArray(props) &&
      Object.keys(props).length === 0
    ) {
      delete node.properties;
    }
    for (const [key, value] of Object.entries(node)) {
      // Defaults and examples are data, not schema.
      if (key !== "default" && key !== "example") visit(value);
    }
    if (isSchemaNode(node)) {
      const entries = Object.entries(node).sort(([a], [b]) => keyRank(a) - keyRank(b));
      for (const [key] of entries) delete node[key];
      for (const [key, value] of entries) node[key] = value;
    }
  };
  visit(plain);
  return plain;
}
