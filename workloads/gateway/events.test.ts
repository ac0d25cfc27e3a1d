// The event consumer's handler: a batch JetStream delivers again (its ack was lost in a bus
// outage, found by `npm run chaos -- bus`: chat lines shown twice) is acknowledged but not handed
// to the sessions a second time.
import { describe, expect, it } from "vitest";
import { type EventBatch, encode } from "../../platform/bus/contract.ts";
import { type EventMessage, eventHandler, SEEN_WINDOW } from "./events.ts";

const batch = (tick: number): EventBatch => ({
  v: 1,
  map: "m",
  tick,
  fence: "1",
  owner: "pod",
  events: [{ k: "chat", from: 1, name: "a", text: `t${tick}`, to: ["s1"] }],
});

function message(seq: number, acks: number[]): EventMessage {
  return { subject: "hp2p.r.z.m.ev", data: encode(batch(seq)), seq, ack: () => acks.push(seq) };
}

describe("eventHandler", () => {
  it("hands a redelivered batch over once and acknowledges every delivery", () => {
    const got: string[] = [];
    const acks: number[] = [];
    const h = eventHandler((b, zone) => got.push(`${zone}:${b.tick}`));
    for (const seq of [1, 2, 3, 2, 3, 4, 1]) h(message(seq, acks));
    expect(got).toEqual(["z:1", "z:2", "z:3", "z:4"]);
    expect(acks).toEqual([1, 2, 3, 2, 3, 4, 1]);
    expect({ handed: h.handed, redelivered: h.redelivered }).toEqual({ handed: 4, redelivered: 3 });
  });

  it("hands over a batch first delivered late (out of order), once", () => {
    const got: number[] = [];
    const h = eventHandler((b) => got.push(b.tick));
    for (const seq of [1, 3, 2, 3, 2]) h(message(seq, []));
    expect(got).toEqual([1, 3, 2]);
  });

  it("forgets sequences older than its window (memory stays bounded)", () => {
    const got: number[] = [];
    const h = eventHandler((b) => got.push(b.tick));
    const last = Math.floor(SEEN_WINDOW * 1.6);
    for (let seq = 1; seq <= last; seq++) h(message(seq, []));
    expect(got).toHaveLength(last);
    h(message(1, []));
    h(message(last, []));
    expect(got).toHaveLength(last);
  });
});
