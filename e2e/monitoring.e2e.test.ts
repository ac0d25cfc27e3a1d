// Monitoring on the cluster: Debian's Prometheus runs on this host beside the cluster and scrapes
// the operator and the Region's pods by their pod IPs, configured from the chart's own
// ServiceMonitor and PodMonitors and loaded with its PrometheusRule (a short `for` on the
// fallback alert). With bots playing P2P, a P2P toggle and a forced fallback, every panel query
// of the dashboards the chart installs (ConfigMaps labelled for Grafana's sidecar, read back from
// the cluster) and every alert's measure returns series through Prometheus' HTTP API, and the
// fallback alert fires.
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { KubeClient } from "../platform/kube/kube.ts";
import {
  alerts,
  type K8sObject,
  kubeTargets,
  panelQueries,
  promtool,
  type RunningPrometheus,
  ruleFile,
  scrapeConfigs,
  startPrometheus,
  writeTargets,
} from "../testkit/monitoring.ts";
import { type BotFleet, runBots } from "../workloads/client/bots.ts";
import type { P2PClient } from "../workloads/client/p2p.ts";
import { type LoopbackStun, startLoopbackStun } from "../workloads/coordinator/stun.ts";
import {
  clusterTools,
  createKeysetSecret,
  installChart,
  regionTls,
  repoRoot,
  uninstallChart,
  waitFor,
} from "./kit.ts";

const kubeconfig = inject("kubeconfig");
const { helm, kubectl, hybridctl, newKeyset } = clusterTools(kubeconfig);
const OPERATOR_NS = "hybrid-p2p-system";
const RELEASE = "hp";
const NS = "demo";
const REGION = "demo";
const ZONES = ["prontera", "prt-fild08"];
const FIELD = "prt-fild08";
const G = "/apis/hybridp2p.io/v1alpha1";
const FALLBACK_FOR = "20s";
const MONITORING = [
  "monitoring.serviceMonitor.enabled=true",
  "monitoring.podMonitor.enabled=true",
  "monitoring.prometheusRule.enabled=true",
  "monitoring.dashboards.enabled=true",
  `monitoring.prometheusRule.fallbackFor=${FALLBACK_FOR}`,
];
let client: KubeClient;
let prom: RunningPrometheus | undefined;
let sdTimer: NodeJS.Timeout | undefined;
const dir = mkdtempSync(join(tmpdir(), "hp-e2e-prometheus-"));

interface Pod {
  metadata: { name: string; namespace: string; labels?: Record<string, string> };
  spec: { containers: { ports?: { name?: string; containerPort: number }[] }[] };
  status?: { podIP?: string; phase?: string; conditions?: { type: string; status: string }[] };
}
const get = <T>(path: string) => client.request<T>("GET", path);
const zoneStatus = async (name: string) =>
  (
    await get<{ status?: { mode?: string; conditions?: { type: string; status: string }[] } }>(
      `${G}/namespaces/${NS}/zones/${name}`,
    )
  ).status;
const mergePatch = (path: string, body: unknown) =>
  client.request("PATCH", path, { body, contentType: "application/merge-patch+json" });
const gone = async (path: string) =>
  (await client.request("GET", path).then(
    () => false,
    () => true,
  ))
    ? true
    : undefined;
const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
/** One number from an instant query that must return exactly one series. */
const scalar = async (expr: string) => {
  const r = await prom!.query(expr);
  return r.length === 1 ? Number(r[0]!.value[1]) : undefined;
};

/** kubernetes_sd in miniature (Debian's prometheus has none): the API's pods and Services as file_sd. */
async function refreshTargets() {
  const pods = (await get<{ items: Pod[] }>("/api/v1/pods")).items;
  const services = (await get<{ items: K8sObject[] }>("/api/v1/services")).items;
  // biome-ignore lint/suspicious/noExplicitAny: Services as the API returns them
  writeTargets(join(dir, "sd"), kubeTargets(pods, services as any));
}

beforeAll(async () => {
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  client = await new KubeClient(kc).init();
  // An earlier file's namespaces may still be terminating.
  await waitFor(`namespace ${NS} gone`, () => gone(`/api/v1/namespaces/${NS}`));
  await waitFor(`namespace ${OPERATOR_NS} gone`, () => gone(`/api/v1/namespaces/${OPERATOR_NS}`));
});

afterAll(async () => {
  clearInterval(sdTimer);
  await prom?.stop();
  rmSync(dir, { recursive: true, force: true });
  await client?.request("DELETE", `/api/v1/namespaces/${NS}`).catch(() => {});
  await uninstallChart(client, helm, RELEASE, OPERATOR_NS);
  client?.close();
}, 300_000);

