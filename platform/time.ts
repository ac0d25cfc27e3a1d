// Waiting, in one place: a promise-based sleep and a poll loop for "until this holds".
import { setTimeout as delay } from "node:timers/promises";

/** Resolves after `ms` milliseconds; rejects early when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return delay(ms, undefined, signal ? { signal } : undefined);
}

/**
 * Polls `probe` every `everyMs` until it returns a value other than undefined or false, and
 * returns that value. A probe that throws (an object not there yet) is tried again; on timeout
 * the error names `what` and the last failure.
 */
export async function pollUntil<T>(
  what: string,
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 30_000,
  everyMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (${String(last)})` : ""}`,
      );
    }
    await sleep(everyMs);
  }
}

/** Parses "250ms", "1.5s", "15m" or "2h" into milliseconds; anything else is undefined. */
export function parseDuration(s: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(s.trim());
  if (!m) return undefined;
  const n = Number(m[1]);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as "ms" | "s" | "m" | "h"];
  return Math.round(n * unit);
}
