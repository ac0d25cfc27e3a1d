import { Value } from "@sinclair/typebox/value";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { WorldEventSpec } from "../operator/api/worldevent.ts";
import { regionStates, specFromFlags } from "./commands/events.ts";
import type { Io } from "./common.ts";
import { run } from "./hybridctl.ts";

const valid = (spec: unknown) => [...Value.Errors(WorldEventSpec, Value.Default(WorldEventSpec, spec))];

describe("hybridctl events", () => {
  it("builds valid WorldEvent specs from flags", () => {
    const now = Date.parse("2030-01-01T00:00:00Z");
    const boss = specFromFlags(
      {
        type: "Boss",
        mob: "osiris",
        x: "10",
        y: "12",
        map: ["prt_fild08"],
        message: "Osiris!",
        region: ["eu/eu", "us"],
        start: "+10m",
        duration: "30m",
      },
      now,
    );
    expect(boss).toEqual({
      type: "Boss",
      boss: { mob: "osiris", x: 10, y: 12 },
      announcement: { message: "Osiris!" },
      targets: {
        regions: [
          { namespace: "eu", name: "eu" },
          { namespace: "us", name: "us" },
        ],
        maps: ["prt_fild08"],
      },
      schedule: { start: "2030-01-01T00:10:00Z", durationSeconds: 1800 },
    });
    expect(valid(boss)).toEqual([]);
    const crowd = specFromFlags({ type: "Rates", exp: "2", zoneSelector: "tier=field", minPlayers: "20" });
    expect(crowd).toMatchObject({
      rates: { exp: 2, drop: 1 },
      targets: { regionSelector: {}, zoneSelector: { matchLabels: { tier: "field" } } },
      triggers: { population: { minPlayers: 20 } },
    });
    expect(valid(crowd)).toEqual([]);
    expect(() => specFromFlags({ type: "Party" })).toThrow(/--type/);
    expect(() => specFromFlags({ type: "Rates", exp: "x" })).toThrow(/--exp/);
  });

  it("prints a manifest with --dry-run", async () => {
    const out: string[] = [];
    const io: Io = { out: (s) => out.push(s), err: (s) => out.push(s) };
    const code = await run(
      [
        "events",
        "create",
        "invasion",
        "-n",
        "demo",
        "--type",
        "Invasion",
        "--mob",
        "wolf",
        "--map",
        "prt_fild08",
        "--dry-run",
      ],
      io,
    );
    expect(code).toBe(0);
    expect(parse(out.join("\n"))).toMatchObject({
      kind: "WorldEvent",
      metadata: { name: "invasion", namespace: "demo" },
      spec: { type: "Invasion", invasion: { mob: "wolf" }, targets: { maps: ["prt_fild08"] } },
    });
  });

  it("summarises the state per Region", () => {
    expect(
      regionStates({
        metadata: { name: "e", namespace: "n" },
        status: {
          regions: [
            { namespace: "eu", name: "eu", state: "Active", reason: "Delivered" },
            { namespace: "us", name: "us", state: "Failed", reason: "BusUnreachable" },
          ],
        },
      }),
    ).toBe("eu/eu=Active us/us=Failed(BusUnreachable)");
  });
});
