// The chart's monitoring objects as a plain Prometheus sees them: the PrometheusRule's groups as
// a rule file, the ServiceMonitor/PodMonitors as scrape configs (kubernetes_sd with a kubeconfig,
// the selectors and relabelings carried over the way the Prometheus Operator generates them), the
// dashboards' panel queries with their variables filled in; promtool and a Prometheus process.
// Shared by the chart's unit test and the cluster e2e test, so both test the same translation.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdirSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { stringify as toYaml } from "yaml";
import { pollUntil } from "../platform/time.ts";

// biome-ignore lint/suspicious/noExplicitAny: rendered objects are walked freely
type Any = any;
export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [key: string]: Any;
}

export const PROMETHEUS = process.env.HYBRIDP2P_PROMETHEUS ?? "prometheus";
export const PROMTOOL = process.env.HYBRIDP2P_PROMTOOL ?? "promtool";

export function promtool(args: string[]): string {
  try {
    return execFileSync(PROMTOOL, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  } catch (err) {
    const e = err as { code?: string; stdout?: string; stderr?: string };
    if (e.code === "ENOENT")
      throw new Error(`${PROMTOOL} not found: hack/ensure-deps.sh installs it (Debian package prometheus)`);
    throw new Error(`promtool ${args.join(" ")} failed:\n${e.stdout ?? ""}${e.stderr ?? ""}`);
  }
}

/** The PrometheusRule's spec as a rule file (the same shape: `groups`). */
export function ruleFile(objs: K8sObject[]): string {
  const rules = objs.filter((o) => o.kind === "PrometheusRule");
  if (rules.length === 0) throw new Error("no PrometheusRule rendered");
  return toYaml({ groups: rules.flatMap((r) => r.spec.groups) });
}

export interface Alert {
  alert: string;
  expr: string;
  for?: string;
  /** The expression without its final comparison: what it measures, one series per subject. */
  measure: string;
}

export function alerts(objs: K8sObject[]): Alert[] {
  return objs
    .filter((o) => o.kind === "PrometheusRule")
    .flatMap((r) => r.spec.groups.flatMap((g: Any) => g.rules))
    .filter((r: Any) => r.alert)
    .map((r: Any) => {
      const m = /^(.*\S)\s*(?:==|!=|>=|<=|>|<)\s*[0-9.]+\s*$/s.exec(r.expr.trim());
      if (!m) throw new Error(`alert ${r.alert}: expression is not "<measure> <op> <threshold>": ${r.expr}`);
      return { alert: r.alert, expr: r.expr, for: r.for, measure: m[1]! };
    });
}

export interface PanelQuery {
  dashboard: string;
  panel: string;
  expr: string;
}

/** Every panel query of the dashboards in these ConfigMaps, the template variables set to match all. */
export function panelQueries(configMaps: K8sObject[]): PanelQuery[] {
  const out: PanelQuery[] = [];
  for (const cm of configMaps)
    for (const [file, text] of Object.entries(cm.data ?? {})) {
      const dash = JSON.parse(text as string);
      for (const p of dash.panels ?? [])
        for (const t of p.targets ?? [])
          out.push({
            dashboard: `${cm.metadata.name}/${file}`,
            panel: p.title,
            expr: String(t.expr).replaceAll("$namespace", ".*").replaceAll("$region", ".*"),
          });
    }
  return out;
}

const sanitize = (label: string) => label.replace(/[^a-zA-Z0-9_]/g, "_");
const snake = (k: string) => k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
function relabel(r: Any): Any {
  return Object.fromEntries(Object.entries(r).map(([k, v]) => [snake(k), v]));
}

/**
 * Scrape configs for the ServiceMonitors and PodMonitors, as the Prometheus Operator generates
 * them (keep rules for the label selector, the namespaces and the named port, then the object's
 * own relabelings), over the meta labels of kubernetes_sd. Debian's prometheus is built without
 * kubernetes_sd, so the targets come from file_sd files in `sdDir` that kubeTargets() writes
 * from the API with those same meta labels: the relabelings run unchanged.
 */
export function scrapeConfigs(objs: K8sObject[], sdDir: string): Any[] {
  const out: Any[] = [];
  for (const o of objs) {
    const pod = o.kind === "PodMonitor";
    if (!pod && o.kind !== "ServiceMonitor") continue;
    const s = o.spec;
    const meta = pod ? "__meta_kubernetes_pod" : "__meta_kubernetes_service";
    const keep: Any[] = [];
    for (const [k, v] of Object.entries(s.selector.matchLabels ?? {}))
      keep.push({ source_labels: [`${meta}_label_${sanitize(k)}`], regex: v, action: "keep" });
    for (const e of s.selector.matchExpressions ?? []) {
      if (e.operator !== "Exists") throw new Error(`selector operator ${e.operator} not translated`);
      keep.push({
        source_labels: [`${meta}_labelpresent_${sanitize(e.key)}`],
        regex: "true",
        action: "keep",
      });
    }
    if (!s.namespaceSelector?.any)
      keep.push({
        source_labels: ["__meta_kubernetes_namespace"],
        regex: (s.namespaceSelector?.matchNames ?? [o.metadata.namespace]).join("|"),
        action: "keep",
      });
    const endpoints = pod ? s.podMetricsEndpoints : s.endpoints;
    endpoints.forEach((ep: Any, i: number) => {
      const port = pod ? "__meta_kubernetes_pod_container_port_name" : "__meta_kubernetes_endpoint_port_name";
      out.push({
        job_name: `${o.kind}/${o.metadata.namespace}/${o.metadata.name}/${i}`,
        honor_labels: ep.honorLabels === true,
        metrics_path: ep.path ?? "/metrics",
        scrape_interval: ep.interval,
        file_sd_configs: [
          { files: [join(sdDir, pod ? "pods.json" : "endpoints.json")], refresh_interval: "5s" },
        ],
        relabel_configs: [
          ...keep,
          { source_labels: [port], regex: ep.port, action: "keep" },
          ...(pod
            ? [{ source_labels: ["__meta_kubernetes_pod_phase"], regex: "Failed|Succeeded", action: "drop" }]
            : []),
          { source_labels: ["__meta_kubernetes_namespace"], target_label: "namespace" },
          ...(ep.relabelings ?? []).map(relabel),
        ],
      });
    });
  }
  return out;
}

interface PodLike {
  metadata: { name: string; namespace: string; labels?: Record<string, string> };
  spec: { containers: { ports?: { name?: string; containerPort: number }[] }[] };
  status?: { podIP?: string; phase?: string };
}
interface ServiceLike {
  metadata: { name: string; namespace: string; labels?: Record<string, string> };
  spec: {
    selector?: Record<string, string>;
    ports: { name?: string; port: number; targetPort?: number | string }[];
  };
}
type TargetGroup = { targets: string[]; labels: Record<string, string> };

const labelMeta = (prefix: string, labels: Record<string, string> = {}) =>
  Object.fromEntries(
    Object.entries(labels).flatMap(([k, v]) => [
      [`${prefix}_label_${sanitize(k)}`, v],
      [`${prefix}_labelpresent_${sanitize(k)}`, "true"],
    ]),
  );

/** kubernetes_sd's pod and endpoints roles in miniature: target groups with its meta labels. */
export function kubeTargets(
  pods: PodLike[],
  services: ServiceLike[],
): { pods: TargetGroup[]; endpoints: TargetGroup[] } {
  const withIp = pods.filter((p) => p.status?.podIP);
  const podGroups = withIp.flatMap((p) =>
    p.spec.containers.flatMap((c) =>
      (c.ports ?? []).map((port) => ({
        targets: [`${p.status!.podIP}:${port.containerPort}`],
        labels: {
          __meta_kubernetes_namespace: p.metadata.namespace,
          __meta_kubernetes_pod_name: p.metadata.name,
          __meta_kubernetes_pod_phase: p.status?.phase ?? "",
          __meta_kubernetes_pod_container_port_name: port.name ?? "",
          ...labelMeta("__meta_kubernetes_pod", p.metadata.labels),
        },
      })),
    ),
  );
  const endpointGroups = services.flatMap((svc) => {
    const sel = svc.spec.selector;
    if (!sel || Object.keys(sel).length === 0) return [];
    const backing = withIp.filter(
      (p) =>
        p.metadata.namespace === svc.metadata.namespace &&
        Object.entries(sel).every(([k, v]) => p.metadata.labels?.[k] === v),
    );
    return svc.spec.ports.flatMap((sp) =>
      backing.flatMap((p) => {
        const ports = p.spec.containers.flatMap((c) => c.ports ?? []);
        const target = sp.targetPort ?? sp.port;
        const cp = ports.find((x) =>
          typeof target === "string" ? x.name === target : x.containerPort === target,
        );
        if (!cp) return [];
        return [
          {
            targets: [`${p.status!.podIP}:${cp.containerPort}`],
            labels: {
              __meta_kubernetes_namespace: svc.metadata.namespace,
              __meta_kubernetes_service_name: svc.metadata.name,
              __meta_kubernetes_endpoint_port_name: sp.name ?? "",
              __meta_kubernetes_pod_name: p.metadata.name,
              ...labelMeta("__meta_kubernetes_service", svc.metadata.labels),
            },
          },
        ];
      }),
    );
  });
  return { pods: podGroups, endpoints: endpointGroups };
}

/** Writes the file_sd files scrapeConfigs() reads (atomically: Prometheus may read any time). */
export function writeTargets(sdDir: string, t: { pods: TargetGroup[]; endpoints: TargetGroup[] }): void {
  mkdirSync(sdDir, { recursive: true });
  for (const [file, groups] of [
    ["pods.json", t.pods],
    ["endpoints.json", t.endpoints],
  ] as const) {
    writeFileSync(join(sdDir, `${file}.tmp`), JSON.stringify(groups));
    renameSync(join(sdDir, `${file}.tmp`), join(sdDir, file));
  }
}

export interface RunningPrometheus {
  url: string;
  /** An instant query; throws on an error response. */
  query(expr: string): Promise<{ metric: Record<string, string>; value: [number, string] }[]>;
  stop(): Promise<void>;
}

/** Prometheus on this host with these scrape configs and rule file, evaluating every `intervalS`. */
export async function startPrometheus(opts: {
  dir: string;
  port: number;
  scrapeConfigs: Any[];
  rules: string;
  intervalS?: number;
  log?: string;
}): Promise<RunningPrometheus> {
  mkdirSync(join(opts.dir, "data"), { recursive: true });
  const i = `${opts.intervalS ?? 5}s`;
  writeFileSync(join(opts.dir, "rules.yaml"), opts.rules);
  writeFileSync(
    join(opts.dir, "prometheus.yml"),
    toYaml({
      global: { scrape_interval: i, evaluation_interval: i, scrape_timeout: i },
      rule_files: [join(opts.dir, "rules.yaml")],
      scrape_configs: opts.scrapeConfigs.map((c) => ({ ...c, scrape_interval: i })),
    }),
  );
  promtool(["check", "config", join(opts.dir, "prometheus.yml")]);
  const url = `http://127.0.0.1:${opts.port}`;
  const proc: ChildProcess = spawn(
    PROMETHEUS,
    [
      `--config.file=${join(opts.dir, "prometheus.yml")}`,
      `--storage.tsdb.path=${join(opts.dir, "data")}`,
      `--web.listen-address=127.0.0.1:${opts.port}`,
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let stderr = "";
  proc.stderr?.on("data", (d) => {
    stderr = (stderr + String(d)).slice(-20_000);
  });
  const exited = new Promise<void>((r) => proc.once("exit", () => r()));
  const query = async (expr: string) => {
    const res = await fetch(`${url}/api/v1/query?query=${encodeURIComponent(expr)}`);
    const body = (await res.json()) as Any;
    if (body.status !== "success") throw new Error(`query ${expr}: ${body.error ?? res.status}`);
    return body.data.result;
  };
  await pollUntil(
    "Prometheus ready",
    async () => {
      if (proc.exitCode !== null) throw new Error(`prometheus exited ${proc.exitCode}: ${stderr}`);
      return (await fetch(`${url}/-/ready`).then(
        (r) => r.ok,
        () => false,
      ))
        ? true
        : undefined;
    },
    30_000,
    200,
  );
  return {
    url,
    query,
    stop: async () => {
      if (opts.log) writeFileSync(opts.log, stderr);
      if (proc.exitCode === null) proc.kill("SIGTERM");
      await exited;
    },
  };
}
