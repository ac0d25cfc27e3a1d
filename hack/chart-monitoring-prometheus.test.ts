// The chart's monitors, rules and dashboards in a real Prometheus (Debian's), scraping two
// metrics endpoints on loopback that stand where the API says an operator pod (behind its metrics
// Service) and a map server pod are: the translated scrape configs pick both, the relabelings
// give the labels the rules and dashboards join on (the operator's per-zone series keep the
// Region's namespace), a dashboard join returns the zone's mode, and a zone in fallback past the
// alert's (short) `for` fires it. The cluster e2e test (e2e/monitoring.e2e.test.ts) does the
// same against real pods; this one runs in seconds.

import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Gauge, Registry } from "prom-client";
import { afterAll, describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { registerFlagPlaneMetrics } from "../operator/flags/metrics.ts";
import { Metrics } from "../platform/kube/metrics.ts";
import { pollUntil } from "../platform/time.ts";
import { binDir } from "../testkit/local/services.ts";
import {
  type K8sObject,
  kubeTargets,
  panelQueries,
  type RunningPrometheus,
  ruleFile,
  scrapeConfigs,
  startPrometheus,
  writeTargets,
} from "../testkit/monitoring.ts";

const chart = new URL("../charts/hybrid-p2p", import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), "hp-prometheus-"));
const servers: Server[] = [];
let prom: RunningPrometheus | undefined;

afterAll(async () => {
  await prom?.stop();
  for (const s of servers) s.close();
  rmSync(dir, { recursive: true, force: true });
});

async function serve(registry: Registry): Promise<number> {
  const s = createServer(async (_req, res) => {
    res.setHeader("content-type", registry.contentType);
    res.end(await registry.metrics());
  });
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  return (s.address() as { port: number }).port;
}
const freePort = async () => {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const { port } = s.address() as { port: number };
  await new Promise((r) => s.close(r));
  return port;
};

describe("the chart's monitoring in Prometheus", () => {
  it("scrapes what the monitors select, with the labels the rules join on, and fires the fallback alert", async () => {
    // The operator: the runtime's metrics and the flag plane's, a zone of Region demo in fallback.
    const op = new Metrics();
    op.isLeader.set(1);
    const zone = {
      namespace: "demo",
      region: "demo",
      zone: "prt-fild08",
      appliedEpoch: 3,
      replicas: { desired: 1, applied: 1 },
      peers: null,
      players: null,
    };
    registerFlagPlaneMetrics(op.registry, () => ({
      zones: [{ ...zone, mode: "Fallback" }],
      regions: [{ namespace: "demo", region: "demo", publishedEpoch: 3 }],
    }));
    // A map server: its players, labelled with its zone as the map server does.
    const ms = new Registry();
    ms.setDefaultLabels({ service: "map-server", zone: "prt-fild08" });
    new Gauge({ name: "hybridp2p_map_players", help: "Players", labelNames: ["map"], registers: [ms] }).set(
      { map: "prt_fild08" },
      4,
    );
    const [opPort, msPort] = [await serve(op.registry), await serve(ms)];

    const objs = parseAllDocuments(
      execFileSync(
        join(binDir(), "helm"),
        [
          "template",
          "hp",
          chart,
          "-n",
          "hybrid-system",
          ...[
            "crds.install=false",
            "monitoring.serviceMonitor.enabled=true",
            "monitoring.podMonitor.enabled=true",
            "monitoring.prometheusRule.enabled=true",
            "monitoring.dashboards.enabled=true",
            "monitoring.prometheusRule.fallbackFor=2s",
          ].flatMap((s) => ["--set", s]),
        ],
        { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] },
      ),
    )
      .map((d) => d.toJS() as K8sObject | null)
      .filter((o): o is K8sObject => o !== null);
    // Where the API would say they are: the chart's operator pod behind its metrics Service, a
    // map server pod as the operator renders it, and a store pod the monitors must leave out.
    const pod = (
      ns: string,
      name: string,
      labels: Record<string, string>,
      port: number,
      portName = "metrics",
    ) => ({
      metadata: { name, namespace: ns, labels },
      spec: { containers: [{ ports: [{ name: portName, containerPort: port }] }] },
      status: { podIP: "127.0.0.1", phase: "Running" },
    });
    const operatorLabels = {
      "app.kubernetes.io/name": "hybrid-operator",
      "app.kubernetes.io/instance": "hp",
    };
    const region = { "app.kubernetes.io/part-of": "hybrid-p2p", "hybridp2p.io/region": "demo" };
    const pods = [
      pod("hybrid-system", "hp-hybrid-p2p-abc", operatorLabels, opPort),
      pod(
        "demo",
        "prt-fild08-map-server-0",
        { ...region, "app.kubernetes.io/component": "map-server", "hybridp2p.io/zone": "prt-fild08" },
        msPort,
      ),
      pod("demo", "demo-etcd-0", { ...region, "app.kubernetes.io/component": "etcd" }, msPort, "client"),
    ];
    const svc = objs.find((o) => o.kind === "Service" && o.metadata.name.endsWith("-metrics"))!;
    writeTargets(
      join(dir, "sd"),
      kubeTargets(pods, [{ ...svc, metadata: { ...svc.metadata, namespace: "hybrid-system" } } as never]),
    );
    prom = await startPrometheus({
      dir,
      port: await freePort(),
      scrapeConfigs: scrapeConfigs(objs, join(dir, "sd")),
      rules: ruleFile(objs),
      intervalS: 1,
    });

    const up = await pollUntil(
      "both targets up",
      async () => {
        const r = await prom!.query("up == 1");
        return r.length === 2 ? r : undefined;
      },
      20_000,
      250,
    );
    const byComponent = Object.fromEntries(up.map((s) => [s.metric.component, s.metric]));
    expect(byComponent["map-server"]).toMatchObject({
      namespace: "demo",
      pod: "prt-fild08-map-server-0",
      region: "demo",
    });
    expect(byComponent.operator).toMatchObject({ namespace: "hybrid-system", pod: "hp-hybrid-p2p-abc" });
    // honorLabels: the operator's per-zone series keep the Region's namespace.
    const mode = await prom.query('hybridp2p_zone_mode{mode="Fallback"}');
    expect(mode[0]!.metric).toMatchObject({
      namespace: "demo",
      region: "demo",
      zone: "prt-fild08",
      component: "operator",
    });

    // The dashboard's players-per-zone-and-mode join.
    const cms = objs.filter((o) => o.metadata.labels?.grafana_dashboard === "1");
    const join_ = panelQueries(cms).find((q) => q.panel === "Players per zone and mode")!;
    const players = await prom.query(join_.expr);
    expect(players.map((s) => [s.metric.zone, s.metric.mode, s.value[1]])).toEqual([
      ["prt-fild08", "Fallback", "4"],
    ]);

    const firing = await pollUntil(
      "HybridP2PZoneInFallback firing",
      async () => {
        const r = await prom!.query('ALERTS{alertname="HybridP2PZoneInFallback",alertstate="firing"}');
        return r.length > 0 ? r : undefined;
      },
      20_000,
      250,
    );
    expect(firing[0]!.metric).toMatchObject({ namespace: "demo", zone: "prt-fild08", severity: "warning" });
  }, 60_000);
});
