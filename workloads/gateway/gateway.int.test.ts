import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { GameClient } from "../client/client.ts";
import { ensureEventStream } from "./events.ts";
import { staticDirectory } from "./gateway.ts";
import { StandInMapServer } from "./standin.ts";
import { startTestGateway, type TestGateway } from "./testing.ts";

const env = inject("localEnv");

async function until(what: string, cond: () => boolean, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("gateway with a stand-in map server", () => {
  let gw: TestGateway;
  let mapNc: NatsConnection;
  let standin: StandInMapServer;

  beforeAll(async () => {
    gw = await startTestGateway({
      natsUrl: env.natsUrl!,
      directory: staticDirectory({ z1: ["prt_fild01"] }),
    });
    mapNc = await connect({ servers: env.natsUrl! });
    await ensureEventStream(mapNc);
    standin = new StandInMapServer({ nc: mapNc, region: gw.region, zone: "z1", maps: ["prt_fild01"] });
    standin.start();
  });

  afterAll(async () => {
    await gw?.stop();
    await standin?.stop();
    await mapNc?.drain();
  });

  it("legacy clients see each other move, chat and fight", async () => {
    const a = await GameClient.connect({ url: gw.url, token: await gw.token("1", "prt_fild01", "alice") });
    const b = await GameClient.connect({ url: gw.url, token: await gw.token("2", "prt_fild01", "bob") });
    await until("both in each other's view", () => a.world.has(b.entity) && b.world.has(a.entity));
    a.move(70, 71);
    await until("b sees a move", () => b.world.get(a.entity)?.x === 70);
    const heard = b.next("chatMsg", 20_000, (m) => m.text === "hello");
    a.chat("hello");
    expect((await heard).from).toBe(a.entity);
    const hit = a.next("combat", 20_000, (m) => m.target === b.entity);
    a.attack(b.entity);
    expect((await hit).from).toBe(a.entity);
    expect(a.seqErrors).toEqual([]);
    expect(b.seqErrors).toEqual([]);
    await a.close();
    await b.close();
  });
});
