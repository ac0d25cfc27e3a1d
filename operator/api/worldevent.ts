// WorldEvent: a world event of the global orchestrator (a boss, a mob invasion, experience and
// drop multipliers, an announcement) across Regions: what happens, where, when, and on which
// live-state triggers. The orchestrator workload (workloads/orchestrator) reads it and delivers it
// to every targeted Region's map servers (platform/bus/world.ts); status says how each Region is.

import { type Static, Type } from "@sinclair/typebox";
import { WORLD_EVENT_MOBS, WORLD_EVENT_TYPES } from "../../platform/bus/world.ts";
import { LabelSelector, ResourceSchema, StatusCommon } from "./common.ts";
import { WORLD_EVENT } from "./constants.ts";
import { cel, DateTime, DefaultedObject, DnsLabel, Int64, StringEnum } from "./schema.ts";

export const WorldEventTypeValues = WORLD_EVENT_TYPES;
export type WorldEventType = (typeof WorldEventTypeValues)[number];

export const WorldEventPhaseValues = ["Scheduled", "Waiting", "Active", "Ended", "Failed"] as const;
export type WorldEventPhase = (typeof WorldEventPhaseValues)[number];

/** Per Region: Scheduled (an occurrence is coming), Active, Ended, Failed (with a reason). */
export const RegionEventStateValues = ["Scheduled", "Waiting", "Active", "Ended", "Failed"] as const;
export type RegionEventState = (typeof RegionEventStateValues)[number];

export const PopulationScopeValues = ["Zone", "Region"] as const;

/** rAthena's MAP_NAME_LENGTH rule, as in Zone maps. */
const MapName = Type.String({
  minLength: 1,
  maxLength: 11,
  pattern: "^[a-z0-9][a-z0-9_@-]*$",
  description: "rAthena map name.",
});

const Mob = StringEnum(WORLD_EVENT_MOBS, { description: "The mob to spawn (the map server's mob table)." });

const BossSpec = Type.Object(
  {
    mob: Mob,
    count: Type.Optional(
      Type.Integer({ default: 1, minimum: 1, maximum: 5, description: "Bosses per targeted map." }),
    ),
    x: Type.Optional(Type.Integer({ minimum: 0, maximum: 1023, description: "Cell to appear on." })),
    y: Type.Optional(Type.Integer({ minimum: 0, maximum: 1023, description: "Cell to appear on." })),
  },
  {
    description: "A boss on each targeted map.",
    ...cel({
      rule: "has(self.x) == has(self.y)",
      message: "boss x and y go together",
      fieldPath: ".x",
      reason: "FieldValueRequired",
    }),
  },
);

const InvasionSpec = Type.Object(
  {
    mob: Mob,
    count: Type.Optional(
      Type.Integer({ default: 20, minimum: 1, maximum: 300, description: "Mobs per targeted map." }),
    ),
    endWhenCleared: Type.Optional(
      Type.Boolean({
        default: true,
        description: "The event ends early on a map (and in a Region) once all its invaders are killed.",
      }),
    ),
  },
  { description: "A mob invasion on each targeted map." },
);

const Rate = (what: string) =>
  Type.Optional(Type.Number({ default: 1, minimum: 0.1, maximum: 100, description: `${what} multiplier.` }));

const RatesSpec = Type.Object(
  { exp: Rate("Experience"), drop: Rate("Drop (zeny) from kills") },
  {
    description: "Experience and drop multipliers on the targeted maps while the event is active.",
    ...cel({
      rule: "self.exp != 1.0 || self.drop != 1.0",
      message: "rates must change exp or drop (a multiplier of 1 on both does nothing)",
      reason: "FieldValueInvalid",
    }),
  },
);

const AnnouncementSpec = Type.Object(
  {
    message: Type.String({
      minLength: 1,
      maxLength: 200,
      description: "Said to every player of the targeted maps when the event starts.",
    }),
    onEnd: Type.Optional(Type.String({ maxLength: 200, description: "Said when it ends." })),
  },
  { description: "An announcement; any type of event may carry one." },
);

const RegionRef = Type.Object(
  {
    namespace: DnsLabel({ description: "The Region's namespace." }),
    name: DnsLabel({ description: "The Region's name." }),
  },
  { description: "A Region by namespace and name." },
);

