#!/usr/bin/env node
// hybridctl: look at and steer the flag plane.
//   hybridctl status [-n NS | -A] [-o table|json|yaml]
//   hybridctl p2p enable|disable (--zone Z | --selector S) [-n NS] [--timeout 60]
//   hybridctl fallback force|clear (--zone Z | --policy P | --service S --region R) [--reason TEXT]
//   hybridctl flags get [--zone Z] [-n NS] [-o table|json|yaml]
//   hybridctl flags watch [-n NS]
import { fileURLToPath } from "node:url";
import { CustomObjectsApi, KubeConfig, PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import { Command, Option } from "commander";
import type { Etcd3 } from "etcd3";
import { stringify as toYaml } from "yaml";
import { GROUP, P2P_POLICY, REGION, VERSION, ZONE } from "../operator/api/constants.ts";
import {
  ANNOTATION_FALLBACK_CLEAR,
  ANNOTATION_FORCE_FALLBACK,
  ANNOTATION_FORCE_FALLBACK_SERVICES,
  compile,
  type LabelSelector,
  type PolicyInput,
  type RegionInput,
  type ZoneInput,
} from "../operator/flags/compiler.ts";
import { ReportWatcher } from "../operator/flags/reports.ts";
import { connectFlagStore } from "../platform/flags/etcd.ts";
import {
  effectiveP2P,
  KNOWN_SERVICES,
  type Layout,
  layout,
  type PodReport,
  parsePointer,
  parseZoneFlags,
  type ZoneFlags,
} from "../platform/flags/layout.ts";
import { addPlayCommands } from "./play.ts";

export interface Io {
  out(line: string): void;
  err(line: string): void;
}

interface KObj {
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
  };
}

export class CliError extends Error {}

// ---- clients ----------------------------------------------------------------------------------

interface Globals {
  kubeconfig?: string;
  etcdEndpoints?: string;
  prefix?: string;
}

function kube(g: Globals): CustomObjectsApi {
  const kc = new KubeConfig();
  if (g.kubeconfig) kc.loadFromFile(g.kubeconfig);
  else kc.loadFromDefault();
  return kc.makeApiClient(CustomObjectsApi);
}

function etcdOf(g: Globals): Etcd3 {
  const endpoints = g.etcdEndpoints ?? process.env.HYBRIDP2P_ETCD_ENDPOINTS;
  if (!endpoints)
    throw new CliError(
      "the flag store is not configured: pass --etcd-endpoints or set HYBRIDP2P_ETCD_ENDPOINTS",
    );
  return connectFlagStore(endpoints);
}

async function list(api: CustomObjectsApi, plural: string, namespace: string | undefined): Promise<KObj[]> {
  const res = (
    namespace === undefined
      ? await api.listClusterCustomObject({ group: GROUP, version: VERSION, plural })
      : await api.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural })
  ) as { items: KObj[] };
  return res.items;
}

async function getObj(api: CustomObjectsApi, plural: string, namespace: string, name: string): Promise<KObj> {
  try {
    return (await api.getNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace,
      plural,
      name,
    })) as KObj;
  } catch (err) {
    if (String(err).includes("404"))
      throw new CliError(`${plural} "${name}" not found in namespace "${namespace}"`);
    throw err;
  }
}

function mergePatch(api: CustomObjectsApi, plural: string, namespace: string, name: string, body: object) {
  return api.patchNamespacedCustomObject(
    { group: GROUP, version: VERSION, namespace, plural, name, body },
    setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
  ) as Promise<KObj>;
}

// ---- output -----------------------------------------------------------------------------------

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

function emit(io: Io, format: string, data: unknown, asTable: () => string): void {
  if (format === "json") io.out(JSON.stringify(data, null, 2));
  else if (format === "yaml") io.out(toYaml(data).trimEnd());
  else if (format === "table") io.out(asTable());
  else throw new CliError(`unknown output format ${format} (table, json or yaml)`);
}

// ---- selectors --------------------------------------------------------------------------------

