// `hybridctl bots`: load and try a zone from the command line. Bots sign up and log in like
// players (--login/--char), or carry development tokens signed with a keyset file (--keyset).
import type { Command } from "commander";
import { GROUP, VERSION, ZONE } from "../../operator/api/constants.ts";
import { sleep } from "../../platform/time.ts";
import { runBots } from "../../workloads/client/bots.ts";
import { runRoBots } from "../../workloads/client/ro.ts";
import type { ClientTls } from "../../workloads/client/socket.ts";
import { nodeTlsOptions } from "../../workloads/client/ws.ts";
import { CliError, type Globals, type Io, kube } from "../common.ts";

async function zoneMaps(g: Globals, namespace: string, zone: string): Promise<string[]> {
  const z = (await kube(g)
    .getNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural: ZONE.plural, name: zone })
    .catch((err: { code?: number }) => {
      throw new CliError(err.code === 404 ? `zone ${namespace}/${zone} not found` : String(err));
    })) as { spec?: { maps?: { name: string }[] } };
  const maps = (z.spec?.maps ?? []).map((m) => m.name);
  if (maps.length === 0) throw new CliError(`zone ${namespace}/${zone} has no maps`);
  return maps;
}

export function addBotsCommand(cmd: Command, io: Io, globals: () => Globals, signal?: AbortSignal): void {
  cmd
    .command("bots")
    .description("connect N bots to a zone's maps through a gateway and print what they see")
    .requiredOption("--count <n>", "number of bots", (v) => Number.parseInt(v, 10))
    .option("--zone <zone>", "the Zone whose maps the bots play on (SDK bots)")
    .option(
      "--gateway <url>",
      "gateway WebSocket URL, e.g. wss://10.0.0.5:7000 (SDK bots; ws:// where a Region runs without TLS)",
    )
    .option("--protocol <protocol>", "sdk (WebSocket, the default) or ro (the RO protocol over TCP)", "sdk")
    .option(
      "--ro-login <host:port>",
      "with --protocol ro: the RO login endpoint (the Region's <region>-ro-login Service); bots sign up at --login first",
    )
    .option("--login <url>", "login server URL: bots sign up, log in and pick characters like players")
    .option("--char <url>", "char server URL (with --login)")
    .option("--keyset <file>", "instead of --login/--char: sign development tokens with this keyset")
    .option("-n, --namespace <ns>", "namespace of the Zone", "default")
    .option(
      "--p2p-share <fraction>",
      "share of P2P (WebRTC) bots, 0 to 1 (needs --coordinator)",
      (v) => Number(v),
      0,
    )
    .option(
      "--coordinator <url>",
      "P2P coordinator WebSocket URL the P2P bots mesh through, e.g. wss://10.0.0.5:7100 (repeatable or a comma list: replicas)",
      (v: string, prev: string[]) => [
        ...prev,
        ...v
          .split(",")
          .map((u) => u.trim())
          .filter((u) => u !== ""),
      ],
      [] as string[],
    )
    .option(
      "--ca-file <file>",
      "trust this CA for wss:// and https:// (the Region's: ca.crt of its <region>-serving-tls Secret); default $HYBRIDP2P_CA_FILE, else the system's trust",
    )
    .option(
      "--tls-server-name <name>",
      "check the servers' certificate for this name instead of the URLs' host (when dialling IP addresses)",
    )
    .option("--duration <seconds>", "stop after this long (default: until Ctrl-C)", (v) => Number(v))
    .action(
      async (o: {
        count: number;
        zone: string;
        gateway: string;
        keyset?: string;
        login?: string;
        char?: string;
        namespace: string;
        p2pShare: number;
        coordinator: string[];
        duration?: number;
        protocol: string;
        roLogin?: string;
        caFile?: string;
        tlsServerName?: string;
      }) => {
        if (!(o.count > 0)) throw new CliError("--count must be a positive number");
        if (o.protocol === "ro") {
          await roBots(io, o, signal);
          return;
        }
        if (o.protocol !== "sdk") throw new CliError("--protocol must be sdk or ro");
        if (!o.zone || !o.gateway) throw new CliError("SDK bots need --zone and --gateway");
        const tls = clientTls(o);
        const zone = o.zone;
        const gateway = o.gateway;
        if (!(o.p2pShare >= 0 && o.p2pShare <= 1)) throw new CliError("--p2p-share must be between 0 and 1");
        if (o.p2pShare > 0 && o.coordinator.length === 0)
          throw new CliError(
            "--p2p-share needs --coordinator <url>: P2P bots mesh through the P2P coordinator",
          );
        const viaAccounts = o.login !== undefined || o.char !== undefined;
        if (viaAccounts === (o.keyset !== undefined) || (viaAccounts && !(o.login && o.char))) {
          throw new CliError(
            "give either --login and --char (real accounts) or --keyset (development tokens)",
          );
        }
        const maps = await zoneMaps(globals(), o.namespace, zone);
        io.out(`connecting ${o.count} bots to ${zone} (${maps.join(", ")}) through ${gateway}`);
        const fleet = await runBots({
          count: o.count,
          gatewayUrl: gateway,
          maps,
          zone,
          ...(viaAccounts ? { accounts: { loginUrl: o.login!, charUrl: o.char! } } : { keyset: o.keyset }),
          p2pShare: o.p2pShare,
          coordinators: o.coordinator,
          tls,
        });
        const report = () => {
          const s = fleet.stats();
          io.out(
            `connected=${s.connected} failed=${s.failed} closed=${s.closed} aoi=${s.aoi} seq_errors=${s.seqErrors} p50_ms=${s.p50Ms} p99_ms=${s.p99Ms}`,
          );
        };
        // Why bots failed, once (an untrusted certificate fails every bot the same way).
        const first = fleet.firstError();
        if (first) io.err(`first failure: ${first}`);
        await reportUntilDone(report, o.duration, signal);
        await fleet.stop();
      },
    );
}

