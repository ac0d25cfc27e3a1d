// npm run bench:login — logins per second through the real login server (HTTP, PostgreSQL,
// Redis, scrypt, session record, signed token) against the floor: the bare scrypt rate at the
// same cost and concurrency through libuv's pool, measured in the same run on the same machine.
// Starts its own PostgreSQL and Redis and stops them at the end. Each phase is time-bounded.
//
//   RESULT login logins_per_s=.. floor_hashes_per_s=.. ratio=..
//
// Options (environment): BENCH_SECONDS (counted time per measurement, split over three rounds, each slice after 1.5 s of
// warm-up; default 9), BENCH_CLIENTS (default 8),
// BENCH_ACCOUNTS (default 32), and the login server's own HYBRIDP2P_SCRYPT_* to try other costs.
import { scrypt } from "node:crypto";
import { availableParallelism } from "node:os";
import { silentLogger } from "../platform/log.ts";
import { keysetFile, testLoginConfig, uniquePrefix } from "../testkit/auth.ts";
import { startLocalEnv, storeCredentialEnv } from "../testkit/local/services.ts";
import { usePrivateTmp } from "../testkit/private-tmp.ts";
import { loginConfigFromEnv } from "../workloads/login-server/config.ts";
import { DEFAULT_SCRYPT, hashPassword, type ScryptParams } from "../workloads/login-server/password.ts";
import { startLoginServer } from "../workloads/login-server/server.ts";

usePrivateTmp("bench"); // its temp files (and its children's) are removed at exit

const seconds = Number(process.env.BENCH_SECONDS ?? 9);
const clients = Number(process.env.BENCH_CLIENTS ?? 8);
const warmMs = 1500;
const rounds = 3;
const accounts = Number(process.env.BENCH_ACCOUNTS ?? 32);
const password = "bench-password-1234";

function log(msg: string): void {
  process.stderr.write(`[bench:login] ${msg}\n`);
}

