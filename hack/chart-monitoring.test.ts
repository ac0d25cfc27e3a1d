// The chart's monitoring, rendered with the pinned helm: nothing without the switches; with them
// a ServiceMonitor that selects the operator's metrics Service, PodMonitors that select the pods
// the operator renders for a Region, the alerts the issue asks for passing `promtool check rules`,
// every dashboard panel query parsing as PromQL (promtool, as recording rules), and the scrape
// configs the e2e Prometheus runs passing `promtool check config`.
import { execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseAllDocuments, stringify as toYaml } from "yaml";
import type { Region, Zone } from "../operator/api/index.ts";
import { renderRegion } from "../operator/render/region.ts";
import { renderZone } from "../operator/render/zone.ts";
import { binDir } from "../testkit/local/services.ts";
import {
  alerts,
  type K8sObject,
  panelQueries,
  promtool,
  ruleFile,
  scrapeConfigs,
} from "../testkit/monitoring.ts";

const chart = new URL("../charts/hybrid-p2p", import.meta.url).pathname;
const ON = [
  "monitoring.serviceMonitor.enabled=true",
  "monitoring.podMonitor.enabled=true",
  "monitoring.prometheusRule.enabled=true",
  "monitoring.dashboards.enabled=true",
  "monitoring.labels.release=kube-prometheus-stack",
];

function template(...set: string[]): K8sObject[] {
  const args = ["template", "hp", chart, "--namespace", "hybrid-system", "--set", "crds.install=false"];
  for (const s of set) args.push("--set", s);
  const out = execFileSync(join(binDir(), "helm"), args, {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
  });
  return parseAllDocuments(out)
    .map((d) => d.toJS() as K8sObject | null)
    .filter((o): o is K8sObject => o !== null);
}
interface Workload {
  spec: {
    template: {
      metadata: { labels: Record<string, string> };
      spec: { containers: { ports?: { name?: string }[] }[] };
    };
  };
}
const tmp = () => mkdtempSync(join(tmpdir(), "hp-monitoring-"));
const matches = (
  sel: { matchLabels?: Record<string, string>; matchExpressions?: { key: string }[] },
  labels: Record<string, string>,
) =>
  Object.entries(sel.matchLabels ?? {}).every(([k, v]) => labels[k] === v) &&
  (sel.matchExpressions ?? []).every((e) => e.key in labels);

