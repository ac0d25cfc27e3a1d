// The pool of simulation threads. Every tick the main thread applies inputs (MapSim.prepare),
// posts one message per worker naming the maps to step, waits for the one reply of each, and
// merges (MapSim.finish). With `threads: 0` the slices run on the calling thread instead.
import { Worker } from "node:worker_threads";
import type { SessionInfo, SliceResult } from "./sim/frames.ts";
import type { MapSim, TickResult } from "./sim/world.ts";
import type { FromWorker, ToWorker } from "./worker.ts";

const info = (s: SessionInfo): SessionInfo => ({ session: s.session, gateway: s.gateway, name: s.name });

export class WorkerPool {
  readonly threads: number;
  private readonly workers: Worker[] = [];
  private readonly pending = new Map<
    number,
    { left: number; outs: Map<string, SliceResult[]>; resolve: () => void; reject: (e: Error) => void }
  >();
  private nextId = 1;
  /** Set once a worker died: the pool cannot tick any more. */
  failed: Error | undefined;
  /** Slowest worker's busy time in the last tick (ms). */
  lastWorkerMs = 0;

  constructor(threads: number) {
    this.threads = threads;
    for (let i = 0; i < threads; i++) {
      const w = new Worker(new URL("./worker.ts", import.meta.url), {
        workerData: { index: i, count: threads },
      });
      w.on("message", (m: FromWorker) => this.onMessage(m));
      w.on("error", (err) => this.fail(err));
      w.on("exit", (code) => {
        if (code !== 0) this.fail(new Error(`simulation worker ${i} exited with code ${code}`));
      });
      this.workers.push(w);
    }
  }

  attach(key: string, sim: MapSim): void {
    const msg: ToWorker = {
      type: "attach",
      key,
      arena: sim.arena.buffers,
      grid: sim.grid.buffers,
      map: { name: sim.def.name, width: sim.def.width, height: sim.def.height, walkable: sim.def.walkable },
      params: sim.params,
      sessions: [...sim.sessions.values()].map((s) => [s.entity, info(s)]),
    };
    for (const w of this.workers) w.postMessage(msg);
    // Mirror joins, leaves and gateway changes; messages reach a worker before the next tick's.
    sim.onSessions = (entity, s) => {
      const m: ToWorker = { type: "session", key, entity, info: s && info(s) };
      for (const w of this.workers) w.postMessage(m);
    };
  }

  detach(key: string): void {
    for (const w of this.workers) w.postMessage({ type: "detach", key } satisfies ToWorker);
  }

  /** One tick of every given map. */
  async step(sims: Map<string, MapSim>): Promise<Map<string, TickResult>> {
    if (this.failed) throw this.failed;
    const jobs = [...sims].map(([key, sim]) => ({
      key,
      ...sim.prepare(),
      mode: sim.mode,
      fence: sim.fence,
      aoiByGateway: sim.aoiByGateway(this.threads),
    }));
    const results = new Map<string, TickResult>();
    if (this.threads === 0) {
      for (const [key, sim] of sims) results.set(key, sim.finish(sim.runSlices()));
      return results;
    }
    const id = this.nextId++;
    const outs = new Map<string, SliceResult[]>();
    await new Promise<void>((resolve, reject) => {
      this.pending.set(id, { left: this.workers.length, outs, resolve, reject });
      for (const w of this.workers) w.postMessage({ type: "tick", id, jobs } satisfies ToWorker);
    });
    for (const [key, sim] of sims) results.set(key, sim.finish((outs.get(key) ?? []).filter(Boolean)));
    return results;
  }

  private onMessage(m: FromWorker): void {
    const p = this.pending.get(m.id);
    if (!p) return;
    if (m.type === "error") {
      this.pending.delete(m.id);
      p.reject(new Error(`simulation worker failed: ${m.message}`));
      return;
    }
    this.lastWorkerMs = p.left === this.workers.length ? m.ms : Math.max(this.lastWorkerMs, m.ms);
    // Slot by worker index, so the merge order never depends on which thread finished first.
    for (const { key, out } of m.outs) {
      const list = p.outs.get(key) ?? [];
      list[m.worker] = out;
      p.outs.set(key, list);
    }
    if (--p.left === 0) {
      this.pending.delete(m.id);
      p.resolve();
    }
  }

  private fail(err: Error): void {
    this.failed ??= err;
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }

  async close(): Promise<void> {
    this.failed ??= new Error("worker pool closed");
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