/** Parses `a=b,c!=d,e in (x,y),f notin (z),g,!h` into a LabelSelector. */
export function parseSelector(s: string): LabelSelector {
  const matchLabels: Record<string, string> = {};
  const matchExpressions: { key: string; operator: string; values?: string[] }[] = [];
  const parts = s.match(/[^,(]+(\([^)]*\))?/g) ?? [];
  for (const raw of parts.map((p) => p.trim()).filter(Boolean)) {
    const set = raw.match(/^([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)$/);
    const ne = raw.match(/^([\w./-]+)\s*!=\s*([\w./-]*)$/);
    const eq = raw.match(/^([\w./-]+)\s*==?\s*([\w./-]*)$/);
    const absent = raw.match(/^!([\w./-]+)$/);
    const exists = raw.match(/^([\w./-]+)$/);
    if (set) {
      const values = set[3]!.split(",").map((v) => v.trim());
      matchExpressions.push({
        key: set[1]!,
        operator: set[2] === "in" ? "In" : "NotIn",
        values: values.filter(Boolean),
      });
    } else if (ne) matchExpressions.push({ key: ne[1]!, operator: "NotIn", values: [ne[2]!] });
    else if (eq) matchLabels[eq[1]!] = eq[2]!;
    else if (absent) matchExpressions.push({ key: absent[1]!, operator: "DoesNotExist" });
    else if (exists) matchExpressions.push({ key: exists[1]!, operator: "Exists" });
    else throw new CliError(`cannot parse selector term "${raw}"`);
  }
  const sel: LabelSelector = {};
  if (Object.keys(matchLabels).length > 0) sel.matchLabels = matchLabels;
  if (matchExpressions.length > 0) sel.matchExpressions = matchExpressions;
  return sel;
}

function canonicalSelector(s: unknown): string {
  const sel = (s ?? {}) as LabelSelector;
  return JSON.stringify({
    l: Object.entries(sel.matchLabels ?? {}).sort(),
    e: [...(sel.matchExpressions ?? [])]
      .map((e) => [e.key, e.operator, [...(e.values ?? [])].sort()])
      .sort((a, b) => (JSON.stringify(a) < JSON.stringify(b) ? -1 : 1)),
  });
}

// ---- status -----------------------------------------------------------------------------------

async function status(
  g: Globals,
  o: { namespace?: string; allNamespaces?: boolean; output: string },
  io: Io,
) {
  const api = kube(g);
  const ns = o.allNamespaces ? undefined : (o.namespace ?? "default");
  const [regions, zones] = await Promise.all([list(api, REGION.plural, ns), list(api, ZONE.plural, ns)]);
  const data = {
    regions: regions.map((r) => {
      const mine = zones.filter(
        (z) => z.metadata.namespace === r.metadata.namespace && z.spec?.regionRef?.name === r.metadata.name,
      );
      const byMode: Record<string, number> = {};
      for (const z of mine)
        byMode[z.status?.mode ?? "Unknown"] = (byMode[z.status?.mode ?? "Unknown"] ?? 0) + 1;
      return { namespace: r.metadata.namespace, name: r.metadata.name, zones: mine.length, modes: byMode };
    }),
    zones: zones.map((z) => ({
      namespace: z.metadata.namespace,
      name: z.metadata.name,
      region: z.spec?.regionRef?.name ?? null,
      mode: z.status?.mode ?? null,
      appliedEpoch: z.status?.appliedEpoch ?? null,
      replicas: { applied: z.status?.replicas?.applied ?? 0, desired: z.spec?.mapServer?.replicas ?? 1 },
      policy: z.status?.policy ?? null,
      p2pPeers: z.status?.p2pPeers ?? null,
      fallbackReason: z.status?.fallbackReason ?? null,
    })),
  };
  emit(io, o.output, data, () => {
    const r = table([
      ["NAMESPACE", "REGION", "ZONES", "MODES"],
      ...data.regions.map((x) => [
        x.namespace,
        x.name,
        String(x.zones),
        Object.entries(x.modes)
          .map(([m, n]) => `${m}=${n}`)
          .join(" "),
      ]),
    ]);
    const z = table([
      ["NAMESPACE", "ZONE", "REGION", "MODE", "EPOCH", "REPLICAS", "POLICY", "PEERS", "FALLBACK"],
      ...data.zones.map((x) => [
        x.namespace,
        x.name,
        x.region ?? "-",
        x.mode ?? "-",
        x.appliedEpoch === null ? "-" : String(x.appliedEpoch),
        `${x.replicas.applied}/${x.replicas.desired}`,
        x.policy ?? "-",
        // P2P clients in a mesh, and how many of them have a pair on the server relay.
        x.p2pPeers
          ? `${x.p2pPeers.connected ?? 0}${x.p2pPeers.relayed ? ` (${x.p2pPeers.relayed} relayed)` : ""}`
          : "-",
        x.fallbackReason ?? "",
      ]),
    ]);
    return `${r}\n\n${z}`;
  });
}

// ---- p2p enable|disable -----------------------------------------------------------------------

function toInputs(policies: KObj[], zones: KObj[], regions: KObj[]) {
  return {
    policies: policies as unknown as PolicyInput[],
    zones: zones as unknown as ZoneInput[],
    regions: regions as unknown as RegionInput[],
  };
}

async function p2p(
  g: Globals,
  enable: boolean,
  o: { zone?: string; selector?: string; namespace?: string; timeout: number; force?: boolean },
  io: Io,
) {
  if ((o.zone === undefined) === (o.selector === undefined))
    throw new CliError("give exactly one of --zone or --selector");
  const api = kube(g);
  const ns = o.namespace ?? "default";
  const [policies, zones, regions] = await Promise.all([
    list(api, P2P_POLICY.plural, ns),
    list(api, ZONE.plural, ns),
    list(api, REGION.plural, ns),
  ]);
  const compiled = compile(toInputs(policies, zones, regions));
  let policyName: string;
  if (o.zone !== undefined) {
    const doc = compiled.zones.find((z) => z.zone === o.zone);
    if (doc === undefined) throw new CliError(`zone "${o.zone}" not found in namespace "${ns}"`);
    if (doc.policy === null) {
      throw new CliError(
        `no P2PPolicy selects zone "${o.zone}"; create one, or use --selector to create one for a label selector`,
      );
    }
    policyName = doc.policy;
    const governed = compiled.policies.find((p) => p.name === policyName)!.governedZones;
    if (governed.length > 1 && !o.force) {
      throw new CliError(
        `zone "${o.zone}" is governed by policy "${policyName}", which also governs ${governed.filter((z) => z !== o.zone).join(", ")}; use --selector, or --force to change them all`,
      );
    }
  } else {
    const sel = parseSelector(o.selector!);
    const same = policies.find((p) => canonicalSelector(p.spec?.zoneSelector) === canonicalSelector(sel));
    if (same !== undefined) policyName = same.metadata.name;
    else {
      policyName = `hybridctl-${hash(canonicalSelector(sel))}`;
      io.err(`creating P2PPolicy ${policyName} for selector ${o.selector}`);
      await api.createNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace: ns,
        plural: P2P_POLICY.plural,
        body: {
          apiVersion: `${GROUP}/${VERSION}`,
          kind: P2P_POLICY.kind,
          metadata: { name: policyName, namespace: ns },
          spec: { zoneSelector: sel, enabled: enable, priority: 100 },
        },
      });
    }
  }
  const patched = await mergePatch(api, P2P_POLICY.plural, ns, policyName, { spec: { enabled: enable } });
  io.err(`P2PPolicy ${ns}/${policyName}: enabled=${enable} (generation ${patched.metadata.generation})`);
  await waitApplied(g, api, ns, policyName, patched.metadata.generation ?? 0, o.timeout, io);
}

