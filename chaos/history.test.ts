// The history check must catch what it is for: a write under a stale fencing token (two
// publishers) and a pointer whose epoch goes backwards; a clean fenced history passes.
import type { IKeyValue } from "etcd3";
import { describe, expect, it } from "vitest";
import { layout } from "../platform/flags/layout.ts";
import { HistoryCheck } from "./history.ts";

const prefix = "/h/v1/";
const l = layout(prefix);
const kv = (key: string, value: string, rev: number) =>
  ({ key: Buffer.from(key), value: Buffer.from(value), mod_revision: String(rev) }) as unknown as IKeyValue;
const fence = (rev: number) => kv(l.fence, "{}", rev);
const pointer = (epoch: number, token: number, rev: number) =>
  kv(
    l.pointer,
    JSON.stringify({ v: 1, epoch, publish: l.publishId(epoch, String(token)), digest: "d" }),
    rev,
  );
const doc = (epoch: number, token: number, rev: number) =>
  kv(l.zoneKey("ns", "z"), `{"epoch":${epoch},"publish":"${l.publishId(epoch, String(token))}","v":1}`, rev);

describe("flag store history check", () => {
  it("passes a fenced history whose epochs grow across a change of leader", () => {
    const h = new HistoryCheck(prefix);
    for (const p of [fence(5), doc(1, 5, 6), pointer(1, 5, 7), fence(9), doc(2, 9, 10), pointer(2, 9, 11)])
      h.onPut(p);
    expect(h.violations).toEqual([]);
    expect(h.pointers).toBe(2);
  });

  it("flags a write under a deposed leader's token", () => {
    const h = new HistoryCheck(prefix);
    for (const p of [fence(5), pointer(1, 5, 6), fence(9), doc(2, 5, 10)]) h.onPut(p);
    expect(h.violations).toHaveLength(1);
    expect(h.violations[0]).toContain("under fencing token 5, while the current token was 9");
  });

  it("flags a pointer whose epoch goes backwards", () => {
    const h = new HistoryCheck(prefix);
    for (const p of [fence(5), pointer(3, 5, 6), pointer(2, 5, 7)]) h.onPut(p);
    expect(h.violations).toEqual([expect.stringContaining("pointer went from")]);
  });
});
