// The map server while PostgreSQL is away (chaos/database.ts found it): a character that leaves
// when its save fails keeps its progress; the save is retried before it joins again, with the
// periodic persist and on shutdown. The outage is simulated on the server's own pool (the
// integration suite shares one PostgreSQL), as a refused connection would fail each query.
import { describe, expect, inject, it } from "vitest";
import {
  createCharacters,
  FakeGateway,
  readCharacter,
  servicesFrom,
  startTestServer,
  type TestServer,
  unique,
  until,
} from "../../testkit/map-server/harness.ts";
import { openMap } from "./sim/maps.ts";

const svc = servicesFrom(inject("localEnv"));
const region = "itest";

/** Every query of the server's pool fails until the returned function is called. */
function databaseAway(ts: TestServer): () => void {
  const pool = ts.pg as unknown as { query: unknown };
  const real = pool.query;
  pool.query = async () => {
    throw new Error("connect ECONNREFUSED 127.0.0.1 (the test took the database away)");
  };
  return () => {
    pool.query = real;
  };
}

describe("map server during a PostgreSQL outage", () => {
  async function play() {
    const zone = unique("z");
    const map = "outage";
    const addr = { region, zone, map };
    const [id] = await createCharacters(svc.databaseUrl, [
      { name: unique("Out"), map, x: 20, y: 20, str: 30 },
    ]);
    const mapDef = () => openMap(map, 40, 40, { mobs: [{ type: 0, count: 1, at: [[21, 20]] }] });
    const ts = await startTestServer(svc, {
      region,
      zone,
      pod: unique("pod"),
      maps: [map],
      prefix: `/${unique("outage")}/v1/`,
      redisPrefix: `${unique("outage")}:`,
      mapDef,
      persistMs: 600_000, // no periodic save during the test unless it asks
      worldEvents: false,
    });
    const gw = await FakeGateway.open(svc.natsUrl, region, unique("gw"));
    await until("map owned", () => ts.owns(map));
    await gw.join(addr, "sess-1", id!);
    await gw.send(addr, [{ s: "sess-1", seq: 1, k: "attack", target: 0 }]);
    const sim = ts.server.sim(map)!;
    const exp = await until("mob killed", () => sim.sessions.get("sess-1")?.exp || undefined);
    expect(Number((await readCharacter(svc.databaseUrl, id!)).base_exp)).toBe(0);
    return { ts, gw, addr, id: id!, exp };
  }

  it("keeps a leaving character's progress and saves it before the character joins again", async () => {
    const { ts, gw, addr, id, exp } = await play();
    try {
      const back = databaseAway(ts);
      // The leave cannot save: it says so, and the progress is not dropped with the session.
      expect(await gw.leave(addr, "sess-1")).toMatchObject({ ok: false });
      await expect(gw.join(addr, "sess-2", id, false, 1000)).rejects.toThrow(/join refused/);
      back();
      const again = await gw.join(addr, "sess-3", id);
      expect(again.ok).toBe(true);
      expect(ts.server.sim(addr.map)!.sessions.get("sess-3")?.exp).toBe(exp);
      expect(await gw.leave(addr, "sess-3")).toEqual({ v: 1, ok: true });
      expect(await readCharacter(svc.databaseUrl, id)).toMatchObject({
        base_exp: String(exp),
        online: false,
      });
    } finally {
      await gw.close();
      await ts.close();
    }
  });

  it("saves a character that left during the outage once the database is back (shutdown)", async () => {
    const { ts, gw, addr, id, exp } = await play();
    try {
      const back = databaseAway(ts);
      expect(await gw.leave(addr, "sess-1")).toMatchObject({ ok: false });
      back();
    } finally {
      await gw.close();
      await ts.close();
    }
    expect(await readCharacter(svc.databaseUrl, id)).toMatchObject({ base_exp: String(exp), online: false });
  });
});