function hash(s: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h.toString(16).padStart(8, "0");
}

/** Waits until the policy's generation is published and every replica of its zones reports that epoch. */
async function waitApplied(
  g: Globals,
  api: CustomObjectsApi,
  ns: string,
  policy: string,
  generation: number,
  timeoutS: number,
  io: Io,
): Promise<void> {
  const deadline = Date.now() + timeoutS * 1000;
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  // 1. The operator has compiled this generation: its status names the epoch that carries it.
  let epoch: number | undefined;
  while (epoch === undefined) {
    const p = await getObj(api, P2P_POLICY.plural, ns, policy);
    if ((p.status?.observedGeneration ?? -1) >= generation && p.status?.epoch !== undefined)
      epoch = p.status.epoch;
    else if (Date.now() > deadline) {
      throw new CliError(
        `timed out: the operator has not published generation ${generation} of ${policy} (is it running?)`,
      );
    } else await sleep(100);
  }
  io.err(`published as epoch ${epoch}`);
  // 2. Every replica of every zone the policy governs reports it.
  const zones = await list(api, ZONE.plural, ns);
  const compiled = compile(
    toInputs(await list(api, P2P_POLICY.plural, ns), zones, await list(api, REGION.plural, ns)),
  );
  const governed = compiled.policies.find((p) => p.name === policy)?.governedZones ?? [];
  const desired = new Map(zones.map((z) => [z.metadata.name, z.spec?.mapServer?.replicas ?? 1]));
  const etcd = etcdOf(g);
  const l = layout(g.prefix);
  const watcher = new ReportWatcher(etcd, l, { namespace: ns });
  try {
    await watcher.start();
    let lastLine = "";
    for (;;) {
      const missing = progress(governed, desired, watcher.reports(), epoch);
      const done = governed.length - missing.length;
      const line = `epoch ${epoch}: ${done}/${governed.length} zones applied${
        missing.length > 0
          ? ` (waiting: ${missing
              .map((m) => m.zone)
              .slice(0, 5)
              .join(", ")}${missing.length > 5 ? ", ..." : ""})`
          : ""
      }`;
      if (line !== lastLine) io.err(line);
      lastLine = line;
      if (missing.length === 0) {
        io.out(`applied: every replica of ${governed.length} zones runs epoch ${epoch}`);
        return;
      }
      if (Date.now() > deadline) {
        throw new CliError(
          `timed out after ${timeoutS}s at epoch ${epoch}; missing:\n${missing.map((m) => `  ${m.zone}: ${m.detail}`).join("\n")}`,
        );
      }
      await sleep(100);
    }
  } finally {
    await watcher.close();
    etcd.close();
  }
}

