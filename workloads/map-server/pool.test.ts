import { afterAll, describe, expect, it } from "vitest";
import { type AoiFrame, decode } from "../../platform/bus/contract.ts";
import { WorkerPool } from "./pool.ts";
import { generateMap } from "./sim/maps.ts";
import { MapSim, type PlayerInfo } from "./sim/world.ts";

const make = (name: string) => {
  const sim = new MapSim(generateMap(name, { width: 160, height: 160, mobs: 600 }), {
    capacity: 1000,
    seed: 11,
  });
  for (let k = 0; k < 50; k++) {
    const p: PlayerInfo = {
      session: `s${k}`,
      characterId: `${k}`,
      gateway: `gw${k % 3}`,
      p2p: false,
      name: `p${k}`,
      hp: 100,
      maxHp: 100,
      atk: 10,
      exp: 0,
      zeny: 0,
    };
    sim.join(p);
  }
  return sim;
};

describe("worker pool", () => {
  const pool = new WorkerPool(2);
  afterAll(() => pool.close());

  it("steps several maps on worker threads to the same world as one thread", async () => {
    const inline = [make("prt_fild07"), make("prt_fild08")];
    const threaded = new Map([
      ["a", make("prt_fild07")],
      ["b", make("prt_fild08")],
    ]);
    for (const [k, sim] of threaded) pool.attach(k, sim);
    let fanout = 0;
    for (let t = 0; t < 60; t++) {
      for (const [k, sim] of threaded) {
        const j = Number(k === "b");
        sim.input({ s: `s${t % 50}`, seq: t, k: "move", x: 80 + (t % 7), y: 80 + j });
        inline[j]!.input({ s: `s${t % 50}`, seq: t, k: "move", x: 80 + (t % 7), y: 80 + j });
      }
      const res = await pool.step(threaded);
      const ref = inline.map((s) => s.stepInline());
      expect(res.get("a")!.events).toEqual(ref[0]!.events);
      fanout += res.get("a")!.stats.fanout;
      // Frames come from both threads; each session is in exactly one frame of its own gateway.
      const seen: string[] = [];
      for (const f of res.get("a")!.frames) {
        const frame = decode<AoiFrame>(f.data);
        for (const v of frame.views) {
          seen.push(v.session);
          expect(`gw${Number(v.session.slice(1)) % 3}`).toBe(f.gateway);
          for (const i of [...v.enter, ...v.update]) expect(frame.ents[i]).toBeDefined();
        }
      }
      expect(new Set(seen).size).toBe(seen.length);
    }
    expect(threaded.get("a")!.digest()).toBe(inline[0]!.digest());
    expect(threaded.get("b")!.digest()).toBe(inline[1]!.digest());
    expect(fanout).toBeGreaterThan(0);
  }, 60_000);

  it("fails every later tick once a worker thread died", async () => {
    const lone = new WorkerPool(1);
    const sim = make("prt_fild07");
    lone.attach("m", sim);
    await lone.step(new Map([["m", sim]]));
    // A crash, as far as the pool can tell: the thread is gone.
    await (lone as unknown as { workers: Array<{ terminate(): Promise<number> }> }).workers[0]!.terminate();
    await expect(lone.step(new Map([["m", sim]]))).rejects.toThrow(/exited|closed/);
    expect(lone.failed).toBeDefined();
    await lone.close();
  }, 60_000);
});
