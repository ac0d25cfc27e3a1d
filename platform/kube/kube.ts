// A thin Kubernetes REST client: one keep-alive HTTPS agent, JSON in and out, latency and
// write metrics in one place. The operator talks to a fixed set of resource types, so a
// static table replaces discovery (no extra round trips, no serializer in the hot path).
import { Agent as HttpAgent, request as httpRequest } from "node:http";
import {
  type AgentOptions,
  Agent as HttpsAgent,
  request as httpsRequest,
  type RequestOptions,
} from "node:https";
import type { KubeConfig } from "@kubernetes/client-node";
import type { KubeList, KubeObject } from "./meta.ts";
import type { Metrics } from "./metrics.ts";

/** The one field manager for every write the operator makes. */
export const FIELD_MANAGER = "hybrid-operator";

/** A resource type: enough to build its URL without discovery. */
export interface ResourceType {
  apiVersion: string;
  kind: string;
  plural: string;
  namespaced: boolean;
}

const builtins: ResourceType[] = [
  { apiVersion: "v1", kind: "ConfigMap", plural: "configmaps", namespaced: true },
  { apiVersion: "v1", kind: "Secret", plural: "secrets", namespaced: true },
  { apiVersion: "v1", kind: "Service", plural: "services", namespaced: true },
  { apiVersion: "v1", kind: "ServiceAccount", plural: "serviceaccounts", namespaced: true },
  { apiVersion: "v1", kind: "Event", plural: "events", namespaced: true },
  { apiVersion: "v1", kind: "Namespace", plural: "namespaces", namespaced: false },
  { apiVersion: "apps/v1", kind: "Deployment", plural: "deployments", namespaced: true },
  { apiVersion: "apps/v1", kind: "StatefulSet", plural: "statefulsets", namespaced: true },
  { apiVersion: "policy/v1", kind: "PodDisruptionBudget", plural: "poddisruptionbudgets", namespaced: true },
  { apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", plural: "networkpolicies", namespaced: true },
  { apiVersion: "coordination.k8s.io/v1", kind: "Lease", plural: "leases", namespaced: true },
  {
    apiVersion: "apiextensions.k8s.io/v1",
    kind: "CustomResourceDefinition",
    plural: "customresourcedefinitions",
    namespaced: false,
  },
];

const registry = new Map<string, ResourceType>(builtins.map((r) => [`${r.apiVersion}/${r.kind}`, r]));

export function registerResource(rt: ResourceType): void {
  registry.set(`${rt.apiVersion}/${rt.kind}`, rt);
}

export function resourceFor(apiVersion: string, kind: string): ResourceType {
  const rt = registry.get(`${apiVersion}/${kind}`);
  if (!rt) throw new Error(`unknown resource type ${apiVersion} ${kind}`);
  return rt;
}

export const resources = {
  configMap: resourceFor("v1", "ConfigMap"),
  secret: resourceFor("v1", "Secret"),
  service: resourceFor("v1", "Service"),
  serviceAccount: resourceFor("v1", "ServiceAccount"),
  event: resourceFor("v1", "Event"),
  namespace: resourceFor("v1", "Namespace"),
  deployment: resourceFor("apps/v1", "Deployment"),
  statefulSet: resourceFor("apps/v1", "StatefulSet"),
  pdb: resourceFor("policy/v1", "PodDisruptionBudget"),
  networkPolicy: resourceFor("networking.k8s.io/v1", "NetworkPolicy"),
  lease: resourceFor("coordination.k8s.io/v1", "Lease"),
  crd: resourceFor("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
};

/** The URL path of a collection (name omitted) or of one object, optionally a subresource. */
export function resourcePath(rt: ResourceType, namespace?: string, name?: string, sub?: string): string {
  const base = rt.apiVersion.includes("/") ? `/apis/${rt.apiVersion}` : `/api/${rt.apiVersion}`;
  let path =
    rt.namespaced && namespace ? `${base}/namespaces/${namespace}/${rt.plural}` : `${base}/${rt.plural}`;
  if (name) path += `/${name}`;
  if (sub) path += `/${sub}`;
  return path;
}

export class ApiError extends Error {
  readonly status: number;
  readonly reason: string;
  constructor(status: number, reason: string, message: string) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.reason = reason;
  }
}

export const isNotFound = (e: unknown): boolean => e instanceof ApiError && e.status === 404;

interface RequestArgs {
  query?: Record<string, string | number | boolean | undefined>;
  body?: unknown;
  contentType?: string;
}

const writeVerbs = new Set(["POST", "PUT", "PATCH", "DELETE"]);

export class KubeClient {
  readonly kc: KubeConfig;
  readonly server: URL;
  private readonly metrics?: Metrics;
  private tls: AgentOptions = {};
  private agent: HttpsAgent | HttpAgent;
  private headers: Record<string, string> = {};
  private headersAt = 0;

  constructor(kc: KubeConfig, metrics?: Metrics) {
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new Error("kubeconfig has no current cluster");
    this.kc = kc;
    this.server = new URL(cluster.server);
    this.metrics = metrics;
    this.agent = this.server.protocol === "https:" ? new HttpsAgent() : new HttpAgent();
  }

  /** Loads TLS material once and builds the keep-alive agent. */
  async init(): Promise<this> {
    const opts: RequestOptions = {};
    await this.kc.applyToHTTPSOptions(opts);
    this.tls = { ca: opts.ca, cert: opts.cert, key: opts.key, rejectUnauthorized: opts.rejectUnauthorized };
    const agentOpts = { keepAlive: true, maxSockets: 64, ...this.tls };
    this.agent = this.server.protocol === "https:" ? new HttpsAgent(agentOpts) : new HttpAgent(agentOpts);
    await this.authHeaders();
    return this;
  }

  close(): void {
    this.agent.destroy();
  }

  // Tokens rotate (projected service-account tokens, exec plugins): refresh them every minute.
  private async authHeaders(): Promise<Record<string, string>> {
    if (Date.now() - this.headersAt > 60_000) {
      const opts: { headers: Record<string, string> } = { headers: {} };
      await this.kc.applyToHTTPSOptions(opts as RequestOptions);
      this.headers = opts.headers;
      this.headersAt = Date.now();
    }
    return this.headers;
  }

  async request<T>(method: string, path: string, args: RequestArgs = {}): Promise<T> {
    const url = new URL(path, this.server);
    for (const [k, v] of Object.entries(args.query ?? {}))
      if (v !== undefined) url.searchParams.set(k, String(v));
    const body = args.body === undefined ? undefined : JSON.stringify(args.body);
    const headers: Record<string, string> = { ...(await this.authHeaders()), accept: "application/json" };
    if (body !== undefined) {
      headers["content-type"] = args.contentType ?? "application/json";
      headers["content-length"] = String(Buffer.byteLength(body));
    }
    const resource = metricResource(path);
    const start = performance.now();
    if (writeVerbs.has(method)) this.metrics?.apiWrites.inc({ verb: method, resource });
    const send = this.server.protocol === "https:" ? httpsRequest : httpRequest;
    const { status, text } = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      const req = send(url, { method, headers, agent: this.agent, timeout: 30_000 }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") }),
        );
        res.on("error", reject);
      });
      req.on("timeout", () => req.destroy(new Error(`${method} ${url.pathname} timed out`)));
      req.on("error", reject);
      req.end(body);
    }).catch((err: unknown) => {
      this.metrics?.apiLatency.observe(
        { verb: method, resource, code: "error" },
        (performance.now() - start) / 1000,
      );
      throw err;
    });
    this.metrics?.apiLatency.observe(
      { verb: method, resource, code: String(status) },
      (performance.now() - start) / 1000,
    );
    const parsed = text ? (JSON.parse(text) as Record<string, unknown>) : {};
    if (status < 200 || status >= 300) {
      throw new ApiError(
        status,
        String(parsed.reason ?? ""),
        `${method} ${url.pathname}: ${status} ${String(parsed.message ?? text)}`,
      );
    }
    return parsed as T;
  }

  async get<T extends KubeObject>(
    rt: ResourceType,
    namespace: string | undefined,
    name: string,
  ): Promise<T | undefined> {
    try {
      return await this.request<T>("GET", resourcePath(rt, namespace, name));
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw e;
    }
  }

  list<T extends KubeObject>(
    rt: ResourceType,
    namespace?: string,
    query: { labelSelector?: string; limit?: number; continue?: string } = {},
  ): Promise<KubeList<T>> {
    return this.request<KubeList<T>>("GET", resourcePath(rt, namespace), { query });
  }

  /** Server-side apply under the operator's field manager, taking over conflicting fields. */
  apply<T extends KubeObject>(obj: KubeObject): Promise<T> {
    const rt = resourceFor(obj.apiVersion, obj.kind);
    return this.request<T>("PATCH", resourcePath(rt, obj.metadata.namespace, obj.metadata.name), {
      query: { fieldManager: FIELD_MANAGER, force: true },
      body: obj,
      contentType: "application/apply-patch+yaml",
    });
  }

  /** JSON merge patch of the status subresource: touches only the fields given, so other
   * writers of the same status (the flag-report folding) keep theirs. */
  patchStatus<T extends KubeObject>(
    rt: ResourceType,
    namespace: string,
    name: string,
    status: unknown,
  ): Promise<T> {
    return this.request<T>("PATCH", resourcePath(rt, namespace, name, "status"), {
      query: { fieldManager: FIELD_MANAGER },
      body: { status },
      contentType: "application/merge-patch+json",
    });
  }

  create<T extends KubeObject>(obj: KubeObject): Promise<T> {
    const rt = resourceFor(obj.apiVersion, obj.kind);
    return this.request<T>("POST", resourcePath(rt, obj.metadata.namespace), {
      query: { fieldManager: FIELD_MANAGER },
      body: obj,
    });
  }

  replace<T extends KubeObject>(obj: KubeObject): Promise<T> {
    const rt = resourceFor(obj.apiVersion, obj.kind);
    return this.request<T>("PUT", resourcePath(rt, obj.metadata.namespace, obj.metadata.name), {
      query: { fieldManager: FIELD_MANAGER },
      body: obj,
    });
  }

  async delete(rt: ResourceType, namespace: string | undefined, name: string): Promise<void> {
    try {
      await this.request("DELETE", resourcePath(rt, namespace, name));
    } catch (e) {
      if (!isNotFound(e)) throw e;
    }
  }
}

// Label API metrics by resource plural (and subresource), not by object name: bounded cardinality.
function metricResource(path: string): string {
  const parts = path.split("?")[0]!.split("/").filter(Boolean);
  const nsAt = parts.indexOf("namespaces");
  const rest =
    nsAt >= 0 && parts.length > nsAt + 2 ? parts.slice(nsAt + 2) : parts.slice(parts[0] === "api" ? 2 : 3);
  return rest.length >= 3 ? `${rest[0]}/${rest[2]}` : (rest[0] ?? "");
}
