import { describe, expect, it } from "vitest";
import { silentLogger } from "../log.ts";
import { sleep } from "../time.ts";
import { Controller } from "./controller.ts";
import { Metrics } from "./metrics.ts";

describe("Controller", () => {
  it("exports its queue depth from the start, before any key was queued", async () => {
    const metrics = new Metrics();
    new Controller({ name: "idle", metrics, log: silentLogger(), reconcile: async () => undefined });
    expect(await metrics.registry.getSingleMetricAsString("hybridp2p_workqueue_depth")).toContain(
      'hybridp2p_workqueue_depth{controller="idle"} 0',
    );
  });

  it("retries a failing key with backoff until it succeeds, and never runs more than `concurrency` at once", async () => {
    const attempts = new Map<string, number>();
    let running = 0;
    let maxRunning = 0;
    const done = new Set<string>();
    const ctl = new Controller({
      name: "t",
      concurrency: 2,
      metrics: new Metrics(),
      log: silentLogger(),
      baseDelayMs: 1,
      maxDelayMs: 5,
      reconcile: async (key) => {
        running++;
        maxRunning = Math.max(maxRunning, running);
        await sleep(2);
        running--;
        const n = (attempts.get(key) ?? 0) + 1;
        attempts.set(key, n);
        if (key === "flaky" && n < 4) throw new Error("not yet");
        done.add(key);
        return undefined;
      },
    });
    ctl.start();
    for (const k of ["a", "b", "c", "d", "flaky"]) ctl.queue.add(k);
    while (done.size < 5) await sleep(5);
    await ctl.stop();
    expect(attempts.get("flaky")).toBe(4);
    expect(attempts.get("a")).toBe(1);
    expect(maxRunning).toBeLessThanOrEqual(2);
    expect(ctl.queue.failures("flaky")).toBe(0); // success clears the backoff
  });
});