export function progress(
  zones: readonly string[],
  desired: ReadonlyMap<string, number>,
  reports: readonly PodReport[],
  epoch: number,
): { zone: string; detail: string }[] {
  const missing: { zone: string; detail: string }[] = [];
  for (const zone of zones) {
    const want = desired.get(zone) ?? 1;
    const rs = reports.filter((r) => r.zone === zone && r.service === "map-server");
    const ok = rs.filter((r) => r.epoch >= epoch);
    if (ok.length >= want) continue;
    const lagging = rs
      .filter((r) => r.epoch < epoch)
      .map((r) => `${r.pod} at epoch ${r.epoch}${r.rejectedEpoch ? ` (rejected ${r.rejectedEpoch})` : ""}`);
    const absent = want - rs.length;
    missing.push({
      zone,
      detail: `${ok.length} of ${want} replicas at epoch ${epoch}${lagging.length ? `; lagging: ${lagging.join(", ")}` : ""}${absent > 0 ? `; ${absent} replicas not reporting` : ""}`,
    });
  }
  return missing;
}

// ---- fallback force|clear ----------------------------------------------------------------------

async function fallback(
  g: Globals,
  force: boolean,
  o: {
    zone?: string;
    policy?: string;
    service?: string;
    region?: string;
    namespace?: string;
    reason?: string;
  },
  io: Io,
) {
  const api = kube(g);
  const ns = o.namespace ?? "default";
  const targets = [o.zone, o.policy, o.service].filter((x) => x !== undefined).length;
  if (targets !== 1) throw new CliError("give exactly one of --zone, --policy or --service (with --region)");
  if (o.zone !== undefined) {
    await getObj(api, ZONE.plural, ns, o.zone);
    const annotations: Record<string, string | null> = force
      ? { [ANNOTATION_FORCE_FALLBACK]: o.reason ?? "forced by hybridctl" }
      : { [ANNOTATION_FORCE_FALLBACK]: null, [ANNOTATION_FALLBACK_CLEAR]: new Date().toISOString() };
    await mergePatch(api, ZONE.plural, ns, o.zone, { metadata: { annotations } });
    io.out(`zone ${ns}/${o.zone}: fallback ${force ? "forced" : "cleared"}`);
  } else if (o.policy !== undefined) {
    await mergePatch(api, P2P_POLICY.plural, ns, o.policy, { spec: { forceFallback: force } });
    if (!force) {
      // Release Manual-recovery latches on the policy's zones too.
      const zones = await list(api, ZONE.plural, ns);
      const compiled = compile(
        toInputs(await list(api, P2P_POLICY.plural, ns), zones, await list(api, REGION.plural, ns)),
      );
      const stamp = new Date().toISOString();
      for (const z of compiled.policies.find((p) => p.name === o.policy)?.governedZones ?? []) {
        await mergePatch(api, ZONE.plural, ns, z, {
          metadata: { annotations: { [ANNOTATION_FALLBACK_CLEAR]: stamp } },
        });
      }
    }
    io.out(`policy ${ns}/${o.policy}: forceFallback=${force}`);
  } else {
    if (o.region === undefined) throw new CliError("--service needs --region");
    if (!(KNOWN_SERVICES as readonly string[]).includes(o.service!)) {
      throw new CliError(`unknown service ${o.service} (one of ${KNOWN_SERVICES.join(", ")})`);
    }
    const region = await getObj(api, REGION.plural, ns, o.region);
    const current = new Set(
      (region.metadata.annotations?.[ANNOTATION_FORCE_FALLBACK_SERVICES] ?? "")
        .split(",")
        .map((s) => s.trim())
        .filter(Boolean),
    );
    if (force) current.add(o.service!);
    else current.delete(o.service!);
    const value = current.size > 0 ? [...current].sort().join(",") : null;
    await mergePatch(api, REGION.plural, ns, o.region, {
      metadata: { annotations: { [ANNOTATION_FORCE_FALLBACK_SERVICES]: value } },
    });
    io.out(`region ${ns}/${o.region}: ${o.service} fallback ${force ? "forced" : "cleared"}`);
  }
}

