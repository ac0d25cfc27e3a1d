// Installs the CRDs into the local kube-apiserver, then checks that the examples are accepted,
// that the apiserver's defaults equal the TypeBox ones, and that every invalid manifest is
// rejected with its expected message (server-side dry run, so nothing is stored).

import { readFileSync } from "node:fs";
import { request } from "node:https";
import { fileURLToPath } from "node:url";
import { KubeConfig } from "@kubernetes/client-node";
import type { TSchema } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { parse, parseAllDocuments } from "yaml";
import { sleep } from "../../platform/time.ts";
import { invalidManifests } from "../../testkit/invalid-manifests.ts";
import {
  API_VERSION,
  GROUP,
  type KindNames,
  P2P_POLICY,
  REGION,
  VERSION,
  WORLD_EVENT,
  ZONE,
} from "./constants.ts";
import { renderCrds } from "./generate.ts";
import { P2PPolicySpec } from "./p2ppolicy.ts";
import { RegionSpec } from "./region.ts";
import { WorldEventSpec } from "./worldevent.ts";
import { ZoneSpec } from "./zone.ts";

const kubeconfig = inject("localEnv").kubeconfig;
const FIELD_MANAGER = "hybridp2p-crd-tests";
const namespace = `crd-validation-${process.pid}`;

type Obj = Record<string, unknown> & { kind?: string; metadata?: Record<string, unknown> };
interface Reply {
  status: number;
  body: Obj;
}

let kc: KubeConfig;
let server: URL;

async function kube(
  method: string,
  path: string,
  body?: unknown,
  contentType = "application/json",
): Promise<Reply> {
  const url = new URL(path, server);
  const opts: Parameters<typeof request>[1] = { method, headers: { accept: "application/json" } };
  await kc.applyToHTTPSOptions(opts);
  const payload = body === undefined ? undefined : JSON.stringify(body);
  if (payload !== undefined) opts.headers = { ...opts.headers, "content-type": contentType };
  return new Promise((resolve, reject) => {
    const req = request(url, opts, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        text += chunk;
      });
      res.on("end", () =>
        resolve({ status: res.statusCode ?? 0, body: text ? (JSON.parse(text) as Obj) : {} }),
      );
    });
    req.on("error", reject);
    req.end(payload);
  });
}

const kindNames: Record<string, KindNames> = {
  [REGION.kind]: REGION,
  [ZONE.kind]: ZONE,
  [P2P_POLICY.kind]: P2P_POLICY,
  [WORLD_EVENT.kind]: WORLD_EVENT,
};
const collection = (kind: string) =>
  `/apis/${GROUP}/${VERSION}/namespaces/${namespace}/${kindNames[kind]!.plural}`;

function inNamespace(manifest: Obj, name: string): Obj {
  return { ...structuredClone(manifest), metadata: { ...manifest.metadata, name, namespace } };
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

describe("CRDs on kube-apiserver", () => {
  beforeAll(async () => {
    kc = new KubeConfig();
    kc.loadFromFile(kubeconfig!);
    server = new URL(kc.getCurrentCluster()!.server);
    for (const { yaml } of renderCrds()) {
      const crd = parse(yaml) as Obj;
      const name = crd.metadata!.name as string;
      const applied = await kube(
        "PATCH",
        `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${name}?fieldManager=${FIELD_MANAGER}&force=true`,
        crd,
        "application/apply-patch+yaml",
      );
      expect([200, 201], JSON.stringify(applied.body).slice(0, 2000)).toContain(applied.status);
      await until(`${name} Established`, async () => {
        const got = await kube("GET", `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${name}`);
        const conditions = ((got.body.status as Obj | undefined)?.conditions ?? []) as {
          type: string;
          status: string;
        }[];
        return conditions.some((c) => c.type === "Established" && c.status === "True");
      });
    }
    const ns = await kube("POST", "/api/v1/namespaces", {
      apiVersion: "v1",
      kind: "Namespace",
      metadata: { name: namespace },
    });
    expect([201, 409]).toContain(ns.status);
    // Established comes a moment before the new resources are served.
    for (const kind of Object.keys(kindNames)) {
      await until(`${kind} served`, async () => (await kube("GET", collection(kind))).status === 200);
    }
  });

  afterAll(async () => {
    if (server) await kube("DELETE", `/api/v1/namespaces/${namespace}`);
  });

  it("accepts the example manifests", async () => {
    const docs = ["demo-region.yaml", "world-event.yaml"].flatMap((file) => {
      const path = fileURLToPath(new URL(`../../examples/${file}`, import.meta.url));
      return parseAllDocuments(readFileSync(path, "utf8")).map((d) => d.toJS() as Obj);
    });
    for (const doc of docs.filter((d) => d.kind !== "Namespace")) {
      const reply = await kube(
        "POST",
        `${collection(doc.kind!)}?dryRun=All`,
        inNamespace(doc, doc.metadata!.name as string),
      );
      expect(reply.status, JSON.stringify(reply.body)).toBe(201);
    }
  });

  it("applies the same defaults as the TypeBox schemas", async () => {
    const minimal: [string, TSchema, Obj][] = [
      [REGION.kind, RegionSpec, {}],
      [ZONE.kind, ZoneSpec, { regionRef: { name: "demo" }, maps: [{ name: "prontera", type: "Town" }] }],
      [P2P_POLICY.kind, P2PPolicySpec, { zoneSelector: {} }],
      [
        WORLD_EVENT.kind,
        WorldEventSpec,
        { type: "Invasion", invasion: { mob: "wolf" }, targets: { regions: [], maps: ["prt_fild08"] } },
      ],
    ];
    for (const [kind, schema, spec] of minimal) {
      const manifest = { apiVersion: API_VERSION, kind, metadata: { name: "defaults" }, spec };
      const reply = await kube("POST", `${collection(kind)}?dryRun=All`, inNamespace(manifest, "defaults"));
      expect(reply.status, JSON.stringify(reply.body)).toBe(201);
      expect(reply.body.spec, kind).toEqual(Value.Default(schema, structuredClone(spec)));
    }
  });

  describe("rejects invalid manifests", () => {
    it.each(invalidManifests.map((c, i) => ({ ...c, index: i })))(
      "$name",
      async ({ manifest, existing, expectedMessage, index }) => {
        // Each case gets a name of its own, except those about the name itself.
        const own = (manifest.metadata as { name?: string }).name;
        const name = own && own !== "bad" ? own : `invalid-${index}`;
        const kind = manifest.kind as string;
        let reply: Reply;
        if (existing) {
          const created = await kube("POST", collection(kind), inNamespace(existing, name));
          expect(created.status, JSON.stringify(created.body)).toBe(201);
          reply = await kube(
            "PATCH",
            `${collection(kind)}/${name}?dryRun=All&fieldManager=${FIELD_MANAGER}&force=true`,
            inNamespace(manifest, name),
            "application/apply-patch+yaml",
          );
          await kube("DELETE", `${collection(kind)}/${name}`);
        } else {
          reply = await kube("POST", `${collection(kind)}?dryRun=All`, inNamespace(manifest, name));
        }
        expect(reply.status, JSON.stringify(reply.body)).toBe(422);
        expect(reply.body.message as string).toContain(expectedMessage);
      },
    );
  });
});
