// A simulation worker thread: holds views over the arenas of the maps its pod owns and, once per
// tick, runs its slice of each, then assembles and encodes the AOI frames of its players. One
// message in and one message out per tick is the only synchronisation; the entity data itself
// never moves (SharedArrayBuffers). Session names and gateways arrive as they change.
import { parentPort, workerData } from "node:worker_threads";
import type { MapMode } from "../../platform/bus/contract.ts";
import { type ArenaBuffers, attachArena } from "./sim/arena.ts";
import {
  assembleFrames,
  type FrameScratch,
  newFrameScratch,
  type SessionInfo,
  type SliceResult,
} from "./sim/frames.ts";
import { attachGrid, type GridBuffers } from "./sim/grid.ts";
import { newSliceState, runSlice, type SimParams, type SliceInput, type SliceState } from "./sim/step.ts";

export type ToWorker =
  | {
      type: "attach";
      key: string;
      arena: ArenaBuffers;
      grid: GridBuffers;
      map: { name: string; width: number; height: number; walkable: Uint8Array };
      params: SimParams;
      sessions: Array<[number, SessionInfo]>;
    }
  | { type: "detach"; key: string }
  | { type: "session"; key: string; entity: number; info: SessionInfo | undefined }
  | {
      type: "tick";
      id: number;
      jobs: Array<{
        key: string;
        tick: number;
        highWater: number;
        mode: MapMode;
        fence: string;
        aoiByGateway: boolean;
      }>;
    };

export type FromWorker =
  | { type: "done"; id: number; worker: number; outs: Array<{ key: string; out: SliceResult }>; ms: number }
  | { type: "error"; id: number; message: string };

const { index, count } = workerData as { index: number; count: number };

interface Attached {
  name: string;
  input: Omit<SliceInput, "tick" | "highWater" | "aoiByGateway">;
  state: SliceState;
  frames: FrameScratch;
  sessions: Map<number, SessionInfo>;
}

const maps = new Map<string, Attached>();

parentPort!.on("message", (msg: ToWorker) => {
  if (msg.type === "attach") {
    maps.set(msg.key, {
      name: msg.map.name,
      input: {
        arena: attachArena(msg.arena),
        grid: attachGrid(msg.grid),
        map: msg.map,
        params: msg.params,
        worker: index,
        workers: count,
      },
      state: newSliceState(),
      frames: newFrameScratch(),
      sessions: new Map(msg.sessions),
    });
  } else if (msg.type === "detach") {
    maps.delete(msg.key);
  } else if (msg.type === "session") {
    const m = maps.get(msg.key);
    if (msg.info) m?.sessions.set(msg.entity, msg.info);
    else m?.sessions.delete(msg.entity);
  } else {
    const t0 = performance.now();
    try {
      const outs: Array<{ key: string; out: SliceResult }> = [];
      for (const job of msg.jobs) {
        const m = maps.get(job.key);
        if (!m) throw new Error(`map ${job.key} is not attached`);
        const out = runSlice(
          { ...m.input, tick: job.tick, highWater: job.highWater, aoiByGateway: job.aoiByGateway },
          m.state,
        );
        const ctx = { map: m.name, mode: job.mode, fence: job.fence, sessions: m.sessions };
        outs.push({
          key: job.key,
          out: assembleFrames(m.input.arena, job.tick & 1, job.tick, ctx, out, m.frames),
        });
      }
      const reply: FromWorker = { type: "done", id: msg.id, worker: index, outs, ms: performance.now() - t0 };
      parentPort!.postMessage(
        reply,
        outs.flatMap((o) => o.out.frames.map((f) => f.data.buffer as ArrayBuffer)),
      );
    } catch (err) {
      parentPort!.postMessage({ type: "error", id: msg.id, message: String((err as Error)?.stack ?? err) });
    }
  }
});
