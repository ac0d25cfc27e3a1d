// `hybridctl flags get|watch`: the flag documents as the workloads read them, straight from the
// flag store (needs --etcd-endpoints or $HYBRIDP2P_ETCD_ENDPOINTS).
import type { Command } from "commander";
import type { Etcd3 } from "etcd3";
import {
  effectiveP2P,
  KNOWN_SERVICES,
  type Layout,
  layout,
  parsePointer,
  parsePublishedZone,
  type ZoneFlags,
} from "../../platform/flags/layout.ts";
import { CliError, emit, etcdOf, type Globals, type Io, outputOption, table } from "../common.ts";

/** The live publish's zone documents, read at the pointer's revision so they belong together. */
async function readFlags(
  etcd: Etcd3,
  l: Layout,
  namespace?: string,
): Promise<{ epoch: number; publish: string; revision: number; zones: ZoneFlags[] }> {
  const res = await etcd.get(l.pointer).exec();
  const kv = res.kvs[0];
  const revision = Number(res.header.revision);
  if (kv === undefined) return { epoch: 0, publish: "", revision, zones: [] };
  const p = parsePointer(l.pointer, kv.value.toString());
  const at = Number(kv.mod_revision);
  const docs = await etcd.getAll().prefix(l.zonesPrefix(namespace)).revision(at).exec();
  return {
    epoch: p.epoch,
    publish: p.publish,
    revision,
    zones: docs.kvs.map((d) => parsePublishedZone(d.key.toString(), d.value.toString())),
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

export function addFlagsCommands(cmd: Command, io: Io, globals: () => Globals, signal?: AbortSignal): void {
  const flags = cmd.command("flags").description("read the flag store directly");
  flags
    .command("get")
    .option("--zone <zone>", "one zone")
    .option("-n, --namespace <ns>", "one namespace (default: all)")
    .addOption(outputOption())
    .action((o) => flagsGet(globals(), o, io));
  flags
    .command("watch")
    .option("-n, --namespace <ns>", "one namespace (default: all)")
    .option("--count <n>", "stop after this many publishes", (v) => Number(v))
    .action((o) => flagsWatch(globals(), o, io, signal));
}