describe("monitoring the demo region", () => {
  let stun: LoopbackStun | undefined;
  let fleet: BotFleet | undefined;
  afterAll(async () => {
    await fleet?.stop();
    await stun?.close();
  });

  it("installs the chart with its dashboards and the example; the Zones become Ready", async () => {
    await installChart(client, helm, RELEASE, OPERATOR_NS, [
      "--wait",
      "--timeout",
      "300s",
      "--set",
      "monitoring.dashboards.enabled=true",
    ]);
    kubectl(["create", "namespace", NS]);
    await createKeysetSecret(client, NS, REGION, newKeyset());
    kubectl(["apply", "-f", join(repoRoot, "examples/demo-region.yaml")]);
    for (const z of ZONES)
      await waitFor(`zone ${z} Ready`, async () =>
        (await zoneStatus(z))?.conditions?.some((c) => c.type === "Ready" && c.status === "True")
          ? true
          : undefined,
      );
  });

  it("runs Prometheus from the chart's monitors and rules; it scrapes the operator and every component", async () => {
    const objs = parseAllDocuments(
      helm([
        "template",
        RELEASE,
        join(repoRoot, "charts/hybrid-p2p"),
        "-n",
        OPERATOR_NS,
        ...MONITORING.flatMap((s) => ["--set", s]),
      ]),
    )
      .map((d) => d.toJS() as K8sObject | null)
      .filter((o): o is K8sObject => o !== null);
    const rules = ruleFile(objs);
    await refreshTargets();
    sdTimer = setInterval(() => void refreshTargets().catch(() => {}), 3_000);
    prom = await startPrometheus({
      dir,
      port: await freePort(),
      scrapeConfigs: scrapeConfigs(objs, join(dir, "sd")),
      rules,
      intervalS: 3,
      log: join(repoRoot, ".e2e-prometheus.log"),
    });
    expect(promtool(["check", "rules", join(dir, "rules.yaml")])).toMatch(/SUCCESS/);
    const want = ["operator", "gateway", "coordinator", "map-server", "login-server", "char-server"];
    await waitFor(
      "every component scraped",
      async () => {
        const up = await prom!.query("count by (component) (up == 1)");
        const have = up.map((s) => s.metric.component);
        return want.every((c) => have.includes(c)) ? true : undefined;
      },
      120_000,
    );
    // Every map server of both zones, each labelled with its zone and Region (a map server
    // reports its maps' players once it owns them).
    await waitFor("players series of both zones", async () =>
      (await scalar(
        `count(count by (zone) (hybridp2p_map_players{namespace="${NS}",region="${REGION}"}))`,
      )) === ZONES.length
        ? true
        : undefined,
    );
  });

  it("with bots playing P2P, a P2P toggle and a forced fallback: the fallback alert fires, and every panel and alert returns series", async () => {
    const p2pOn = (mode?: string) => mode === "P2P" || mode === "Mixed";
    await waitFor("the field in P2P", async () =>
      p2pOn((await zoneStatus(FIELD))?.mode) ? true : undefined,
    );
    const ready = async (component: string) =>
      waitFor(`a ready ${component} pod`, async () =>
        (
          await get<{ items: Pod[] }>(
            `/api/v1/namespaces/${NS}/pods?labelSelector=${encodeURIComponent(`app.kubernetes.io/component=${component}`)}`,
          )
        ).items.find((p) => p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True")),
      );
    const ip = async (component: string) => (await ready(component)).status!.podIP!;
    stun = await startLoopbackStun();
    const count = 4;
    fleet = await runBots({
      count,
      gatewayUrl: `wss://${await ip("gateway")}:7000`,
      maps: [FIELD],
      accounts: {
        loginUrl: `https://${await ip("login-server")}:6900`,
        charUrl: `https://${await ip("char-server")}:6121`,
      },
      tls: await regionTls(client, NS, REGION),
      p2pShare: 1,
      coordinators: [`wss://${await ip("coordinator")}:7100`],
      ice: stun.ice,
      decodeMode: "full",
      moveEveryMs: 0,
      chatEveryMs: 300,
      idPrefix: `mon${Date.now().toString(36)}`,
      failFast: true,
    });
    expect(fleet.stats()).toMatchObject({ connected: count, failed: 0 });
    const peers = fleet.clients as P2PClient[];
    await waitFor("every player meshed", async () =>
      peers.every((p) => p.connectedPeers.length === count - 1) ? true : undefined,
    );
    // The numbers reach Prometheus: the players on the field's map servers, and its P2P peers.
    await waitFor("the field's players and peers in Prometheus", async () =>
      (await scalar(`sum(hybridp2p_map_players{namespace="${NS}",zone="${FIELD}"})`)) === count &&
      (await scalar(`sum(hybridp2p_zone_p2p_peers{namespace="${NS}",zone="${FIELD}"})`)) === count
        ? true
        : undefined,
    );

    // A P2P toggle: each publish shows as a new published epoch that every pod applies (ack lag 0).
    const lag = `max(max by (namespace, region) (hybridp2p_flags_published_epoch{namespace="${NS}"}) - on (namespace, region) group_right () max by (namespace, region, pod) (hybridp2p_flags_applied_epoch{namespace="${NS}"}))`;
    const policy = `${G}/namespaces/${NS}/p2ppolicies/fields-p2p`;
    for (const enabled of [false, true]) {
      const before = (await scalar(`max(hybridp2p_flags_published_epoch{namespace="${NS}"})`)) ?? 0;
      await mergePatch(policy, { spec: { enabled } });
      await waitFor(`a new published epoch after P2P ${enabled ? "on" : "off"}`, async () => {
        const e = await scalar(`max(hybridp2p_flags_published_epoch{namespace="${NS}"})`);
        return e !== undefined && e > before ? true : undefined;
      });
      await waitFor("every pod acking it", async () => ((await scalar(lag)) === 0 ? true : undefined));
    }
    await waitFor("the field in P2P again", async () =>
      p2pOn((await zoneStatus(FIELD))?.mode) ? true : undefined,
    );

    // A forced fallback held past the alert's `for` fires it.
    hybridctl(["fallback", "force", "--zone", FIELD, "-n", NS, "--reason", "e2e monitoring"]);
    try {
      await waitFor("the field in Fallback", async () =>
        (await zoneStatus(FIELD))?.mode === "Fallback" ? true : undefined,
      );
      const firing = await waitFor(
        "HybridP2PZoneInFallback firing for the field",
        async () => {
          const r = await prom!.query(
            `ALERTS{alertname="HybridP2PZoneInFallback",alertstate="firing",namespace="${NS}",zone="${FIELD}"}`,
          );
          return r.length > 0 ? r : undefined;
        },
        120_000,
      );
      expect(firing[0]!.metric).toMatchObject({ region: REGION, severity: "warning" });
      expect(
        await scalar(
          `sum(hybridp2p_zone_fallback_entries_total{namespace="${NS}",zone="${FIELD}",cause="forced"})`,
        ),
      ).toBeGreaterThanOrEqual(1);

      // Every panel of the dashboards on the cluster and every alert's measure returns series.
      const dashboards = (
        await get<{ items: K8sObject[] }>(
          `/api/v1/namespaces/${OPERATOR_NS}/configmaps?labelSelector=${encodeURIComponent("grafana_dashboard=1")}`,
        )
      ).items;
      expect(dashboards).toHaveLength(2);
      const objs = parseAllDocuments(
        helm([
          "template",
          RELEASE,
          join(repoRoot, "charts/hybrid-p2p"),
          "-n",
          OPERATOR_NS,
          ...MONITORING.flatMap((s) => ["--set", s]),
        ]),
      )
        .map((d) => d.toJS() as K8sObject | null)
        .filter((o): o is K8sObject => o !== null);
      const queries = [
        ...panelQueries(dashboards).map((q) => ({ what: `${q.dashboard}: ${q.panel}`, expr: q.expr })),
        ...alerts(objs).map((a) => ({ what: `alert ${a.alert}`, expr: a.measure })),
      ];
      expect(queries.length).toBeGreaterThan(25);
      const empty: string[] = [];
      for (const q of queries)
        if ((await prom!.query(q.expr)).length === 0) empty.push(`${q.what}: ${q.expr}`);
      expect(empty).toEqual([]);
      // No other alert fires on a healthy region.
      const others = await prom!.query(`ALERTS{alertstate="firing",alertname!="HybridP2PZoneInFallback"}`);
      expect(others.map((s) => s.metric.alertname)).toEqual([]);

      // hybridctl top shows the same numbers.
      const top = hybridctl(["top", "--once", "-n", NS]);
      expect(top).toMatch(new RegExp(`${FIELD}\\s+Fallback\\s+${count}\\b`));
    } finally {
      hybridctl(["fallback", "clear", "--zone", FIELD, "-n", NS]);
    }
    await waitFor("the field out of Fallback", async () =>
      (await zoneStatus(FIELD))?.mode !== "Fallback" ? true : undefined,
    );
  });
});
