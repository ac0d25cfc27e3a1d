// `hybridctl top`: per zone its mode, players, P2P peers (relayed), flag epoch lag and map tick
// budget, refreshed live. The Zones come from the API (what the flag plane folded into their
// status); players and tick budget exist only in the map servers, and the published epoch only
// in the operator, so top reads their /metrics through the API server's pod proxy: the same
// series the dashboards chart, with nothing but kubectl access (no Prometheus needed).
import { CoreV1Api, KubeConfig } from "@kubernetes/client-node";
import type { Command } from "commander";
import { ZONE } from "../../operator/api/constants.ts";
import { METRICS_PORT } from "../../operator/render/constants.ts";
import { sleep } from "../../platform/time.ts";
import {
  CliError,
  emit,
  type Globals,
  type Io,
  type KObj,
  kube,
  list,
  outputOption,
  table,
} from "../common.ts";

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The samples of a Prometheus text exposition (comments and malformed lines skipped). */
export function parseMetrics(text: string): Sample[] {
  const out: Sample[] = [];
  const line = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;
  const label = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
  for (const l of text.split("\n")) {
    if (l.startsWith("#")) continue;
    const m = line.exec(l);
    if (!m) continue;
    const raw = m[3]!;
    const value = raw === "+Inf" ? Infinity : raw === "-Inf" ? -Infinity : Number(raw);
    if (Number.isNaN(value) && raw !== "NaN") continue;
    const labels: Record<string, string> = {};
    for (const [, k, v] of (m[2] ?? "").matchAll(label))
      labels[k!] = v!.replace(/\\n/g, "\n").replace(/\\(["\\])/g, "$1");
    out.push({ name: m[1]!, labels, value });
  }
  return out;
}

/** One map server pod's metrics, or why they could not be read. */
export interface PodMetrics {
  namespace: string;
  zone: string;
  pod: string;
  samples?: Sample[];
  error?: string;
}

export interface TopRow {
  namespace: string;
  zone: string;
  region: string;
  mode: string;
  players: number | null;
  peers: number | null;
  relayed: number | null;
  /** Published minus the lowest epoch the zone's map servers applied. */
  epochLag: number | null;
  /** The highest last-tick share of the budget among the zone's map servers (1 = all of it). */
  tickBudget: number | null;
  /** Map server pods whose metrics were read, and pods found. */
  scraped: { ok: number; pods: number };
}

const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

/** The rows top shows: pure, from the Zones, the map servers' and the operator's samples. */
export function topRows(zones: KObj[], pods: PodMetrics[], operator: Sample[]): TopRow[] {
  const published = new Map<string, number>();
  for (const s of operator)
    if (s.name === "hybridp2p_flags_published_epoch") {
      const k = `${s.labels.namespace}/${s.labels.region}`;
      published.set(k, Math.max(published.get(k) ?? 0, s.value));
    }
  return zones
    .map((z) => {
      const ns = z.metadata.namespace;
      const region = z.spec?.regionRef?.name ?? "";
      const mine = pods.filter((p) => p.namespace === ns && p.zone === z.metadata.name);
      const read = mine.filter((p) => p.samples !== undefined);
      const values = (name: string) =>
        read.flatMap((p) => p.samples!.filter((s) => s.name === name).map((s) => s.value));
      const applied = values("hybridp2p_flags_applied_epoch");
      const budget = values("hybridp2p_map_tick_budget_used_ratio");
      const pub = published.get(`${ns}/${region}`);
      const lowest = applied.length > 0 ? Math.min(...applied) : z.status?.appliedEpoch;
      const peers = z.status?.p2pPeers;
      return {
        namespace: ns,
        zone: z.metadata.name,
        region,
        mode: z.status?.mode ?? "-",
        players: read.length > 0 ? sum(values("hybridp2p_map_players")) : null,
        peers: peers ? (peers.connected ?? 0) : null,
        relayed: peers ? (peers.relayed ?? 0) : null,
        epochLag: pub !== undefined && lowest !== undefined ? Math.max(0, pub - lowest) : null,
        tickBudget: budget.length > 0 ? Math.max(...budget) : null,
        scraped: { ok: read.length, pods: mine.length },
      };
    })
    .sort((a, b) => a.namespace.localeCompare(b.namespace) || a.zone.localeCompare(b.zone));
}

const num = (n: number | null) => (n === null ? "-" : String(n));

/** The table: one line per zone, then what could not be read. */
export function formatTop(rows: TopRow[], problems: string[] = []): string {
  const t = table([
    ["NAMESPACE", "ZONE", "MODE", "PLAYERS", "PEERS", "RELAYED", "EPOCH-LAG", "TICK-BUDGET", "PODS"],
    ...rows.map((r) => [
      r.namespace,
      r.zone,
      r.mode,
      num(r.players),
      num(r.peers),
      num(r.relayed),
      num(r.epochLag),
      r.tickBudget === null ? "-" : `${Math.round(r.tickBudget * 100)}%`,
      `${r.scraped.ok}/${r.scraped.pods}`,
    ]),
  ]);
  return problems.length > 0 ? `${t}\n\n${problems.map((p) => `! ${p}`).join("\n")}` : t;
}

interface PodObj {
  metadata: { name: string; namespace: string; labels?: Record<string, string> };
  spec?: { containers: { ports?: { name?: string; containerPort: number }[] }[] };
  status?: { phase?: string };
}
/** The pod's container port named "metrics" (the operator's is the chart's metrics.port). */
const metricsPort = (p: PodObj) =>
  p.spec?.containers.flatMap((c) => c.ports ?? []).find((x) => x.name === "metrics")?.containerPort ??
  METRICS_PORT;

async function snapshot(g: Globals, o: { namespace?: string; allNamespaces?: boolean }) {
  const kc = new KubeConfig();
  if (g.kubeconfig) kc.loadFromFile(g.kubeconfig);
  else kc.loadFromDefault();
  const core = kc.makeApiClient(CoreV1Api);
  const ns = o.allNamespaces ? undefined : (o.namespace ?? "default");
  const labelSelector = "app.kubernetes.io/component=map-server";
  const [zones, podList, operators] = await Promise.all([
    list(kube(g), ZONE.plural, ns),
    ns === undefined
      ? core.listPodForAllNamespaces({ labelSelector })
      : core.listNamespacedPod({ namespace: ns, labelSelector }),
    core.listPodForAllNamespaces({ labelSelector: "app.kubernetes.io/name=hybrid-operator" }),
  ]);
  const scrape = (p: PodObj) =>
    core
      .connectGetNamespacedPodProxyWithPath({
        name: `${p.metadata.name}:${metricsPort(p)}`,
        namespace: p.metadata.namespace,
        path: "metrics",
      })
      .then((text) => parseMetrics(String(text)));
  const running = (p: PodObj) => p.status?.phase === "Running";
  const problems: string[] = [];
  const pods: PodMetrics[] = await Promise.all(
    (podList.items as PodObj[]).map(async (p) => {
      const base = {
        namespace: p.metadata.namespace,
        zone: p.metadata.labels?.["hybridp2p.io/zone"] ?? "",
        pod: p.metadata.name,
      };
      if (!running(p)) return { ...base, error: "not running" };
      try {
        return { ...base, samples: await scrape(p) };
      } catch (err) {
        problems.push(
          `${p.metadata.namespace}/${p.metadata.name}: metrics not read: ${String((err as Error).message ?? err).slice(0, 200)}`,
        );
        return { ...base, error: String(err) };
      }
    }),
  );
  // Only the leader exports the flag plane's series; followers' scrapes add nothing.
  const operator = (
    await Promise.all(
      (operators.items as PodObj[]).filter(running).map((p) => scrape(p).catch(() => [] as Sample[])),
    )
  ).flat();
  if (operators.items.length > 0 && !operator.some((s) => s.name === "hybridp2p_flags_published_epoch"))
    problems.push("the operator's published epochs were not read: EPOCH-LAG unknown");
  return { rows: topRows(zones, pods, operator), problems };
}

export function addTopCommand(cmd: Command, io: Io, globals: () => Globals): void {
  cmd
    .command("top")
    .description("per zone: mode, players, P2P peers, flag epoch lag and map tick budget, refreshed live")
    .option("-n, --namespace <ns>", "namespace", "default")
    .option("-A, --all-namespaces", "every namespace")
    .option("--interval <seconds>", "seconds between refreshes", "2")
    .option("--once", "print once and exit")
    .addOption(outputOption())
    .action(async (o) => {
      const interval = Number(o.interval);
      if (!Number.isFinite(interval) || interval <= 0)
        throw new CliError(`--interval must be a positive number of seconds, not "${o.interval}"`);
      const show = async () => {
        const s = await snapshot(globals(), o);
        emit(io, o.output, s, () => formatTop(s.rows, s.problems));
      };
      if (o.once || o.output !== "table") return show();
      for (;;) {
        // Clear the terminal between tables so the view stays in place, as `top` does.
        io.out(`\x1b[H\x1b[2J${new Date().toISOString()}  (Ctrl-C to stop)\n`);
        await show();
        await sleep(interval * 1000);
      }
    });
}
