// Login server settings, all from the environment (see workloads/runtime/config.ts).
import { type AuthServiceConfig, readAuthServiceConfig } from "../auth/config.ts";
import { parseRoAddress, type RoAddress } from "../auth/ro-tickets.ts";
import { type Env, EnvReader } from "../runtime/config.ts";
import type { LockoutPolicy, Scope } from "./lockout.ts";
import { DEFAULT_SCRYPT, type ScryptParams } from "./password.ts";

export interface LoginConfig extends AuthServiceConfig {
  sessionTtlMs: number;
  lockout: Record<Scope, LockoutPolicy>;
  scrypt: ScryptParams;
  hashConcurrency: number;
  hashQueue: number;
  /** Sign-ups allowed per client address per window (0: no limit). */
  signupLimit: { perAddress: number; windowMs: number };
  /**
   * The RO login endpoint (0x0064), off unless the Region turns it on: its port, and the char
   * server's RO endpoint as clients reach it (the address 0x0069 lists).
   */
  ro?: RoLoginConfig;
}

export interface RoLoginConfig {
  port: number;
  host: string;
  charAddress: RoAddress;
  /** The name of the char server in the client's server list. */
  serverName: string;
}

/** rAthena's login server listens on 6900; the HTTP API keeps the number. */
export const DEFAULT_LOGIN_PORT = 6900;

export function loginConfigFromEnv(env: Env = process.env): LoginConfig {
  const r = new EnvReader(env);
  const base = readAuthServiceConfig(r, DEFAULT_LOGIN_PORT, "HYBRIDP2P_LOGIN_PORT");
  const lockoutMs = r.duration("HYBRIDP2P_LOGIN_LOCKOUT", 15 * 60_000, { minMs: 1 });
  const windowMs = r.duration("HYBRIDP2P_LOGIN_FAILURE_WINDOW", 15 * 60_000, { minMs: 1 });
  const cfg: LoginConfig = {
    ...base,
    sessionTtlMs: r.duration("HYBRIDP2P_SESSION_TTL", 15 * 60_000, { minMs: 1000, maxMs: 24 * 3_600_000 }),
    lockout: {
      account: {
        maxFailures: r.int("HYBRIDP2P_LOGIN_MAX_FAILURES", { default: 5, min: 1, max: 1000 }),
        windowMs,
        lockoutMs,
      },
      // One address can hide many players (NAT, mobile carriers): a looser limit by default.
      address: {
        maxFailures: r.int("HYBRIDP2P_LOGIN_MAX_FAILURES_PER_ADDRESS", { default: 20, min: 1, max: 100_000 }),
        windowMs,
        lockoutMs,
      },
    },
    scrypt: {
      logN: r.int("HYBRIDP2P_SCRYPT_LOG_N", { default: DEFAULT_SCRYPT.logN, min: 10, max: 20 }),
      r: r.int("HYBRIDP2P_SCRYPT_R", { default: DEFAULT_SCRYPT.r, min: 1, max: 32 }),
      p: r.int("HYBRIDP2P_SCRYPT_P", { default: DEFAULT_SCRYPT.p, min: 1, max: 16 }),
    },
    // As many hashes at once as libuv's pool has threads (4 by default): each hash holds a
    // thread for its whole run, so more would only queue inside the pool. Tokens are signed
    // synchronously, off the pool (tokens.ts), so they never wait behind hashes.
    hashConcurrency: r.int("HYBRIDP2P_HASH_CONCURRENCY", {
      default: Number(env.UV_THREADPOOL_SIZE) || 4,
      min: 1,
      max: 128,
    }),
    hashQueue: r.int("HYBRIDP2P_HASH_QUEUE", { default: 256, min: 0, max: 100_000 }),
    signupLimit: {
      perAddress: r.int("HYBRIDP2P_SIGNUPS_PER_ADDRESS", { default: 20, min: 0, max: 1_000_000 }),
      windowMs: r.duration("HYBRIDP2P_SIGNUP_WINDOW", 3_600_000, { minMs: 1000 }),
    },
    ro: readRoLogin(r),
  };
  r.done();
  return cfg;
}

function readRoLogin(r: EnvReader): RoLoginConfig | undefined {
  const port = r.str("HYBRIDP2P_RO_LOGIN_PORT");
  if (port === undefined) return undefined;
  const raw = r.required("HYBRIDP2P_RO_CHAR_ADDRESS");
  const charAddress = parseRoAddress(raw);
  if (raw && !charAddress)
    r.problem("HYBRIDP2P_RO_CHAR_ADDRESS", `must be host:port (got ${JSON.stringify(raw)})`);
  return {
    port: r.port("HYBRIDP2P_RO_LOGIN_PORT", 6900),
    host: r.str("HYBRIDP2P_LISTEN_HOST", "0.0.0.0"),
    charAddress: charAddress ?? { host: "127.0.0.1", port: 6121 },
    serverName: r.str("HYBRIDP2P_RO_SERVER_NAME", r.str("HYBRIDP2P_REGION", "hybrid-p2p")).slice(0, 19),
  };
}
