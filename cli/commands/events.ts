// `hybridctl events list|describe|create|cancel`: WorldEvents (world events of the global
// orchestrator, workloads/orchestrator) with their state in each targeted Region.
import type { Command } from "commander";
import { API_VERSION, GROUP, VERSION, WORLD_EVENT } from "../../operator/api/constants.ts";
import type { WorldEvent, WorldEventSpec } from "../../operator/api/worldevent.ts";
import { parseDuration } from "../../platform/time.ts";
import {
  CliError,
  emit,
  type Globals,
  getObj,
  type Io,
  type KObj,
  kube,
  list,
  mergePatch,
  outputOption,
  table,
} from "../common.ts";
import { parseSelector } from "./p2p.ts";

type Event = KObj & { spec?: WorldEvent["spec"]; status?: WorldEvent["status"] };

const age = (since: string | undefined, now = Date.now()): string => {
  if (!since) return "-";
  const s = Math.max(0, Math.round((now - Date.parse(since)) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  if (s < 172800) return `${Math.round(s / 3600)}h`;
  return `${Math.round(s / 86400)}d`;
};

/** One line per Region: `ns/name=State(Reason)`. */
export function regionStates(ev: Event): string {
  return (
    (ev.status?.regions ?? [])
      .map(
        (r) =>
          `${r.namespace}/${r.name}=${r.state}${r.reason && r.state !== "Active" ? `(${r.reason})` : ""}`,
      )
      .join(" ") || "-"
  );
}

function summary(ev: Event) {
  return {
    namespace: ev.metadata.namespace,
    name: ev.metadata.name,
    type: ev.spec?.type ?? null,
    phase: ev.status?.phase ?? null,
    activeRegions: ev.status?.activeRegions ?? 0,
    targetRegions: ev.status?.targetRegions ?? 0,
    nextStartTime: ev.status?.nextStartTime ?? null,
    cancelled: ev.spec?.cancelled ?? false,
    regions: ev.status?.regions ?? [],
  };
}

async function listEvents(
  g: Globals,
  o: { namespace?: string; allNamespaces?: boolean; output: string },
  io: Io,
) {
  const api = kube(g);
  const events = (await list(api, WORLD_EVENT.plural, o.allNamespaces ? undefined : o.namespace)) as Event[];
  const data = events.map(summary);
  emit(io, o.output, data, () =>
    table([
      ["NAMESPACE", "NAME", "TYPE", "PHASE", "ACTIVE", "NEXT", "REGIONS"],
      ...events.map((e) => {
        const s = summary(e);
        return [
          s.namespace,
          s.name,
          s.type ?? "-",
          s.phase ?? "-",
          `${s.activeRegions}/${s.targetRegions}`,
          s.nextStartTime ?? "-",
          regionStates(e),
        ];
      }),
    ]),
  );
}

async function describe(g: Globals, name: string, o: { namespace: string; output: string }, io: Io) {
  const api = kube(g);
  const ev = (await getObj(api, WORLD_EVENT.plural, o.namespace, name)) as Event;
  emit(io, o.output, { ...summary(ev), spec: ev.spec, conditions: ev.status?.conditions ?? [] }, () => {
    const s = ev.spec;
    const what =
      s?.type === "Boss"
        ? `boss ${s.boss?.mob} x${s.boss?.count ?? 1}${s.boss?.x !== undefined ? ` at ${s.boss.x},${s.boss.y}` : ""}`
        : s?.type === "Invasion"
          ? `invasion of ${s.invasion?.count ?? 20} ${s.invasion?.mob}`
          : s?.type === "Rates"
            ? `exp x${s.rates?.exp ?? 1}, drop x${s.rates?.drop ?? 1}`
            : "announcement";
    const when = s?.schedule?.cron
      ? `cron "${s.schedule.cron}"`
      : s?.triggers?.population
        ? `when ${s.triggers.population.minPlayers} players play (per ${s.triggers.population.scope ?? "Zone"})`
        : (s?.schedule?.start ?? "at creation");
    const head = [
      `Name:         ${ev.metadata.namespace}/${ev.metadata.name}`,
      `Type:         ${s?.type} (${what})`,
      `Announcement: ${s?.announcement?.message ?? "-"}`,
      `When:         ${when}, for ${s?.schedule?.durationSeconds ?? 3600}s${s?.cancelled ? " (cancelled)" : ""}`,
      `Maps:         ${s?.targets?.maps?.join(", ") ?? "every map of the targeted zones"}`,
      `Phase:        ${ev.status?.phase ?? "-"}${ev.status?.nextStartTime ? `, next ${ev.status.nextStartTime}` : ""}`,
      `Occurrences:  ${ev.status?.occurrences ?? 0}`,
    ].join("\n");
    const regions = table([
      ["REGION", "STATE", "REASON", "START", "END", "MAPS", "PLAYERS", "MOBS", "MESSAGE"],
      ...(ev.status?.regions ?? []).map((r) => [
        `${r.namespace}/${r.name}`,
        r.state,
        r.reason ?? "",
        r.startTime ?? "-",
        r.endTime ?? "-",
        String(r.maps ?? 0),
        String(r.players ?? 0),
        r.spawned ? `${r.alive ?? 0}/${r.spawned}` : "-",
        r.message ?? "",
      ]),
    ]);
    const conditions = table([
      ["CONDITION", "STATUS", "REASON", "AGE", "MESSAGE"],
      ...(ev.status?.conditions ?? []).map((c) => [
        c.type,
        c.status,
        c.reason,
        age(c.lastTransitionTime),
        c.message,
      ]),
    ]);
    return `${head}\n\n${regions}\n\n${conditions}`;
  });
}

export interface CreateFlags {
  type: string;
  mob?: string;
  count?: string;
  x?: string;
  y?: string;
  exp?: string;
  drop?: string;
  message?: string;
  onEnd?: string;
  region?: string[];
  regionSelector?: string;
  zoneSelector?: string;
  map?: string[];
  start?: string;
  cron?: string;
  duration?: string;
  minPlayers?: string;
  scope?: string;
  keepWhenCleared?: boolean;
}

function int(what: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n)) throw new CliError(`${what} must be an integer, got ${JSON.stringify(v)}`);
  return n;
}

