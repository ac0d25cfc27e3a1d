// `hybridctl p2p rollout` against a P2P region in one process (testkit/p2p-region.ts): the canary
// in the Zone's status (players eligible for P2P and playing P2P) follows the rollout step by
// step, and the rollout stops, saying why, when the zone falls back.
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { FlagClient } from "../platform/flags/client.ts";
import { eventually } from "../testkit/flags.ts";
import { type P2PRegion, startP2PRegion } from "../testkit/p2p-region.ts";
import { P2PClient } from "../workloads/client/p2p.ts";
import { type LoopbackStun, startLoopbackStun } from "../workloads/coordinator/stun.ts";
import type { Io } from "./common.ts";
import { run } from "./hybridctl.ts";

const env = inject("localEnv");
let region: P2PRegion;
let stun: LoopbackStun;
let mapServer: FlagClient;
const players: P2PClient[] = [];

const ctl = async (...args: string[]) => {
  const out: string[] = [];
  const err: string[] = [];
  const io: Io = { out: (s) => out.push(s), err: (s) => err.push(s) };
  const code = await run([...args, "--kubeconfig", env.kubeconfig!], io);
  return { code, out: out.join("\n"), err: err.join("\n") };
};

interface ZoneStatus {
  mode?: string;
  fallbackReason?: string;
  p2pPlayers?: { eligible: number; playing: number; rolloutPercent: number };
}

async function zoneStatus(): Promise<ZoneStatus> {
  const r = await ctl("status", "-n", region.namespace, "-o", "json");
  const doc = JSON.parse(r.out) as { zones?: ({ name: string } & ZoneStatus)[] };
  return doc.zones?.find((z) => z.name === region.zone) ?? {};
}

beforeAll(async () => {
  region = await startP2PRegion(env, "canary");
  await region.setPolicy({ enabled: true, rolloutPercent: 20 });
  // The zone's map server, as far as the flag plane sees it: it applies and reports each epoch.
  mapServer = new FlagClient({
    client: region.etcd,
    nats: region.reports,
    prefix: region.prefix,
    namespace: region.namespace,
    zone: region.zone,
    service: "map-server",
    pod: "ms-0",
  });
  await mapServer.start();
  stun = await startLoopbackStun();
  for (let i = 0; i < 10; i++)
    players.push(
      await P2PClient.connect({
        url: region.gw.url,
        token: await region.gw.token(`c${i}`, region.map),
        ice: stun.ice,
      }),
    );
}, 120_000);

afterAll(async () => {
  await Promise.all(players.map((p) => p.close()));
  await mapServer?.close();
  await stun?.close();
  await region?.stop();
});

describe("hybridctl p2p rollout", () => {
  it("raises the rollout in steps and the Zone's canary follows", async () => {
    const r = await ctl(
      "p2p",
      "rollout",
      "--zone",
      region.zone,
      "--to",
      "60",
      "--step",
      "20",
      "--every",
      "1",
      "-n",
      region.namespace,
    );
    expect(r.err).toContain("rolloutPercent=40");
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain(`zone ${region.zone} at rolloutPercent 60`);
    // Every player is eligible; those in the 60 % bucket play P2P, as the gateway put them (the
    // gateway's mode messages may still be on their way when the command returns).
    let inP2P = 0;
    const s = await eventually("the canary at 60 %", async () => {
      const z = await zoneStatus();
      inP2P = players.filter((p) => p.mode === "p2p").length;
      return z.p2pPlayers?.rolloutPercent === 60 && z.p2pPlayers.playing === inP2P ? z : undefined;
    });
    expect(s.p2pPlayers).toEqual({ eligible: 10, playing: inP2P, rolloutPercent: 60 });
    expect(inP2P).toBeGreaterThan(0);
  }, 120_000);

  it("stops and says why when the zone falls back during a step", async () => {
    const rollout = ctl(
      "p2p",
      "rollout",
      "--zone",
      region.zone,
      "--to",
      "100",
      "--step",
      "20",
      "--every",
      "30",
      "-n",
      region.namespace,
    );
    // The first step (80 %) is applied, then the zone falls back while it is watched.
    await eventually(
      "the first step applied",
      async () => (await zoneStatus()).p2pPlayers?.rolloutPercent === 80,
    );
    await region.setPolicy({ enabled: true, forceFallback: true });
    const r = await rollout;
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/stopped at 80% \(target 100%\): zone fields fell back: /);
    expect((await zoneStatus()).mode).toBe("Fallback");
  }, 120_000);
});