const TargetsSpec = Type.Object(
  {
    regions: Type.Optional(
      Type.Array(RegionRef, {
        description: "Regions by name, in any namespace.",
        maxItems: 64,
        "x-kubernetes-list-type": "atomic",
      }),
    ),
    regionSelector: Type.Optional({
      ...LabelSelector,
      description: "Regions by label, in any namespace. An empty selector matches every Region.",
    }),
    zoneSelector: Type.Optional({
      ...LabelSelector,
      description: "Zones of the targeted Regions by label; every Zone when absent.",
    }),
    maps: Type.Optional(
      Type.Array(MapName, {
        description: "Only these maps of the selected Zones; every map of them when absent.",
        minItems: 1,
        maxItems: 64,
        "x-kubernetes-list-type": "set",
      }),
    ),
  },
  {
    description: "Where: Regions (by name or label), Zones (by label) and maps (by name).",
    ...cel({
      rule: "has(self.regions) || has(self.regionSelector)",
      message: "targets need regions or a regionSelector",
      reason: "FieldValueRequired",
    }),
  },
);

const ScheduleSpec = DefaultedObject(
  {
    start: Type.Optional(
      DateTime({ description: "When it starts; at once when absent (or when a trigger fires)." }),
    ),
    cron: Type.Optional(
      Type.String({
        maxLength: 100,
        pattern: "^\\S+( \\S+){4}$",
        description:
          "A recurring event: five cron fields (minute hour day-of-month month day-of-week, UTC); each match starts an occurrence.",
      }),
    ),
    durationSeconds: Type.Optional(
      Type.Integer({
        default: 3600,
        minimum: 10,
        maximum: 7 * 24 * 3600,
        description: "How long each occurrence lasts.",
      }),
    ),
  },
  {
    description: "When.",
    ...cel({
      rule: "!(has(self.start) && has(self.cron))",
      message: "start and cron are mutually exclusive",
      fieldPath: ".cron",
      reason: "FieldValueForbidden",
    }),
  },
);

const TriggersSpec = Type.Object(
  {
    population: Type.Optional(
      Type.Object(
        {
          minPlayers: Type.Integer({
            minimum: 1,
            maximum: 100000,
            description: "Players that start the event in a Region once reached.",
          }),
          scope: Type.Optional(
            StringEnum(PopulationScopeValues, {
              default: "Zone",
              description: "Count per targeted Zone (any one reaching it fires) or over the whole Region.",
            }),
          ),
        },
        { description: "Start when enough players play on the targeted maps (each Region on its own)." },
      ),
    ),
  },
  { description: "Live-state triggers beyond the clock." },
);

export const WorldEventSpec = Type.Object(
  {
    type: StringEnum(WorldEventTypeValues, {
      description: "Boss, Invasion, Rates or Announcement. Immutable.",
      ...cel({ rule: "self == oldSelf", message: "type is immutable" }),
    }),
    boss: Type.Optional(BossSpec),
    invasion: Type.Optional(InvasionSpec),
    rates: Type.Optional(RatesSpec),
    announcement: Type.Optional(AnnouncementSpec),
    targets: TargetsSpec,
    schedule: Type.Optional(ScheduleSpec),
    triggers: Type.Optional(TriggersSpec),
    cancelled: Type.Optional(
      Type.Boolean({
        default: false,
        description: "End the event everywhere now (hybridctl events cancel). Cannot be undone.",
        ...cel({ rule: "self || !oldSelf", message: "a cancelled event stays cancelled" }),
      }),
    ),
  },
  {
    description: "What happens, where, when.",
    ...cel(
      {
        rule: "self.type != 'Boss' || has(self.boss)",
        message: "a Boss event needs boss",
        fieldPath: ".boss",
        reason: "FieldValueRequired",
      },
      {
        rule: "self.type != 'Invasion' || has(self.invasion)",
        message: "an Invasion event needs invasion",
        fieldPath: ".invasion",
        reason: "FieldValueRequired",
      },
      {
        rule: "self.type != 'Rates' || has(self.rates)",
        message: "a Rates event needs rates",
        fieldPath: ".rates",
        reason: "FieldValueRequired",
      },
      {
        rule: "self.type != 'Announcement' || has(self.announcement)",
        message: "an Announcement event needs announcement",
        fieldPath: ".announcement",
        reason: "FieldValueRequired",
      },
      {
        rule: "(self.type == 'Boss') == has(self.boss) && (self.type == 'Invasion') == has(self.invasion)",
        message: "boss and invasion are only allowed on events of that type",
        reason: "FieldValueForbidden",
      },
      {
        rule: "!(self.type in ['Boss', 'Invasion']) || has(self.targets.maps)",
        message: "Boss and Invasion events need targets.maps: the maps to spawn on",
        fieldPath: ".targets.maps",
        reason: "FieldValueRequired",
      },
      {
        rule: "!has(self.triggers) || !has(self.triggers.population) || !has(self.schedule) || !has(self.schedule.cron)",
        message: "a population trigger cannot be combined with a cron schedule",
        fieldPath: ".triggers.population",
        reason: "FieldValueForbidden",
      },
    ),
  },
);
export type WorldEventSpec = Static<typeof WorldEventSpec>;

