// `npm run bench:ro [clients] [seconds]`: N RO bots (the RO protocol over TCP, through the
// login, char and map endpoints) and N SDK bots (WebSocket) walk on the same map of the same
// region in the same run; each measures its own walks, from the request to the first answer
// about the own character: 0x0087 or 0x0088 for RO, the first AOI update that moves the own
// entity (or the correction refusing it) for the SDK. Prints
//   RESULT ro clients=N move_p99_ms=.. ratio_to_sdk=..
// (ratio: RO p99 over SDK p99; above 1, the RO bridge costs that much). Starts NATS, PostgreSQL,
// Redis and etcd on loopback (testkit/local/services.ts); everything else runs in this process.
import { silentLogger } from "../platform/log.ts";
import { startLocalEnv, storeCredentialEnv } from "../testkit/local/services.ts";
import { createCharacters, servicesFrom } from "../testkit/map-server/harness.ts";
import { usePrivateTmp } from "../testkit/private-tmp.ts";
import { startRoStack } from "../testkit/ro/stack.ts";
import { LatencyHistogram } from "../workloads/client/bots.ts";
import { GameClient } from "../workloads/client/client.ts";
import { runRoBots } from "../workloads/client/ro.ts";
import { openMap } from "../workloads/map-server/sim/maps.ts";

usePrivateTmp("bench"); // its temp files (and its children's) are removed at exit

const clients = Number(process.argv[2] ?? 50);
const seconds = Number(process.argv[3] ?? 20);
const MAP = "prt_fild08";
const SIZE = 120;
const WALK_EVERY_MS = 1000;
const RANGE = 5;

async function main(): Promise<void> {
  const local = await startLocalEnv({ services: ["flags-etcd", "nats", "postgres", "redis"] });
  // The stores run with auth and TLS: this process and its children take their credentials.
  Object.assign(process.env, storeCredentialEnv(local.env));
  const svc = servicesFrom(local.env);
  const stack = await startRoStack({
    svc,
    map: MAP,
    start: { x: SIZE / 2, y: SIZE / 2 },
    mapDef: (n) => openMap(n, SIZE, SIZE),
    maxPlayers: 2 * clients + 10,
    log: silentLogger(),
  });
  try {
    // SDK bots: characters next to the RO bots' start point, walking the same way.
    // createCharacters puts one account's characters in slots 0..14: ten per account.
    const ids: string[] = [];
    for (let from = 0; from < clients; from += 10) {
      const specs = Array.from({ length: Math.min(10, clients - from) }, (_, k) => {
        const i = from + k;
        return {
          name: `sdkbench${i}`,
          map: MAP,
          x: SIZE / 2 + (i % 10) - 5,
          y: SIZE / 2 + Math.floor(i / 10) - 5,
        };
      });
      ids.push(...(await createCharacters(stack.db, specs)));
    }
    const sdkLatency = new LatencyHistogram();
    const sdk: GameClient[] = [];
    for (const [i, id] of ids.entries()) {
      const c = await GameClient.connect({
        url: stack.gw.url,
        token: await stack.gw.token(id, MAP, `sdkbench${i}`),
        decodeMode: "full",
      });
      sdk.push(c);
    }
    const timers: NodeJS.Timeout[] = [];
    for (const c of sdk) {
      let pending: { n: number; at: number; x: number; y: number } | undefined;
      c.onMessage((m) => {
        if (!pending) return;
        const fix = m.type === "aoi" ? m.corrections.find((k) => k.n === pending!.n) : undefined;
        const me = m.type === "aoi" ? [...m.enter, ...m.update].find((e) => e.id === c.entity) : undefined;
        if (fix || (me && (me.x !== pending.x || me.y !== pending.y))) {
          sdkLatency.record(performance.now() - pending.at);
          pending = undefined;
        }
      });
      const start = setTimeout(() => {
        timers.push(
          setInterval(() => {
            const me = c.world.get(c.entity);
            if (!me) return;
            const tx = Math.max(
              1,
              Math.min(SIZE - 2, Math.floor(me.x) + Math.round((Math.random() * 2 - 1) * RANGE)),
            );
            const ty = Math.max(
              1,
              Math.min(SIZE - 2, Math.floor(me.y) + Math.round((Math.random() * 2 - 1) * RANGE)),
            );
            pending = { n: c.move(tx, ty), at: performance.now(), x: me.x, y: me.y };
          }, WALK_EVERY_MS),
        );
      }, Math.random() * WALK_EVERY_MS);
      timers.push(start);
    }
    const ro = await runRoBots({
      count: clients,
      host: "127.0.0.1",
      loginPort: stack.ports.login,
      signUpUrl: stack.login.url,
      prefix: "robench",
      moveEveryMs: WALK_EVERY_MS,
      walkRange: RANGE,
      concurrency: 10,
    });
    // Warm up, then measure both over the same window.
    await new Promise((r) => setTimeout(r, 3000));
    sdkLatency.reset();
    ro.resetLatency();
    const cpu0 = process.cpuUsage();
    await new Promise((r) => setTimeout(r, seconds * 1000));
    const cpu = process.cpuUsage(cpu0);
    const rs = ro.stats();
    const roP99 = rs.p99Ms;
    const sdkP99 = sdkLatency.quantile(0.99);
    console.log(
      `ro: connected=${rs.connected} failed=${rs.failed} walks=${ro.latency.total} p50_ms=${rs.p50Ms} p99_ms=${roP99}`,
    );
    console.log(
      `sdk: connected=${sdk.length} walks=${sdkLatency.total} p50_ms=${sdkLatency.quantile(0.5)} p99_ms=${sdkP99}`,
    );
    console.log(
      `process cpu ${(((cpu.user + cpu.system) / 1e6 / seconds) * 100).toFixed(0)}% of one core (everything but the stores runs here)`,
    );
    const ratio = sdkP99 > 0 ? roP99 / sdkP99 : 0;
    console.log(`RESULT ro clients=${clients} move_p99_ms=${roP99} ratio_to_sdk=${ratio.toFixed(2)}`);
    for (const t of timers) clearTimeout(t);
    await ro.stop();
    await Promise.all(sdk.map((c) => c.close()));
  } finally {
    await stack.close();
    await local.stop();
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
