// `hybridctl p2p enable|disable`: switch P2P by editing the P2PPolicy that governs a zone, or
// the one with exactly a given selector (created if none), then follow the rollout.
import type { Command } from "commander";
import { GROUP, P2P_POLICY, VERSION } from "../../operator/api/constants.ts";
import type { LabelSelector } from "../../operator/flags/compiler.ts";
import { CliError, compileNamespace, type Globals, type Io, kube, mergePatch } from "../common.ts";
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
  const { policies, compiled } = await compileNamespace(api, ns);
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
}