function percentile(sorted: number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

interface Phase {
  /** Operations completed, counted fractionally: the share of each one's duration inside the window. */
  done: number;
  errors: number;
  elapsed: number;
  latencies: number[];
}

/**
 * Runs `workers` loops of `op` continuously for `warmMs + ms` and measures the window after the
 * warm-up. Each operation counts for the share of its own duration that lies inside the
 * window, so an operation straddling either edge counts in part: with operations lasting
 * seconds, counting whole completions would round the rate by up to `workers` per window.
 */
async function closedLoop(
  workers: number,
  warmMs: number,
  ms: number,
  op: (i: number) => Promise<void>,
): Promise<Phase> {
  const latencies: number[] = [];
  let errors = 0;
  let done = 0;
  const from = performance.now() + warmMs;
  const to = from + ms;
  await Promise.all(
    Array.from({ length: workers }, async (_, w) => {
      for (let i = w; performance.now() < to; i += workers) {
        const t0 = performance.now();
        try {
          await op(i);
        } catch {
          errors++;
          continue;
        }
        const t1 = performance.now();
        const overlap = Math.min(t1, to) - Math.max(t0, from);
        if (overlap > 0) {
          done += overlap / (t1 - t0);
          latencies.push(t1 - t0);
        }
      }
    }),
  );
  return { done, errors, elapsed: ms / 1000, latencies };
}

function merge(phases: Phase[]) {
  const latencies = phases.flatMap((p) => p.latencies).sort((a, b) => a - b);
  const elapsed = phases.reduce((s, p) => s + p.elapsed, 0);
  const done = phases.reduce((s, p) => s + p.done, 0);
  return {
    done,
    errors: phases.reduce((s, p) => s + p.errors, 0),
    elapsed,
    rate: done / elapsed,
    p50: percentile(latencies, 0.5),
    p99: percentile(latencies, 0.99),
  };
}

function bareHash(p: ScryptParams): Promise<void> {
  const N = 2 ** p.logN;
  return new Promise((resolve, reject) =>
    scrypt(
      password,
      "0123456789abcdef",
      32,
      { N, r: p.r, p: p.p, maxmem: 256 * N * p.r + 16 * 1024 * 1024 },
      (err) => (err ? reject(err) : resolve()),
    ),
  );
}

async function main(): Promise<void> {
  // The cost the login server would run with, from the same environment variables.
  const scryptParams = loginConfigFromEnvOrDefault();
  log(
    `scrypt N=2^${scryptParams.logN} r=${scryptParams.r} p=${scryptParams.p} (${(128 * 2 ** scryptParams.logN * scryptParams.r) / 2 ** 20} MiB), ` +
      `${clients} clients, ${seconds} s per measurement, ${availableParallelism()} cores, libuv pool ${process.env.UV_THREADPOOL_SIZE ?? 4}`,
  );
  log("starting PostgreSQL and Redis");
  const env = await startLocalEnv({ services: ["postgres", "redis"] });
  // The stores run with auth and TLS: this process and its children take their credentials.
  Object.assign(process.env, storeCredentialEnv(env.env));
  try {
    const keys = await keysetFile("bench");
    const base = testLoginConfig({
      databaseUrl: env.env.databaseUrl!,
      redisUrl: env.env.redisUrl!,
      redisPrefix: uniquePrefix("bench"),
      keysetFile: keys.path,
    });
    const cfg = {
      ...base,
      scrypt: scryptParams,
      hashConcurrency: Number(process.env.UV_THREADPOOL_SIZE) || 4,
      hashQueue: 10_000,
    };
    const server = await startLoginServer(cfg, { log: silentLogger() });
    try {
      log(`creating ${accounts} accounts`);
      // Hash once and insert directly: sign-up speed is not what is measured.
      const hash = await hashPassword(password, scryptParams);
      for (let i = 0; i < accounts; i++) {
        await server.deps.pool.query("INSERT INTO accounts (username, password_hash) VALUES ($1, $2)", [
          `bench_${i}`,
          hash,
        ]);
      }
      const login = async (i: number) => {
        const res = await fetch(`${server.url}/v1/sessions`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ username: `bench_${i % accounts}`, password }),
        });
        const body = (await res.json()) as { token?: string };
        if (res.status !== 200 || !body.token) throw new Error(`login answered ${res.status}`);
      };

      // Rounds alternate the measurements so a change in the machine's background load during
      // the run hits all of them alike. The floor is the bare hash rate through libuv's pool at
      // the clients' concurrency (every client's hash submitted at once) and at the server's own
      // hash concurrency; the better of the two is the floor.
      const poolRuns: Phase[] = [];
      const limitedRuns: Phase[] = [];
      const loginRuns: Phase[] = [];
      const slice = (seconds * 1000) / rounds;
      for (let round = 1; round <= rounds; round++) {
        log(`round ${round}/${rounds}: bare scrypt, ${clients} in flight`);
        poolRuns.push(await closedLoop(clients, warmMs, slice, () => bareHash(scryptParams)));
        log(`round ${round}/${rounds}: bare scrypt, ${cfg.hashConcurrency} in flight`);
        limitedRuns.push(await closedLoop(cfg.hashConcurrency, warmMs, slice, () => bareHash(scryptParams)));
        log(`round ${round}/${rounds}: logins over HTTP, ${clients} clients`);
        loginRuns.push(await closedLoop(clients, warmMs, slice, login));
      }
      const pool = merge(poolRuns);
      const limited = merge(limitedRuns);
      const floor = pool.rate >= limited.rate ? pool : limited;
      const logins = merge(loginRuns);
      for (const [what, r] of [
        [`bare scrypt, ${clients} in flight`, pool],
        [`bare scrypt, ${cfg.hashConcurrency} in flight`, limited],
        [`logins, ${clients} clients`, logins],
      ] as const) {
        log(
          `${what}: ${r.done.toFixed(1)} in ${r.elapsed.toFixed(1)} s = ${r.rate.toFixed(2)}/s, p50 ${r.p50.toFixed(0)} ms, p99 ${r.p99.toFixed(0)} ms` +
            (r.errors ? `, ${r.errors} errors` : ""),
        );
      }
      if (logins.errors > 0) process.exitCode = 1;
      const ratio = logins.rate / floor.rate;
      console.log(
        `RESULT login logins_per_s=${logins.rate.toFixed(2)} floor_hashes_per_s=${floor.rate.toFixed(2)} ratio=${ratio.toFixed(3)}`,
      );
    } finally {
      await server.close();
    }
  } finally {
    await env.stop();
  }
}

function loginConfigFromEnvOrDefault(): ScryptParams {
  const vars = Object.keys(process.env).filter((k) => k.startsWith("HYBRIDP2P_SCRYPT_"));
  if (vars.length === 0) return DEFAULT_SCRYPT;
  // Validate through the real configuration reader; the other settings get placeholders.
  const cfg = loginConfigFromEnv({
    ...process.env,
    HYBRIDP2P_DATABASE_URL: "postgres://bench/none",
    HYBRIDP2P_REDIS_URL: "redis://bench",
  });
  return cfg.scrypt;
}

await main();