function num(what: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new CliError(`${what} must be a number, got ${JSON.stringify(v)}`);
  return n;
}

/** The WorldEvent spec the flags of `events create` describe (the apiserver validates the rest). */
export function specFromFlags(o: CreateFlags, now = Date.now()): WorldEventSpec {
  const type = o.type as WorldEventSpec["type"];
  const spec: Record<string, unknown> = { type };
  if (type === "Boss")
    spec.boss = {
      mob: o.mob ?? "baphomet",
      ...(o.count ? { count: int("--count", o.count) } : {}),
      ...(o.x !== undefined ? { x: int("--x", o.x), y: int("--y", o.y) } : {}),
    };
  else if (type === "Invasion")
    spec.invasion = {
      mob: o.mob ?? "orc_warrior",
      ...(o.count ? { count: int("--count", o.count) } : {}),
      ...(o.keepWhenCleared ? { endWhenCleared: false } : {}),
    };
  else if (type === "Rates") spec.rates = { exp: num("--exp", o.exp) ?? 1, drop: num("--drop", o.drop) ?? 1 };
  else if (type !== "Announcement")
    throw new CliError("--type must be Boss, Invasion, Rates or Announcement");
  if (o.message) spec.announcement = { message: o.message, ...(o.onEnd ? { onEnd: o.onEnd } : {}) };
  const targets: Record<string, unknown> = {};
  if (o.region?.length)
    targets.regions = o.region.map((r) => {
      const [namespace, name] = r.includes("/") ? r.split("/") : [r, r];
      return { namespace, name };
    });
  if (o.regionSelector !== undefined || !o.region?.length)
    targets.regionSelector = o.regionSelector ? parseSelector(o.regionSelector) : {};
  if (o.zoneSelector) targets.zoneSelector = parseSelector(o.zoneSelector);
  if (o.map?.length) targets.maps = o.map;
  spec.targets = targets;
  const schedule: Record<string, unknown> = {};
  if (o.start) {
    // "+10m" is from now; anything else an RFC 3339 time.
    const start = o.start.startsWith("+")
      ? now + (parseDuration(o.start.slice(1)) ?? Number.NaN)
      : Date.parse(o.start);
    if (Number.isNaN(start))
      throw new CliError(`--start: want an RFC 3339 time or +DURATION, got ${o.start}`);
    schedule.start = new Date(start).toISOString().replace(/\.\d{3}Z$/, "Z");
  }
  if (o.cron) schedule.cron = o.cron;
  if (o.duration) {
    const ms = parseDuration(o.duration);
    if (ms === undefined) throw new CliError(`--duration: want e.g. 90s, 30m or 2h, got ${o.duration}`);
    schedule.durationSeconds = Math.round(ms / 1000);
  }
  if (Object.keys(schedule).length > 0) spec.schedule = schedule;
  if (o.minPlayers)
    spec.triggers = {
      population: { minPlayers: int("--min-players", o.minPlayers), ...(o.scope ? { scope: o.scope } : {}) },
    };
  return spec as unknown as WorldEventSpec;
}