describe("chart monitoring", () => {
  const on = template(...ON);
  const of = (kind: string) => on.filter((o) => o.kind === kind);

  it("renders no monitoring object by default", () => {
    const kinds = template().map((o) => o.kind);
    for (const k of ["ServiceMonitor", "PodMonitor", "PrometheusRule"]) expect(kinds).not.toContain(k);
    expect(template().filter((o) => o.metadata.labels?.grafana_dashboard)).toEqual([]);
  });

  it("selects the operator's metrics Service and every Region pod with a metrics port", () => {
    const [sm] = of("ServiceMonitor");
    expect(sm).toMatchObject({
      apiVersion: "monitoring.coreos.com/v1",
      metadata: { labels: { release: "kube-prometheus-stack" } },
    });
    const svc = on.find((o) => o.kind === "Service" && o.metadata.name.endsWith("-metrics"))!;
    expect(matches(sm!.spec.selector, svc.metadata.labels!)).toBe(true);
    expect(svc.spec.ports.map((p: { name: string }) => p.name)).toContain(sm!.spec.endpoints[0].port);

    const pm = of("PodMonitor").find((o) => o.metadata.name.endsWith("-workloads"))!;
    expect(pm.spec.namespaceSelector).toEqual({ any: true });
    const meta = (name: string) => ({ name, namespace: "demo", uid: `uid-${name}`, generation: 1 });
    // External stores: the workloads are what is scraped, the stores are not.
    const ext = (endpoint: string) => ({ mode: "External" as const, external: { endpoints: [endpoint] } });
    const region: Region = {
      apiVersion: "hybridp2p.io/v1alpha1",
      kind: "Region",
      metadata: meta("demo"),
      spec: {
        dataStores: {
          etcd: ext("http://etcd:2379"),
          nats: ext("nats:4222"),
          postgres: ext("pg:5432"),
          dragonfly: ext("redis:6379"),
        },
      },
    };
    const zone: Zone = {
      apiVersion: "hybridp2p.io/v1alpha1",
      kind: "Zone",
      metadata: meta("fields"),
      spec: { regionRef: { name: "demo" }, maps: [{ name: "prt_fild08", type: "Field" }] },
    };
    const workloads = [...renderRegion(region), ...renderZone(zone, region)].filter((o) =>
      ["Deployment", "StatefulSet"].includes(o.kind),
    ) as unknown as Workload[];
    const scraped = workloads.filter(
      (w) =>
        matches(pm.spec.selector, w.spec.template.metadata.labels) &&
        w.spec.template.spec.containers.some((c) =>
          c.ports?.some((p) => p.name === pm.spec.podMetricsEndpoints[0].port),
        ),
    );
    const components = scraped
      .map((w) => w.spec.template.metadata.labels["app.kubernetes.io/component"])
      .sort();
    for (const c of ["coordinator", "gateway", "map-server", "login-server", "char-server"])
      expect(components).toContain(c);
    // watchNamespace narrows it to that namespace.
    const narrow = template(...ON, "watchNamespace=games").find((o) =>
      o.metadata.name.endsWith("-workloads"),
    )!;
    expect(narrow.spec.namespaceSelector).toEqual({ matchNames: ["games"] });
  });

  it("ships the alerts the issue lists, valid for promtool, with their windows from values", () => {
    const names = alerts(on).map((a) => a.alert);
    expect(names).toEqual([
      "HybridP2PZoneInFallback",
      "HybridP2PEpochNotAcked",
      "HybridP2PMapTickOverBudget",
      "HybridP2PLoginLockoutSpike",
      "HybridP2POperatorNotLeader",
    ]);
    const dir = tmp();
    writeFileSync(join(dir, "rules.yaml"), ruleFile(on));
    expect(promtool(["check", "rules", join(dir, "rules.yaml")])).toMatch(/SUCCESS: 5 rules found/);
    const short = alerts(template(...ON, "monitoring.prometheusRule.fallbackFor=20s"));
    expect(short.find((a) => a.alert === "HybridP2PZoneInFallback")!.for).toBe("20s");
  });

  it("ships a region overview and a flag-plane dashboard whose every panel query is PromQL", () => {
    const cms = of("ConfigMap").filter((o) => o.metadata.labels?.grafana_dashboard === "1");
    expect(cms.map((c) => Object.keys(c.data)[0]).sort()).toEqual([
      "flag-plane.json",
      "region-overview.json",
    ]);
    for (const cm of cms) {
      const d = JSON.parse(Object.values(cm.data)[0] as string);
      expect(d.uid).toMatch(/^hybridp2p-/);
      expect(d.panels.length).toBeGreaterThan(4);
    }
    const queries = panelQueries(cms);
    expect(queries.length).toBeGreaterThan(20);
    // promtool parses every expression of a rule file: the panel queries as recording rules.
    const rules = {
      groups: [{ name: "panels", rules: queries.map((q, i) => ({ record: `panel:q${i}`, expr: q.expr })) }],
    };
    const dir = tmp();
    writeFileSync(join(dir, "panels.yaml"), toYaml(rules));
    expect(promtool(["check", "rules", join(dir, "panels.yaml")])).toContain("SUCCESS");
  });

  it("rejects a malformed alert window", () => {
    expect(() => template(...ON, "monitoring.prometheusRule.fallbackFor=ten minutes")).toThrow(/fallbackFor/);
  });

  it("translates into scrape configs a Prometheus accepts, which select the right targets (what the e2e test runs)", () => {
    const dir = tmp();
    const configs = scrapeConfigs(on, join(dir, "sd"));
    expect(configs).toHaveLength(3);
    writeFileSync(join(dir, "prometheus.yml"), toYaml({ scrape_configs: configs }));
    expect(promtool(["check", "config", join(dir, "prometheus.yml")])).toContain("SUCCESS");
  });
});
