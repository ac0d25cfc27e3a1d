// The CustomResourceDefinition objects, built from the TypeBox schemas of each kind.

import type { TSchema } from "@sinclair/typebox";
import {
  CATEGORY,
  crdName,
  GROUP,
  type KindNames,
  P2P_POLICY,
  REGION,
  VERSION,
  WORLD_EVENT,
  ZONE,
} from "./constants.ts";
import { P2PPolicySchema, p2pPolicyPrinterColumns } from "./p2ppolicy.ts";
import { RegionSchema, regionPrinterColumns } from "./region.ts";
import { toOpenApi } from "./schema.ts";
import { WorldEventSchema, worldEventPrinterColumns } from "./worldevent.ts";
import { ZoneSchema, zonePrinterColumns, zoneScale } from "./zone.ts";

export interface PrinterColumn {
  name: string;
  type: "string" | "integer" | "number" | "boolean" | "date";
  jsonPath: string;
  description?: string;
  priority?: number;
}

interface KindDefinition {
  names: KindNames;
  schema: TSchema;
  printerColumns: PrinterColumn[];
  scale?: { specReplicasPath: string; statusReplicasPath: string; labelSelectorPath?: string };
}

export const kinds: KindDefinition[] = [
  { names: REGION, schema: RegionSchema, printerColumns: regionPrinterColumns as PrinterColumn[] },
  {
    names: ZONE,
    schema: ZoneSchema,
    printerColumns: zonePrinterColumns as PrinterColumn[],
    scale: zoneScale,
  },
  { names: P2P_POLICY, schema: P2PPolicySchema, printerColumns: p2pPolicyPrinterColumns as PrinterColumn[] },
  {
    names: WORLD_EVENT,
    schema: WorldEventSchema,
    printerColumns: worldEventPrinterColumns as PrinterColumn[],
  },
];

/** An apiextensions.k8s.io/v1 CustomResourceDefinition as a plain object. */
export function customResourceDefinition(def: KindDefinition): Record<string, unknown> {
  const { names } = def;
  return {
    apiVersion: "apiextensions.k8s.io/v1",
    kind: "CustomResourceDefinition",
    metadata: {
      name: crdName(names),
      labels: { "app.kubernetes.io/part-of": "hybrid-p2p" },
    },
    spec: {
      group: GROUP,
      names: {
        kind: names.kind,
        listKind: names.listKind,
        plural: names.plural,
        singular: names.singular,
        shortNames: [...names.shortNames],
        categories: [CATEGORY],
      },
      scope: "Namespaced",
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          subresources: { status: {}, ...(def.scale ? { scale: def.scale } : {}) },
          additionalPrinterColumns: def.printerColumns,
          schema: { openAPIV3Schema: toOpenApi(def.schema) },
        },
      ],
    },
  };
}

/** All CRDs of the API, in a stable order. */
export function customResourceDefinitions(): Record<string, unknown>[] {
  return kinds.map(customResourceDefinition);
}
