// npm run bench:mapserver — tick time of one map with N moving entities (a tenth of them players
// with AOI, the rest mobs wandering at 10 Hz), at 1, 2 and 4 worker threads, measured in one run.
// Density stays at one entity per 16 cells, so each player sees about 50 entities.
// Prints: RESULT mapserver entities=N threads=T tick_p50_ms=.. tick_p99_ms=.. budget_pct=.. speedup=..
// plus cpu_ms (process CPU per tick, all threads) and load (1-minute load average), because on a
// shared machine wall times say as much about the neighbours as about this code.
import { loadavg } from "node:os";
import { usePrivateTmp } from "../testkit/private-tmp.ts";
import { WorkerPool } from "../workloads/map-server/pool.ts";
import { generateMap, rng } from "../workloads/map-server/sim/maps.ts";
import { MapSim } from "../workloads/map-server/sim/world.ts";

usePrivateTmp("bench"); // its temp files (and its children's) are removed at exit

const TICK_HZ = 20;
const BUDGET_MS = 1000 / TICK_HZ;
const args = process.argv.slice(2);
const sizes = (args[0] ?? "5000,20000,50000").split(",").map(Number);
const threadCounts = (args[1] ?? "1,2,4").split(",").map(Number);
const ticks = Number(args[2] ?? 200);

function build(n: number): MapSim {
  const side = Math.ceil(Math.sqrt(n * 16));
  const players = Math.floor(n / 10);
  const def = generateMap("bench", { width: side, height: side, mobs: n - players, walls: 1 });
  const sim = new MapSim(def, { capacity: n + 16, tickHz: TICK_HZ, seed: 1 });
  const rand = rng(99);
  for (let k = 0; k < players; k++) {
    sim.join({
      session: `s${k}`,
      characterId: `${k}`,
      gateway: `gw${k % 4}`,
      p2p: false,
      name: `p${k}`,
      x: 1 + rand() * (side - 2),
      y: 1 + rand() * (side - 2),
      hp: 1000,
      maxHp: 1000,
      atk: 10,
      exp: 0,
      zeny: 0,
    });
  }
  return sim;
}

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
}

for (const n of sizes) {
  let base = 0;
  for (const threads of threadCounts) {
    const sim = build(n);
    const pool = new WorkerPool(threads);
    pool.attach("m", sim);
    const sims = new Map([["m", sim]]);
    const rand = rng(5);
    const players = [...sim.sessions.values()];
    const times: number[] = [];
    let cpu = 0;
    for (let t = 0; t < ticks + 20; t++) {
      // A twentieth of the players click somewhere nearby each tick.
      for (let k = 0; k < players.length / 20; k++) {
        const s = players[Math.floor(rand() * players.length)]!;
        const st = sim.playerState(s);
        sim.input({
          s: s.session,
          seq: t,
          k: "move",
          x: Math.floor(st.x + rand() * 20 - 10),
          y: Math.floor(st.y + rand() * 20 - 10),
        });
      }
      const t0 = performance.now();
      const c0 = process.cpuUsage();
      await pool.step(sims);
      if (t >= 20) {
        times.push(performance.now() - t0);
        const c = process.cpuUsage(c0);
        cpu += (c.user + c.system) / 1000;
      }
    }
    await pool.close();
    const p50 = quantile(times, 0.5);
    const p99 = quantile(times, 0.99);
    if (threads === threadCounts[0]) base = p50;
    console.log(
      `RESULT mapserver entities=${n} threads=${threads} tick_p50_ms=${p50.toFixed(2)} tick_p99_ms=${p99.toFixed(2)} budget_pct=${((p50 / BUDGET_MS) * 100).toFixed(1)} speedup=${(base / p50).toFixed(2)} cpu_ms=${(cpu / times.length).toFixed(2)} load=${loadavg()[0]!.toFixed(1)}`,
    );
  }
}
