// `hybridctl fallback force|clear`: hold zones or a region's service in fallback, or release
// them, through the annotations and spec fields the policy compiler reads.
import type { Command } from "commander";
import { P2P_POLICY, REGION, ZONE } from "../../operator/api/constants.ts";
import {
  ANNOTATION_FALLBACK_CLEAR,
  ANNOTATION_FORCE_FALLBACK,
  ANNOTATION_FORCE_FALLBACK_SERVICES,
} from "../../operator/flags/compiler.ts";
import { KNOWN_SERVICES } from "../../platform/flags/layout.ts";
import { CliError, compileNamespace, type Globals, getObj, type Io, kube, mergePatch } from "../common.ts";

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
      const { compiled } = await compileNamespace(api, ns);
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

export function addFallbackCommands(cmd: Command, io: Io, globals: () => Globals): void {
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
}
