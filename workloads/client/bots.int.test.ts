// Bots as tests and load generators use them: a crowd of legacy and P2P bots plays on a map
// through a real gateway (stand-in map server on real NATS), the P2P ones meshing through a real
// coordinator, and sees no sequence break.
import { expect, inject, it } from "vitest";
import { connectNats } from "../../platform/stores/access.ts";
import { sleep } from "../../platform/time.ts";
import { startTestMesh } from "../../testkit/client.ts";
import { startTestGateway } from "../../testkit/gateway.ts";
import { StandInMapServer } from "../../testkit/map-server-standin.ts";
import { ensureEventStream } from "../gateway/events.ts";
import { staticDirectory } from "../gateway/gateway.ts";
import { runBots } from "./bots.ts";
import { P2PClient } from "./p2p.ts";

const env = inject("localEnv");

it("runs a crowd of legacy and P2P bots that walk and talk", async () => {
  const zones = { z: ["moc_fild01"] };
  const gw = await startTestGateway({ natsUrl: env.natsUrl!, directory: staticDirectory(zones) });
  const mesh = await startTestMesh({ natsUrl: env.natsUrl!, region: gw.region, keyset: gw.keyset, zones });
  const nc = await connectNats(env.nats!);
  await ensureEventStream(nc);
  const field = new StandInMapServer({ nc, region: gw.region, zone: "z", maps: ["moc_fild01"], mode: "p2p" });
  field.start();
  try {
    const fleet = await runBots({
      count: 12,
      gatewayUrl: gw.url,
      maps: ["moc_fild01"],
      zone: "z",
      keyset: gw.keyset,
      p2pShare: 1 / 3,
      coordinators: mesh.urls,
      ice: mesh.ice,
      moveEveryMs: 100,
      chatEveryMs: 300,
      decodeMode: "full",
    });
    const p2p = fleet.clients.filter((c): c is P2PClient => c instanceof P2PClient);
    expect(p2p).toHaveLength(4);
    const until = async (what: string, cond: () => boolean) => {
      const end = Date.now() + 30_000;
      while (!cond()) {
        if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
        await sleep(50);
      }
    };
    await until("the P2P bots form a mesh", () => p2p.every((c) => c.connectedPeers.length === 3));
    await until("everyone heard chat and saw updates", () =>
      fleet.clients.every((c) => (c.counts.get("chatMsg") ?? 0) > 12 && (c.counts.get("aoi") ?? 0) > 10),
    );
    const s = fleet.stats();
    expect(s).toMatchObject({ connected: 12, failed: 0, seqErrors: 0 });
    expect(s.p99Ms).toBeGreaterThanOrEqual(0);
    expect(p2p.some((c) => c.peerMoves > 0)).toBe(true);
    await fleet.stop();
  } finally {
    await field.stop();
    await gw.stop();
    await mesh.stop();
    await nc.drain();
  }
});
