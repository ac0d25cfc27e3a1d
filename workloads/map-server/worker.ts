// A simulation worker thread: holds views over the arenas of the maps its pod owns and, once per
// tick, runs its slice of each. One message in and one message out per tick is the only
// synchronisation; the entity data itself never moves (SharedArrayBuffers).
import { parentPort, workerData } from "node:worker_threads";
import { type ArenaBuffers, attachArena } from "./sim/arena.ts";
import { attachGrid, type GridBuffers } from "./sim/grid.ts";
import {
  newSliceState,
  runSlice,
  type SimParams,
  type SliceInput,
  type SliceOutput,
  type SliceState,
} from "./sim/step.ts";

export type ToWorker =
  | {
      type: "attach";
      key: string;
      arena: ArenaBuffers;
      grid: GridBuffers;
      map: { width: number; height: number; walkable: Uint8Array };
      params: SimParams;
    }
  | { type: "detach"; key: string }
  | { type: "tick"; id: number; jobs: Array<{ key: string; tick: number; highWater: number }> };

export type FromWorker =
  | { type: "done"; id: number; worker: number; outs: Array<{ key: string; out: SliceOutput }>; ms: number }
  | { type: "error"; id: number; message: string };

const { index, count } = workerData as { index: number; count: number };
const maps = new Map<string, { input: Omit<SliceInput, "tick" | "highWater">; state: SliceState }>();

parentPort!.on("message", (msg: ToWorker) => {
  if (msg.type === "attach") {
    maps.set(msg.key, {
      input: {
        arena: attachArena(msg.arena),
        grid: attachGrid(msg.grid),
        map: msg.map,
        params: msg.params,
        worker: index,
        workers: count,
      },
      state: newSliceState(),
    });
  } else if (msg.type === "detach") {
    maps.delete(msg.key);
  } else {
    const t0 = performance.now();
    try {
      const outs: Array<{ key: string; out: SliceOutput }> = [];
      for (const job of msg.jobs) {
        const m = maps.get(job.key);
        if (!m) throw new Error(`map ${job.key} is not attached`);
        outs.push({
          key: job.key,
          out: runSlice({ ...m.input, tick: job.tick, highWater: job.highWater }, m.state),
        });
      }
      const reply: FromWorker = { type: "done", id: msg.id, worker: index, outs, ms: performance.now() - t0 };
      parentPort!.postMessage(
        reply,
        outs.map((o) => o.out.views.buffer as ArrayBuffer),
      );
    } catch (err) {
      parentPort!.postMessage({ type: "error", id: msg.id, message: String((err as Error)?.stack ?? err) });
    }
  }
});
