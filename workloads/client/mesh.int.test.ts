// MeshClient against a scripted coordinator (a real WebSocket server speaking the coordinator's
// protocol) and real werift connections: link bookkeeping the coordinator's own tests cannot
// time precisely.
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { type WebSocket, WebSocketServer } from "ws";
import { eventually } from "../../testkit/flags.ts";
import { decodeCoord, encodeCoord, type ToCoordinator } from "../coordinator/messages.ts";
import { startLoopbackStun } from "../coordinator/stun.ts";
import { MeshClient } from "./mesh.ts";
import { weriftRtc } from "./werift.ts";

type Sent = ToCoordinator;

async function scriptedCoordinator(): Promise<{
  url: string;
  received: Sent[];
  client: Promise<WebSocket>;
  close(): Promise<void>;
}> {
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  await new Promise((r) => wss.once("listening", r));
  const received: Sent[] = [];
  const client = new Promise<WebSocket>((resolve) =>
    wss.on("connection", (ws) => {
      ws.on("message", (data: Buffer) => {
        const m = decodeCoord(data, "c2s");
        received.push(m);
        if (m.type === "join") {
          ws.send(
            encodeCoord({
              type: "joined",
              peer: "b",
              zone: "z",
              replica: "r",
              heartbeatMs: 1000,
              timeoutMs: 10_000,
            }),
          );
          ws.send(encodeCoord({ type: "zoneMode", mode: "p2p", reason: "" }));
          resolve(ws);
        }
        if (m.type === "heartbeat") ws.send(encodeCoord({ type: "ack", t: m.t }));
      });
    }),
  );
  return {
    url: `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`,
    received,
    client,
    close: () => new Promise((r) => wss.close(() => r())),
  };
}

describe("MeshClient links", () => {
  const cleanups: (() => unknown)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  /**
   * Peer b joined at a scripted coordinator. Its link timeout (2 s) is short for the test's sake
   * and long enough that, on a machine busy with other test files, b answers an offer before it.
   */
  async function peerB() {
    const coord = await scriptedCoordinator();
    cleanups.push(() => coord.close());
    const stun = await startLoopbackStun();
    cleanups.push(() => stun.close());
    const b = new MeshClient({
      urls: [coord.url],
      token: "t",
      session: "s-b",
      entity: 2,
      position: () => ({ x: 10, y: 10 }),
      ice: stun.ice,
      linkTimeoutMs: 2000,
    });
    cleanups.push(() => b.stop());
    b.start();
    return { coord, stun, b, ws: await coord.client };
  }

  it("drops a link that only an offer opened when it never connects, instead of relaying it", async () => {
    const { coord, stun, b, ws } = await peerB();
    // Peer a offers (its coordinator named b its mate), then its links are recomputed and it
    // closes the attempt: b is never named a's mate, and the connection never completes.
    const a = weriftRtc(stun.ice)("b", undefined);
    cleanups.push(() => a.close());
    a.onChannel = () => undefined; // offer() makes its channel only for someone who takes it
    const sdp = await a.offer();
    ws.send(encodeCoord({ type: "offerFrom", peer: "a", n: 0, sdp }));
    await eventually("b answered a's offer", () => coord.received.some((m) => m.type === "answer"));
    expect(b.mates).toEqual(["a"]);
    a.close();
    await eventually("the unnamed link gone", () => b.mates.length === 0, 10_000);
    expect(b.relayedPeers).toEqual([]);
    expect(coord.received.filter((m) => m.type === "link")).toEqual([]);
  }, 30_000);

  it("relays a named mate whose link never opens, and says so to the coordinator", async () => {
    const { coord, b, ws } = await peerB();
    // a is named, a makes the offers, and a never does.
    ws.send(
      encodeCoord({ type: "peerJoined", peer: "a", session: "s-a", entity: 1, mesh: "m", offerer: false }),
    );
    // The report is on its way when b relays a: wait for the coordinator to have it.
    await eventually(
      "a relayed and reported",
      () => b.relayedPeers.includes("a") && coord.received.some((m) => m.type === "link"),
      10_000,
    );
    expect(b.mates).toEqual(["a"]);
    expect(coord.received.filter((m) => m.type === "link")).toEqual([
      { type: "link", peer: "a", state: "failed" },
    ]);
  }, 30_000);
});