/** The bots' TLS trust from the flags; a CA file that cannot be read is a clear error now. */
function clientTls(o: { caFile?: string; tlsServerName?: string }): ClientTls {
  const tls: ClientTls = {
    ...(o.caFile ? { caFile: o.caFile } : {}),
    ...(o.tlsServerName ? { serverName: o.tlsServerName } : {}),
  };
  try {
    nodeTlsOptions(tls);
  } catch (err) {
    throw new CliError((err as Error).message);
  }
  return tls;
}

/** RO bots: RO login, char and map endpoints, like legacy RO clients; accounts signed up over HTTP. */
async function roBots(
  io: Io,
  o: {
    count: number;
    roLogin?: string;
    login?: string;
    duration?: number;
    caFile?: string;
    tlsServerName?: string;
  },
  signal?: AbortSignal,
): Promise<void> {
  const m = /^(.+):(\d{1,5})$/.exec(o.roLogin ?? "");
  if (!m) throw new CliError("--protocol ro needs --ro-login <host:port> (the RO login endpoint)");
  if (!o.login)
    throw new CliError("--protocol ro needs --login <url>: RO bots sign up over the login server's HTTP API");
  const host = m[1]!.replace(/^\[|\]$/g, "");
  io.out(`connecting ${o.count} RO bots through ${host}:${m[2]}`);
  const fleet = await runRoBots({
    count: o.count,
    host,
    loginPort: Number(m[2]),
    signUpUrl: o.login,
    tls: clientTls(o),
  });
  const report = () => {
    const s = fleet.stats();
    io.out(
      `connected=${s.connected} failed=${s.failed} closed=${s.closed} moves=${s.moves} move_p50_ms=${s.p50Ms} move_p99_ms=${s.p99Ms}`,
    );
  };
  await reportUntilDone(report, o.duration, signal);
  await fleet.stop();
}

/** Calls `report` every 2 s (and once at the end) until `durationS` is up or `signal` aborts; forever without either. */
async function reportUntilDone(
  report: () => void,
  durationS: number | undefined,
  signal: AbortSignal | undefined,
): Promise<void> {
  const end = durationS === undefined ? undefined : Date.now() + durationS * 1000;
  while (!signal?.aborted && (end === undefined || Date.now() < end)) {
    await sleep(Math.min(2000, end === undefined ? 2000 : Math.max(0, end - Date.now())));
    report();
  }
}
