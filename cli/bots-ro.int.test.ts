// `hybridctl bots --protocol ro`: RO bots sign up, log in on the RO login endpoint, go through
// the char endpoint to the map endpoint and walk, against a whole region in this process.
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { servicesFrom } from "../testkit/map-server/harness.ts";
import { type RoStack, startRoStack } from "../testkit/ro/stack.ts";
import { openMap } from "../workloads/map-server/sim/maps.ts";
import type { Io } from "./common.ts";
import { run } from "./hybridctl.ts";

const svc = servicesFrom(inject("localEnv"));
let stack: RoStack;

beforeAll(async () => {
  stack = await startRoStack({
    svc,
    map: "prt_fild07",
    start: { x: 30, y: 30 },
    mapDef: (n) => openMap(n, 64, 64),
  });
});

afterAll(async () => {
  await stack?.close();
});

describe("hybridctl bots --protocol ro", () => {
  it("plays RO bots and reports their walks", async () => {
    const out: string[] = [];
    const err: string[] = [];
    const io: Io = { out: (s) => out.push(s), err: (s) => err.push(s) };
    const code = await run(
      [
        "bots",
        "--protocol",
        "ro",
        "--count",
        "3",
        "--ro-login",
        `127.0.0.1:${stack.ports.login}`,
        "--login",
        stack.login.url,
        "--duration",
        "4",
      ],
      io,
    );
    expect(err).toEqual([]);
    expect(code).toBe(0);
    const last = out.at(-1)!;
    expect(last).toMatch(/connected=3 failed=0 closed=0 moves=\d+/);
    expect(Number(/moves=(\d+)/.exec(last)![1])).toBeGreaterThan(3);
    expect(Number(/move_p99_ms=([\d.]+)/.exec(last)![1])).toBeGreaterThan(0);
  });

  it("says what it needs", async () => {
    const err: string[] = [];
    const code = await run(["bots", "--protocol", "ro", "--count", "1"], {
      out: () => {},
      err: (s) => err.push(s),
    });
    expect(code).not.toBe(0);
    expect(err.join("\n")).toMatch(/--ro-login/);
  });
});