const collect = (v: string, prev: string[] = []) => [...prev, v];

export function addEventsCommands(cmd: Command, io: Io, globals: () => Globals): void {
  const events = cmd.command("events").description("world events (WorldEvents) and their state per Region");
  events
    .command("list")
    .description("WorldEvents with their phase and state per Region")
    .option("-n, --namespace <ns>", "namespace", "default")
    .option("-A, --all-namespaces", "every namespace")
    .addOption(outputOption())
    .action((o) => listEvents(globals(), o, io));
  events
    .command("describe <name>")
    .description("one WorldEvent: what, where, when, each Region's state and the conditions")
    .option("-n, --namespace <ns>", "namespace", "default")
    .addOption(outputOption())
    .action((name, o) => describe(globals(), name, o, io));
  events
    .command("create <name>")
    .description("create a WorldEvent (targets every Region unless --region or --region-selector)")
    .requiredOption("--type <type>", "Boss, Invasion, Rates or Announcement")
    .option("-n, --namespace <ns>", "namespace", "default")
    .option("--mob <mob>", "Boss or Invasion: the mob")
    .option("--count <n>", "Boss or Invasion: how many per map")
    .option("--x <cell>", "Boss: cell x")
    .option("--y <cell>", "Boss: cell y")
    .option("--keep-when-cleared", "Invasion: run to the end even once every invader is killed")
    .option("--exp <rate>", "Rates: experience multiplier")
    .option("--drop <rate>", "Rates: drop multiplier")
    .option("--message <text>", "announcement when it starts")
    .option("--on-end <text>", "announcement when it ends")
    .option("--region <ns/name>", "a target Region (repeatable)", collect)
    .option("--region-selector <selector>", "target Regions by label selector (as kubectl -l)")
    .option("--zone-selector <selector>", "target Zones by label selector (as kubectl -l)")
    .option("--map <map>", "a target map (repeatable; Boss and Invasion need one)", collect)
    .option("--start <time>", "RFC 3339 time or +DURATION from now (default: now)")
    .option("--cron <expr>", "recurring: five cron fields, UTC")
    .option("--duration <d>", "how long each occurrence lasts (e.g. 30m)")
    .option("--min-players <n>", "start in a Region once this many players play on its targeted maps")
    .option("--scope <scope>", "Zone or Region: how --min-players counts")
    .option("--dry-run", "print the manifest instead of creating it")
    .addOption(outputOption().default("yaml"))
    .action(
      async (name: string, o: CreateFlags & { namespace: string; dryRun?: boolean; output: string }) => {
        const manifest = {
          apiVersion: API_VERSION,
          kind: WORLD_EVENT.kind,
          metadata: { name, namespace: o.namespace },
          spec: specFromFlags(o),
        };
        if (o.dryRun) {
          emit(io, o.output === "table" ? "yaml" : o.output, manifest, () => "");
          return;
        }
        const api = kube(globals());
        try {
          await api.createNamespacedCustomObject({
            group: GROUP,
            version: VERSION,
            namespace: o.namespace,
            plural: WORLD_EVENT.plural,
            body: manifest,
          });
        } catch (err) {
          const body = (err as { body?: unknown }).body;
          const text = typeof body === "string" ? body : JSON.stringify(body ?? "");
          const message = /"message":"((?:[^"\\]|\\.)*)"/.exec(text)?.[1];
          throw new CliError(`cannot create ${name}: ${message ?? String((err as Error).message ?? err)}`);
        }
        io.out(`worldevent.${GROUP}/${name} created`);
      },
    );
  events
    .command("cancel <name>")
    .description("end a WorldEvent everywhere now (cannot be undone)")
    .option("-n, --namespace <ns>", "namespace", "default")
    .action(async (name: string, o: { namespace: string }) => {
      const api = kube(globals());
      await getObj(api, WORLD_EVENT.plural, o.namespace, name);
      await mergePatch(api, WORLD_EVENT.plural, o.namespace, name, { spec: { cancelled: true } });
      io.out(`worldevent.${GROUP}/${name} cancelled`);
    });
}
