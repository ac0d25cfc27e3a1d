// Zone events must not be lost (platform/bus/contract.ts): a map server whose JetStream publishes
// fail while NATS is away keeps its event batches and stores them, in tick order, once the bus is
// back. Found by `npm run chaos -- bus`: before, a batch whose publish timed out was logged and
// dropped. A player hits a sturdy mob through an outage longer than the publish timeout; the
// stream must hold every hit, each leaving the mob exactly its damage less than the one before.
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { decode, EVENT_STREAM, type EventBatch, subjects } from "../../platform/bus/contract.ts";
import { newRegistry } from "../../platform/http.ts";
import { connectNats } from "../../platform/stores/access.ts";
import { sleep } from "../../platform/time.ts";
import { startNats, storePki } from "../../testkit/local/services.ts";
import {
  createCharacters,
  FakeGateway,
  type Services,
  servicesFrom,
  startTestServer,
  type TestServer,
  unique,
  until,
} from "../../testkit/map-server/harness.ts";
import type { Proc } from "../../testkit/processes.ts";
import { openMap } from "./sim/maps.ts";

const map = "evfield";
const zone = unique("ez");
const region = unique("er");
/** Angeling: 1500 HP, fights back only. */
const MOB = 7;

type Hit = Extract<EventBatch["events"][number], { k: "hit" }>;

describe("event batches through a bus outage", () => {
  const dir = mkdtempSync(join(tmpdir(), "bus-outage-test-"));
  const pki = storePki(join(inject("localEnv").stateDir, "store-pki"));
  let nats: Proc;
  let svc: Services;
  let ms: TestServer;
  let gw: FakeGateway;
  const registry = newRegistry();

  beforeAll(async () => {
    mkdirSync(join(dir, "logs"));
    const started = await startNats(dir, undefined, pki);
    nats = started.proc;
    svc = { ...servicesFrom(inject("localEnv")), natsUrl: started.url, nats: started.access };
    ms = await startTestServer(svc, {
      region,
      zone,
      pod: "pod-e",
      maps: [map],
      prefix: `/${unique("evtest")}/v1/`,
      redisPrefix: `${unique("evtest")}:`,
      threads: 1,
      registry,
      mapDef: () => openMap(map, 64, 64, { mobs: [{ type: MOB, count: 1, at: [[32, 32]] }] }),
    });
    await until("map owned", () => ms.owns(map));
    gw = await FakeGateway.open(svc.natsUrl, region, "gw-e", svc.nats);
  });

  afterAll(async () => {
    await gw?.close();
    await ms?.close();
    await nats?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("stores every hit made while NATS was down, in order, once it is back", async () => {
    const [hero] = await createCharacters(svc.databaseUrl, [
      { name: unique("Evh").slice(0, 12), hp: 20_000, str: 1, map, x: 31, y: 32 },
    ]);
    const addr = { region, zone, map };
    await gw.join(addr, "s-hero", hero!);
    const mob = await until("the mob in view", () =>
      gw.frames.flatMap((f) => f.ents).find((e) => e.kind === "mob"),
    );
    await gw.send(addr, [{ s: "s-hero", seq: 1, k: "attack", target: mob.id }]);

    const nc = await connectNats(svc.nats);
    // Read back message by message (a consumer created while its connection is reconnecting
    // may skip some): the stream's content is the truth here.
    const hits = async (): Promise<Hit[]> => {
      const jsm = await jetstreamManager(nc);
      const st = (await jsm.streams.info(EVENT_STREAM)).state;
      const out: Hit[] = [];
      const ticks: number[] = [];
      for (let seq = st.first_seq; seq <= st.last_seq && st.messages > 0; seq++) {
        const m = await jsm.streams.getMessage(EVENT_STREAM, { seq });
        if (!m || m.subject !== subjects.events({ region, zone, map })) continue;
        const b = decode<EventBatch>(m.data);
        ticks.push(b.tick);
        for (const e of b.events) if (e.k === "hit" && e.target === mob.id) out.push(e);
      }
      // Stored in tick order.
      expect(ticks).toEqual([...ticks].sort((a, b) => a - b));
      return out;
    };
    try {
      const stored = await until("hits stored", async () => {
        const n = (await hits()).length;
        return n >= 2 ? n : undefined;
      });
      // Down longer than a JetStream publish waits for its ack (5 s).
      const port = Number(new URL(svc.natsUrl).port);
      await nats.stop();
      await sleep(6500);
      nats = (await startNats(dir, port, pki)).proc;
      // Hits every 0.8 s: 8 made while the bus was away, more after (the reader reconnects too).
      const all = await until(
        "hits after the outage",
        async () => {
          const h = await hits().catch(() => []);
          return h.length >= stored + 12 ? h : undefined;
        },
        60_000,
      );
      let hp = 1500;
      for (const [i, h] of all.entries()) {
        expect({ i, hpLeft: h.hpLeft }).toEqual({ i, hpLeft: hp - h.damage });
        hp = h.hpLeft;
      }
      const failures = await registry.getSingleMetric("hybridp2p_map_event_publish_failures_total")?.get();
      expect(failures?.values.reduce((n, v) => n + v.value, 0) ?? 0).toBe(0);
    } finally {
      await nc.drain();
    }
  }, 120_000);
});
