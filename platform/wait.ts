// Waiting for a store at start: a pod usually starts before (or with) the etcd, NATS, PostgreSQL
// or Redis it needs. Exiting on the first refused connection turns that into a crash loop
// (kubelet restarts with its own growing delay, restarts counted against the pod); instead the
// workload or the operator retries here, with capped exponential backoff and jitter (many pods
// waiting for one store must not knock on it in step), says what it waits for in the log, and
// stays not ready meanwhile.
import { type Logger, redactString } from "./log.ts";
import { sleep } from "./time.ts";

export interface Backoff {
  /** Delay before the second attempt. */
  initialMs: number;
  /** Upper bound of any delay. */
  maxMs: number;
  /** Fraction of each delay drawn at random (0: none, 1: anywhere in [0, delay]). */
  jitter: number;
}

/** For stores at start: quick first retries, then at most every 10 s. */
export const STORE_BACKOFF: Backoff = { initialMs: 250, maxMs: 10_000, jitter: 0.3 };

/**
 * The delay after failed attempt number `attempt` (1 for the first failure): initialMs doubled
 * per attempt up to maxMs, of which a `jitter` fraction is random. Pure, given `random`.
 */
export function backoffMs(attempt: number, b: Backoff, random: () => number = Math.random): number {
  const exp = Math.min(b.maxMs, b.initialMs * 2 ** Math.min(Math.max(attempt - 1, 0), 30));
  const jitter = Math.min(Math.max(b.jitter, 0), 1);
  return Math.round(exp * (1 - jitter) + exp * jitter * random());
}

export interface WaitOptions {
  log: Logger;
  backoff?: Backoff;
  /** Stops waiting (shutdown): the promise rejects with the signal's reason. */
  signal?: AbortSignal;
  /** One attempt that takes longer than this counts as failed (default 15 s). */
  attemptTimeoutMs?: number;
  /** Told before each retry (the workload's readiness message). */
  onRetry?: (err: unknown, retryInMs: number) => void;
  random?: () => number;
}

/**
 * Runs `attempt` until it resolves, retrying every failure with backoff; logs
 * "waiting for <store> at <address>: <error>, retry in N s" before each retry. Credentials in
 * the address or the error are masked. Never gives up on its own: a pod waiting for a store is
 * better than one in a crash loop (stop it with `signal`).
 */
export async function waitFor<T>(
  store: string,
  address: string,
  attempt: () => Promise<T>,
  opts: WaitOptions,
): Promise<T> {
  const backoff = opts.backoff ?? STORE_BACKOFF;
  const timeoutMs = opts.attemptTimeoutMs ?? 15_000;
  const where = redactString(address);
  const started = Date.now();
  for (let n = 1; ; n++) {
    opts.signal?.throwIfAborted();
    try {
      const value = await withTimeout(attempt(), timeoutMs);
      if (n > 1) {
        opts.log.info(`${store} at ${where} answered`, {
          store,
          attempts: n,
          waitedMs: Date.now() - started,
        });
      }
      return value;
    } catch (err) {
      opts.signal?.throwIfAborted();
      const delay = backoffMs(n, backoff, opts.random);
      opts.log.warn(`waiting for ${store} at ${where}: ${errorText(err)}, retry in ${fmtSeconds(delay)}`, {
        store,
        attempt: n,
        retryInMs: delay,
      });
      opts.onRetry?.(err, delay);
      // node's timers reject with a generic AbortError: throw the signal's own reason instead.
      await sleep(delay, opts.signal).catch((e) => {
        opts.signal?.throwIfAborted();
        throw e;
      });
    }
  }
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_r, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${fmtSeconds(ms)}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** The error's message (or its code: some socket errors carry an empty message), masked. */
export function errorText(err: unknown): string {
  const e = err as { message?: unknown; code?: unknown; errors?: unknown } | null;
  let text = typeof e?.message === "string" && e.message ? e.message : "";
  // AggregateError (a host name resolving to IPv4 and IPv6): its parts say what failed.
  if (!text && Array.isArray(e?.errors)) text = e.errors.map(errorText).join("; ");
  if (!text && typeof e?.code === "string") text = e.code;
  return redactString(text || String(err));
}

function fmtSeconds(ms: number): string {
  return `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`;
}
