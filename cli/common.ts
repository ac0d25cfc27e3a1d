// What every hybridctl command shares: its output, its errors, and its connections (the API
// server and the flag store, from the global options or the environment). Commands import this
// module, never cli/hybridctl.ts, so the wiring there can import every command without a cycle.
import { CustomObjectsApi, KubeConfig, PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import type { NatsConnection } from "@nats-io/transport-node";
import { Option } from "commander";
import type { Etcd3 } from "etcd3";
import { stringify as toYaml } from "yaml";
import { GROUP, P2P_POLICY, REGION, VERSION, ZONE } from "../operator/api/constants.ts";
import {
  type CompiledFlags,
  compile,
  type PolicyInput,
  type RegionInput,
  type ZoneInput,
} from "../operator/flags/compiler.ts";
import { connectFlagStore } from "../platform/flags/etcd.ts";
import { connectNats, requireStoreAccess } from "../platform/stores/access.ts";

export interface Io {
  out(line: string): void;
  err(line: string): void;
}

/** A failure whose message is for the user as it is (no stack, no "Error:"). */
export class CliError extends Error {}

/** The global options, before any command's own. */
export interface Globals {
  kubeconfig?: string;
  etcdEndpoints?: string;
  natsUrl?: string;
  prefix?: string;
}

// ---- the API server ---------------------------------------------------------------------------

export interface KObj {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name: string;
    namespace: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    generation?: number;
  };
  spec?: Record<string, unknown> & { mapServer?: { replicas?: number }; regionRef?: { name?: string } };
  status?: Record<string, unknown> & {
    mode?: string;
    appliedEpoch?: number;
    replicas?: { desired?: number; applied?: number };
    policy?: string;
    fallbackReason?: string;
    p2pPeers?: { connected?: number; meshes?: number; relayed?: number };
    observedGeneration?: number;
    epoch?: number;
    epochs?: { region: string; epoch: number }[];
  };
}

/** --kubeconfig, else $KUBECONFIG, else ~/.kube/config (or in-cluster). */
export function kube(g: Globals): CustomObjectsApi {
  const kc = new KubeConfig();
  if (g.kubeconfig) kc.loadFromFile(g.kubeconfig);
  else kc.loadFromDefault();
  return kc.makeApiClient(CustomObjectsApi);
}

export async function list(
  api: CustomObjectsApi,
  plural: string,
  namespace: string | undefined,
): Promise<KObj[]> {
  const res = (
    namespace === undefined
      ? await api.listClusterCustomObject({ group: GROUP, version: VERSION, plural })
      : await api.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural })
  ) as { items: KObj[] };
  return res.items;
}

export async function getObj(
  api: CustomObjectsApi,
  plural: string,
  namespace: string,
  name: string,
): Promise<KObj> {
  try {
    return (await api.getNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace,
      plural,
      name,
    })) as KObj;
  } catch (err) {
    // client-node's ApiException carries the HTTP status as `code`.
    if ((err as { code?: unknown }).code === 404)
      throw new CliError(`${plural} "${name}" not found in namespace "${namespace}"`);
    throw err;
  }
}

export function mergePatch(
  api: CustomObjectsApi,
  plural: string,
  namespace: string,
  name: string,
  body: object,
): Promise<KObj> {
  return api.patchNamespacedCustomObject(
    { group: GROUP, version: VERSION, namespace, plural, name, body },
    setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
  ) as Promise<KObj>;
}

/** The namespace's policies, zones and regions as the operator compiles them (who governs what). */
export async function compileNamespace(
  api: CustomObjectsApi,
  ns: string,
): Promise<{ policies: KObj[]; zones: KObj[]; compiled: CompiledFlags }> {
  const [policies, zones, regions] = await Promise.all([
    list(api, P2P_POLICY.plural, ns),
    list(api, ZONE.plural, ns),
    list(api, REGION.plural, ns),
  ]);
  const compiled = compile({
    policies: policies as unknown as PolicyInput[],
    zones: zones as unknown as ZoneInput[],
    regions: regions as unknown as RegionInput[],
  });
  return { policies, zones, compiled };
}

// ---- the flag store ---------------------------------------------------------------------------

/** --etcd-endpoints, else $HYBRIDP2P_ETCD_ENDPOINTS; undefined when neither is set. */
export function etcdEndpoints(g: Globals): string | undefined {
  return g.etcdEndpoints || process.env.HYBRIDP2P_ETCD_ENDPOINTS || undefined;
}

export function etcdOf(g: Globals): Etcd3 {
  const endpoints = etcdEndpoints(g);
  if (!endpoints)
    throw new CliError(
      "the flag store is not configured: pass --etcd-endpoints or set HYBRIDP2P_ETCD_ENDPOINTS",
    );
  // Credentials and TLS from HYBRIDP2P_ETCD_USERNAME/_PASSWORD/_TLS_DIR (platform/stores).
  return connectFlagStore(requireStoreAccess("etcd", endpoints));
}

// ---- the report channel -----------------------------------------------------------------------

/** --nats-url, else $HYBRIDP2P_NATS_URL; undefined when neither is set. */
export function natsUrl(g: Globals): string | undefined {
  return g.natsUrl || process.env.HYBRIDP2P_NATS_URL || undefined;
}

/** The Region's NATS, where the pods' reports (their acks) travel. */
export function natsOf(url: string): Promise<NatsConnection> {
  return connectNats(requireStoreAccess("nats", url), { name: "hybridctl" }).catch((err: unknown) => {
    throw new CliError(`cannot reach the report channel at ${url}: ${String((err as Error).message ?? err)}`);
  });
}

// ---- output -----------------------------------------------------------------------------------

export const outputOption = () => new Option("-o, --output <format>", "table, json or yaml").default("table");

export function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  return rows
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i]!))
        .join("   ")
        .trimEnd(),
    )
    .join("\n");
}

export function emit(io: Io, format: string, data: unknown, asTable: () => string): void {
  if (format === "json") io.out(JSON.stringify(data, null, 2));
  else if (format === "yaml") io.out(toYaml(data).trimEnd());
  else if (format === "table") io.out(asTable());
  else throw new CliError(`unknown output format ${format} (table, json or yaml)`);
}