// ---- flags get|watch ---------------------------------------------------------------------------

export async function readFlags(
  etcd: Etcd3,
  l: Layout,
  namespace?: string,
): Promise<{ epoch: number; dir: string; revision: number; zones: ZoneFlags[] }> {
  const res = await etcd.get(l.pointer).exec();
  const kv = res.kvs[0];
  const revision = Number(res.header.revision);
  if (kv === undefined) return { epoch: 0, dir: "", revision, zones: [] };
  const p = parsePointer(l.pointer, kv.value.toString());
  const docs = await etcd.getAll().prefix(l.zonesPrefix(p.dir, namespace)).revision(revision).exec();
  return {
    epoch: p.epoch,
    dir: p.dir,
    revision,
    zones: docs.kvs.map((d) => parseZoneFlags(d.key.toString(), d.value.toString())),
  };
}

function flagsRows(zones: ZoneFlags[]): string[][] {
  return [
    [
      "NAMESPACE",
      "ZONE",
      "POLICY",
      "ENABLED",
      "FALLBACK",
      ...KNOWN_SERVICES.map((s) => s.toUpperCase()),
      "REASON",
    ],
    ...zones.map((z) => [
      z.namespace,
      z.zone,
      z.policy ?? "-",
      String(z.enabled),
      String(z.fallback),
      ...KNOWN_SERVICES.map((s) =>
        effectiveP2P(z, s) ? "p2p" : z.services[s]?.fallback ? "fallback" : "server",
      ),
      z.reason ?? "",
    ]),
  ];
}

async function flagsGet(g: Globals, o: { zone?: string; namespace?: string; output: string }, io: Io) {
  const etcd = etcdOf(g);
  try {
    const f = await readFlags(etcd, layout(g.prefix), o.namespace);
    const zones = o.zone === undefined ? f.zones : f.zones.filter((z) => z.zone === o.zone);
    if (o.zone !== undefined && zones.length === 0)
      throw new CliError(`zone ${o.zone} has no flags at epoch ${f.epoch} (P2P off)`);
    emit(
      io,
      o.output,
      { epoch: f.epoch, revision: f.revision, zones },
      () => `epoch ${f.epoch}\n${table(flagsRows(zones))}`,
    );
  } finally {
    etcd.close();
  }
}

async function flagsWatch(
  g: Globals,
  o: { namespace?: string; count?: number },
  io: Io,
  signal?: AbortSignal,
) {
  const etcd = etcdOf(g);
  const l = layout(g.prefix);
  let seen = 0;
  try {
    const first = await readFlags(etcd, l, o.namespace);
    const line = (f: Awaited<ReturnType<typeof readFlags>>) =>
      `${new Date().toISOString()} epoch ${f.epoch}: ${f.zones.length} zones, ${f.zones.filter((z) => effectiveP2P(z, "map-server")).length} P2P, ${f.zones.filter((z) => z.fallback).length} in forced fallback`;
    io.out(line(first));
    const w = await etcd
      .watch()
      .key(l.pointer)
      .startRevision(String(first.revision + 1))
      .create();
    await new Promise<void>((resolve) => {
      const stop = () => {
        void w.cancel().finally(resolve);
      };
      signal?.addEventListener("abort", stop);
      process.once("SIGINT", stop);
      w.on("put", async () => {
        try {
          io.out(line(await readFlags(etcd, l, o.namespace)));
        } catch (err) {
          io.err(`unreadable flags: ${String(err)}`);
        }
        if (o.count !== undefined && ++seen >= o.count) stop();
      });
      w.on("error", (err) => {
        io.err(`watch cancelled: ${String(err)}`);
        stop();
      });
    });
  } finally {
    etcd.close();
  }
}

