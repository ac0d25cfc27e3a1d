// The map's event outbox (outbox.ts): a failed publish is retried, in tick order, with later
// batches queued behind it; given up only when the map is not the pod's or the batch too old.
import { describe, expect, it } from "vitest";
import { EventOutbox, type OutboxItem } from "./outbox.ts";

const item = (tick: number, made = Date.now()): OutboxItem => ({
  subject: "hp2p.r.z.m.ev",
  data: new Uint8Array([tick]),
  msgID: `m:1:${tick}`,
  tick,
  made,
});

function bus() {
  const stored: number[] = [];
  let down = false;
  return {
    stored,
    set down(v: boolean) {
      down = v;
    },
    publish: async (_s: string, data: Uint8Array) => {
      await Promise.resolve();
      if (down) throw new Error("timeout");
      stored.push(data[0]!);
    },
  };
}

describe("EventOutbox", () => {
  it("stores batches that failed, in tick order, before the ones made meanwhile", async () => {
    const b = bus();
    const dropped: number[] = [];
    const o = new EventOutbox({
      publish: b.publish,
      holds: () => true,
      dropped: (i) => dropped.push(i.tick),
      sleep: async () => {
        await new Promise((r) => setTimeout(r, 20));
        b.down = false;
      },
    });
    const settle = async () => {
      await new Promise((r) => setTimeout(r, 0));
      await o.idle();
    };
    o.push(item(1));
    await settle();
    b.down = true;
    o.push(item(2));
    o.push(item(3));
    await new Promise((r) => setTimeout(r, 0)); // 2 and 3 failed: retrying
    o.push(item(4)); // queued behind them
    expect(o.pending).toBe(3);
    await settle();
    o.push(item(5));
    await settle();
    expect(b.stored).toEqual([1, 2, 3, 4, 5]);
    expect(dropped).toEqual([]);
  });

  it("drops what it holds once the map is not the pod's, or a batch older than its limit", async () => {
    const b = bus();
    b.down = true;
    const dropped: string[] = [];
    let holds = true;
    let now = 0;
    const o = new EventOutbox({
      publish: b.publish,
      holds: () => holds,
      dropped: (i, why) => dropped.push(`${i.tick}: ${why}`),
      now: () => now,
      maxAgeMs: 1000,
      sleep: async () => {
        now += 600;
      },
    });
    o.push(item(1, 0));
    o.push(item(2, 1000));
    await new Promise((r) => setTimeout(r, 0));
    await o.idle();
    expect(dropped).toEqual([
      "1: older than the stream's duplicate window",
      "2: older than the stream's duplicate window",
    ]);
    o.push(item(3, now));
    holds = false;
    await new Promise((r) => setTimeout(r, 0));
    await o.idle();
    expect(dropped.at(-1)).toBe("3: the map is no longer this pod's");
    expect(b.stored).toEqual([]);
  });
});
