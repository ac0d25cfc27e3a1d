// `hybridctl status`: regions with their zones' modes, and per zone what the flag plane wrote
// into its status (mode, applied epoch, replicas, policy, P2P peers, fallback reason).
import type { Command } from "commander";
import { REGION, ZONE } from "../../operator/api/constants.ts";
import type { Region } from "../../operator/api/region.ts";
import { roAdvertisedPort } from "../../operator/render/ro.ts";
import { sleep } from "../../platform/time.ts";
import { emit, type Globals, type Io, kube, list, outputOption, table } from "../common.ts";

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
      return {
        namespace: r.metadata.namespace,
        name: r.metadata.name,
        zones: mine.length,
        modes: byMode,
        // Where an RO client's login server setting points (spec.ro): host and port.
        roLogin: roLoginAddress(r as unknown as Region),
      };
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
      // The canary: players eligible for P2P and playing P2P under the rollout.
      p2pPlayers: z.status?.p2pPlayers ?? null,
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
    const ro = data.regions.filter((x) => x.roLogin);
    const roText = ro.length
      ? `\n\nRO clients (PACKETVER 20101124): set the client's login server to\n${ro
          .map((x) => `  ${x.namespace}/${x.name}: ${x.roLogin}`)
          .join("\n")}`
      : "";
    return `${r}\n\n${z}${roText}`;
  });
}

/** host:port of a Region's RO login endpoint as clients reach it, or null when RO is off. */
export function roLoginAddress(region: Region): string | null {
  if (!region.spec?.ro?.enabled) return null;
  return `${region.spec.ro.publicAddress ?? "127.0.0.1"}:${roAdvertisedPort(region, "login")}`;
}

export function addStatusCommand(cmd: Command, io: Io, globals: () => Globals): void {
  cmd
    .command("status")
    .description("regions and zones with mode and applied epoch")
    .option("-n, --namespace <ns>", "namespace", "default")
    .option("-A, --all-namespaces", "every namespace")
    .option("-w, --watch", "print again every 2 seconds until Ctrl-C")
    .addOption(outputOption())
    .action(async (o) => {
      if (!o.watch) return status(globals(), o, io);
      for (;;) {
        // Clear the terminal between tables so the view stays in place, as `watch` does.
        if (o.output === "table") io.out(`\x1b[H\x1b[2J${new Date().toISOString()}  (Ctrl-C to stop)\n`);
        await status(globals(), o, io);
        await sleep(2000);
      }
    });
}