// ---- the program ------------------------------------------------------------------------------

export function program(io: Io, signal?: AbortSignal): Command {
  const cmd = new Command("hybridctl")
    .description("Look at and steer the hybrid-p2p flag plane")
    .option("--kubeconfig <path>", "kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    .option("--etcd-endpoints <urls>", "flag store endpoints (default: $HYBRIDP2P_ETCD_ENDPOINTS)")
    .option("--prefix <prefix>", "flag key prefix", "/hybridp2p/v1/")
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.out(s.trimEnd()), writeErr: (s) => io.err(s.trimEnd()) });
  const globals = () => cmd.opts<Globals>();
  const output = () => new Option("-o, --output <format>", "table, json or yaml").default("table");

  cmd
    .command("status")
    .description("regions and zones with mode and applied epoch")
    .option("-n, --namespace <ns>", "namespace", "default")
    .option("-A, --all-namespaces", "every namespace")
    .option("-w, --watch", "print again every 2 seconds until Ctrl-C")
    .addOption(output())
    .action(async (o) => {
      if (!o.watch) return status(globals(), o, io);
      for (;;) {
        // Clear the terminal between tables so the view stays in place, as `watch` does.
        if (o.output === "table") io.out(`\x1b[H\x1b[2J${new Date().toISOString()}  (Ctrl-C to stop)\n`);
        await status(globals(), o, io);
        await new Promise((r) => setTimeout(r, 2000));
      }
    });

  const p2pCmd = cmd
    .command("p2p")
    .description("switch P2P on or off by editing a P2PPolicy, then follow the rollout");
  for (const verb of ["enable", "disable"] as const) {
    p2pCmd
      .command(verb)
      .option("--zone <zone>", "the zone (edits the policy that governs it)")
      .option(
        "--selector <selector>",
        "zones by label selector (edits or creates the policy with exactly that selector)",
      )
      .option("-n, --namespace <ns>", "namespace", "default")
      .option("--timeout <seconds>", "give up after this long", (v) => Number(v), 60)
      .option("--force", "edit the governing policy even when it governs other zones too")
      .action((o) => p2p(globals(), verb === "enable", o, io));
  }

  const fb = cmd.command("fallback").description("force zones or services into fallback, or clear it");
  for (const verb of ["force", "clear"] as const) {
    fb.command(verb)
      .option("--zone <zone>", "one zone (annotation)")
      .option("--policy <policy>", "every zone the policy governs (spec.forceFallback)")
      .option("--service <service>", "one service in a region (annotation on the Region)")
      .option("--region <region>", "the region, with --service")
      .option("--reason <text>", "why (shown in the zone's status)")
      .option("-n, --namespace <ns>", "namespace", "default")
      .action((o) => fallback(globals(), verb === "force", o, io));
  }

  const flags = cmd.command("flags").description("read the flag store directly");
  flags
    .command("get")
    .option("--zone <zone>", "one zone")
    .option("-n, --namespace <ns>", "one namespace (default: all)")
    .addOption(output())
    .action((o) => flagsGet(globals(), o, io));
  flags
    .command("watch")
    .option("-n, --namespace <ns>", "one namespace (default: all)")
    .option("--count <n>", "stop after this many publishes", (v) => Number(v))
    .action((o) => flagsWatch(globals(), o, io, signal));
  addPlayCommands(cmd, io, globals, signal);
  return cmd;
}

/** Runs hybridctl; returns the exit code. */
export async function run(argv: string[], io: Io, signal?: AbortSignal): Promise<number> {
  try {
    await program(io, signal).parseAsync(argv, { from: "user" });
    return 0;
  } catch (err) {
    const e = err as { code?: string; exitCode?: number; message?: string };
    if (typeof e.code === "string" && e.code.startsWith("commander.")) {
      return e.code === "commander.helpDisplayed" || e.code === "commander.version" ? 0 : (e.exitCode ?? 1);
    }
    io.err(`error: ${err instanceof CliError ? err.message : String(err)}`);
    return 1;
  }
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const io: Io = { out: (s) => process.stdout.write(`${s}\n`), err: (s) => process.stderr.write(`${s}\n`) };
  run(process.argv.slice(2), io).then((code) => process.exit(code));
}