export const RegionEventStatus = Type.Object({
  namespace: Type.String({ maxLength: 63, description: "The Region's namespace." }),
  name: Type.String({ maxLength: 63, description: "The Region's name." }),
  state: StringEnum(RegionEventStateValues, { description: "Scheduled, Waiting, Active, Ended or Failed." }),
  reason: Type.Optional(Type.String({ maxLength: 128, description: "CamelCase reason of the state." })),
  message: Type.Optional(Type.String({ maxLength: 1024, description: "Human-readable detail." })),
  occurrence: Type.Optional(
    Type.String({ maxLength: 128, description: "The occurrence delivered to the Region." }),
  ),
  startTime: Type.Optional(DateTime({ description: "Start of the Region's current or last occurrence." })),
  endTime: Type.Optional(DateTime({ description: "Its end." })),
  maps: Type.Optional(Type.Integer({ minimum: 0, description: "Targeted maps in the Region." })),
  players: Type.Optional(Type.Integer({ minimum: 0, description: "Players on the targeted maps." })),
  spawned: Type.Optional(Type.Integer({ minimum: 0, description: "Mobs the occurrence spawned." })),
  alive: Type.Optional(Type.Integer({ minimum: 0, description: "Of those, alive." })),
  lastTransitionTime: Type.Optional(DateTime({ description: "When the state last changed." })),
});
export type RegionEventStatus = Static<typeof RegionEventStatus>;

export const WorldEventStatus = Type.Object(
  {
    ...StatusCommon,
    phase: Type.Optional(
      StringEnum(WorldEventPhaseValues, {
        description: "Over all Regions: Active while any is, then Ended; Failed when none could be reached.",
      }),
    ),
    occurrences: Type.Optional(Int64({ minimum: 0, description: "Occurrences started so far." })),
    nextStartTime: Type.Optional(DateTime({ description: "When the next occurrence starts." })),
    targetRegions: Type.Optional(Type.Integer({ minimum: 0, description: "Regions targeted." })),
    activeRegions: Type.Optional(Type.Integer({ minimum: 0, description: "Regions where it is active." })),
    regions: Type.Optional(
      Type.Array(RegionEventStatus, {
        description: "The state of the event in each targeted Region.",
        maxItems: 256,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["namespace", "name"],
      }),
    ),
  },
  { description: "Observed state of the event." },
);
export type WorldEventStatus = Static<typeof WorldEventStatus>;

export const WorldEventSchema = ResourceSchema(WORLD_EVENT.kind, WorldEventSpec, WorldEventStatus, {
  description:
    "A WorldEvent is a world event of the global orchestrator (a boss, an invasion, rate multipliers, an announcement) across Regions.",
});
export type WorldEvent = Static<typeof WorldEventSchema>;

export const worldEventPrinterColumns = [
  { name: "Type", type: "string", jsonPath: ".spec.type" },
  { name: "Phase", type: "string", jsonPath: ".status.phase" },
  { name: "Active", type: "integer", jsonPath: ".status.activeRegions" },
  { name: "Regions", type: "integer", jsonPath: ".status.targetRegions" },
  { name: "Next", type: "date", jsonPath: ".status.nextStartTime", priority: 1 },
  { name: "Occurrences", type: "integer", jsonPath: ".status.occurrences", priority: 1 },
  { name: "Ready", type: "string", jsonPath: '.status.conditions[?(@.type=="Ready")].status' },
  { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" },
];
