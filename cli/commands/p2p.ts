// `hybridctl p2p enable|disable`: switch P2P by editing the P2PPolicy that governs a zone, or
// the one with exactly a given selector (created if none), then follow the rollout.
// `hybridctl p2p rollout --zone Z --to N [--step S --every T]`: the canary, steered: raise (or
// lower) the governing policy's rolloutPercent in steps, each applied and then watched for T
// seconds, stopping (exit 1, saying why) as soon as the zone falls back.
import type { Command } from "commander";
import { GROUP, P2P_POLICY, VERSION, ZONE } from "../../operator/api/constants.ts";
import type { LabelSelector } from "../../platform/kube/selector.ts";
import { sleep } from "../../platform/time.ts";
import {
  CliError,
  compileNamespace,
  type Globals,
  getObj,
  type Io,
  type KObj,
  kube,
  mergePatch,
} from "../common.ts";
import { waitApplied } from "../rollout.ts";

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

/** The same text for selectors that select the same, whatever their order. */
function canonicalSelector(s: unknown): string {
  const sel = (s ?? {}) as LabelSelector;
  return JSON.stringify({
    l: Object.entries(sel.matchLabels ?? {}).sort(),
    e: [...(sel.matchExpressions ?? [])]
      .map((e) => [e.key, e.operator, [...(e.values ?? [])].sort()])
      .sort((a, b) => (JSON.stringify(a) < JSON.stringify(b) ? -1 : 1)),
  });
}

/** FNV-1a: a short, stable policy name for a selector. */
function hash(s: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h.toString(16).padStart(8, "0");
}

/** The policy that governs a zone, refusing one that governs others too (unless forced). */
async function governingPolicy(
  api: ReturnType<typeof kube>,
  ns: string,
  zone: string,
  force: boolean | undefined,
): Promise<string> {
  const { compiled } = await compileNamespace(api, ns);
  const doc = compiled.zones.find((z) => z.zone === zone);
  if (doc === undefined) throw new CliError(`zone "${zone}" not found in namespace "${ns}"`);
  if (doc.policy === null) {
    throw new CliError(
      `no P2PPolicy selects zone "${zone}"; create one, or use --selector to create one for a label selector`,
    );
  }
  const policyName = doc.policy;
  const governed = compiled.policies.find((p) => p.name === policyName)!.governedZones;
  if (governed.length > 1 && !force) {
    throw new CliError(
      `zone "${zone}" is governed by policy "${policyName}", which also governs ${governed.filter((z) => z !== zone).join(", ")}; use --selector, or --force to change them all`,
    );
  }
  return policyName;
}

/** The percentages a rollout walks through, from `from` to `to` by `step` (the last one exact). */
export function rolloutSteps(from: number, to: number, step: number | undefined): number[] {
  if (!Number.isInteger(to) || to < 0 || to > 100)
    throw new CliError("--to must be an integer from 0 to 100");
  if (step !== undefined && (!Number.isInteger(step) || step < 1 || step > 100))
    throw new CliError("--step must be an integer from 1 to 100");
  if (from === to) return [to];
  const dir = to > from ? 1 : -1;
  const out: number[] = [];
  for (let p = from + dir * (step ?? Math.abs(to - from)); dir * (to - p) > 0; p += dir * step!) out.push(p);
  out.push(to);
  return out;
}

interface ZoneCanary {
  mode?: string;
  fallbackReason?: string;
  p2pPlayers?: { eligible?: number; playing?: number; rolloutPercent?: number };
}

/** Why the rollout must stop now (the zone fell back), or undefined. */
function fallenBack(z: KObj): string | undefined {
  const s = z.status as ZoneCanary | undefined;
  if (s?.mode === "Fallback" || s?.fallbackReason) return s.fallbackReason || "the zone is in fallback";
  return undefined;
}

function canaryLine(z: KObj): string {
  const s = (z.status ?? {}) as ZoneCanary;
  const p = s.p2pPlayers;
  const players = p
    ? `${p.playing ?? 0} of ${p.eligible ?? 0} eligible players play P2P`
    : "no player counts yet";
  return `mode ${s.mode ?? "?"}, ${players}`;
}

async function rollout(
  g: Globals,
  o: {
    zone: string;
    to: number;
    step?: number;
    every: number;
    namespace?: string;
    timeout: number;
    force?: boolean;
  },
  io: Io,
) {
  const api = kube(g);
  const ns = o.namespace ?? "default";
  const policyName = await governingPolicy(api, ns, o.zone, o.force);
  const policy = await getObj(api, P2P_POLICY.plural, ns, policyName);
  const from = (policy.spec?.rolloutPercent as number | undefined) ?? 100;
  const steps = rolloutSteps(from, o.to, o.step);
  const stop = (at: number, why: string) =>
    new CliError(
      `stopped at ${at}% (target ${o.to}%): zone ${o.zone} fell back: ${why}. Fix the cause, then run the rollout again (or lower it: --to ${from})`,
    );
  let at = from;
  for (const [i, pct] of steps.entries()) {
    const before = await getObj(api, ZONE.plural, ns, o.zone);
    const why = fallenBack(before);
    if (why !== undefined) throw stop(at, why);
    const patched = await mergePatch(api, P2P_POLICY.plural, ns, policyName, {
      spec: { rolloutPercent: pct },
    });
    io.err(
      `P2PPolicy ${ns}/${policyName}: rolloutPercent=${pct} (generation ${patched.metadata.generation})`,
    );
    await waitApplied(g, api, ns, policyName, patched.metadata.generation ?? 0, o.timeout, io);
    at = pct;
    if (i === steps.length - 1) break;
    // Watch the canary for a while before the next step.
    const until = Date.now() + o.every * 1000;
    while (Date.now() < until) {
      const z = await getObj(api, ZONE.plural, ns, o.zone);
      const w = fallenBack(z);
      if (w !== undefined) throw stop(at, w);
      await sleep(Math.min(1000, Math.max(0, until - Date.now())));
    }
    io.err(`${pct}%: ${canaryLine(await getObj(api, ZONE.plural, ns, o.zone))}`);
  }
  const z = await getObj(api, ZONE.plural, ns, o.zone);
  const w = fallenBack(z);
  if (w !== undefined) throw stop(at, w);
  io.out(`zone ${o.zone} at rolloutPercent ${at}: ${canaryLine(z)}`);
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
  let policyName: string;
  if (o.zone !== undefined) {
    policyName = await governingPolicy(api, ns, o.zone, o.force);
  } else {
    const sel = parseSelector(o.selector!);
    const { policies } = await compileNamespace(api, ns);
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

export function addP2PCommands(cmd: Command, io: Io, globals: () => Globals): void {
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
  p2pCmd
    .command("rollout")
    .description(
      "raise (or lower) a zone's P2P rollout in steps, watching the canary; stops and says why when the zone falls back",
    )
    .requiredOption("--zone <zone>", "the zone (edits the policy that governs it)")
    .requiredOption("--to <percent>", "the rolloutPercent to reach", (v) => Number(v))
    .option("--step <percent>", "raise by this much per step (default: in one step)", (v) => Number(v))
    .option("--every <seconds>", "watch each step this long before the next", (v) => Number(v), 30)
    .option("-n, --namespace <ns>", "namespace", "default")
    .option("--timeout <seconds>", "give up on one step's rollout after this long", (v) => Number(v), 60)
    .option("--force", "edit the governing policy even when it governs other zones too")
    .action((o) => rollout(globals(), o, io));
}
