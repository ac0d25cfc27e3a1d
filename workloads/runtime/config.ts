// Configuration from the environment, validated. Every workload reads its settings through an
// EnvReader: each getter returns a usable value and records a problem when the variable is
// missing or malformed; `done()` then throws one ConfigError naming every bad variable at once.
// Values of secret variables never appear in error messages.

import { LOG_LEVELS, type LogLevel } from "../../platform/log.ts";
import { parseDuration } from "../../platform/time.ts";

/** The environment-variable contract shared with testkit/local/services.ts and the operator. */
export const ENV = {
  databaseUrl: "HYBRIDP2P_DATABASE_URL",
  redisUrl: "HYBRIDP2P_REDIS_URL",
  natsUrl: "HYBRIDP2P_NATS_URL",
  etcdEndpoints: "HYBRIDP2P_ETCD_ENDPOINTS",
  region: "HYBRIDP2P_REGION",
  podName: "POD_NAME",
  podNamespace: "POD_NAMESPACE",
  healthPort: "HYBRIDP2P_HEALTH_PORT",
  metricsPort: "HYBRIDP2P_METRICS_PORT",
  logLevel: "HYBRIDP2P_LOG_LEVEL",
  shutdownTimeout: "HYBRIDP2P_SHUTDOWN_TIMEOUT",
  drainDelay: "HYBRIDP2P_DRAIN_DELAY",
  /** The serving certificate of the player-facing listeners (platform/tls.ts). */
  servingTlsDir: "HYBRIDP2P_SERVING_TLS_DIR",
} as const;

/** Default ports, in this one place: health and readiness on 8081, Prometheus metrics on 9090. */
export const DEFAULT_HEALTH_PORT = 8081;
export const DEFAULT_METRICS_PORT = 9090;

export class ConfigError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join("\n  - ")}`);
    this.name = "ConfigError";
    this.problems = problems;
  }
}

interface Common {
  /** Hide the value in error messages (passwords, keys, URLs with credentials). */
  secret?: boolean;
}

export type Env = Record<string, string | undefined>;

export class EnvReader {
  readonly env: Env;
  readonly problems: string[] = [];

  constructor(env: Env = process.env) {
    this.env = env;
  }

  private raw(name: string): string | undefined {
    const v = this.env[name];
    return v === undefined || v.trim() === "" ? undefined : v.trim();
  }

  private shown(value: string, opts: Common): string {
    return opts.secret
      ? "(value hidden)"
      : `got ${JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value)}`;
  }

  problem(name: string, message: string): void {
    this.problems.push(`${name}: ${message}`);
  }

  /** A required string; records a problem when missing. */
  required(name: string): string {
    const v = this.raw(name);
    if (v === undefined) {
      this.problem(name, "is required but not set");
      return "";
    }
    return v;
  }

  str(name: string, fallback: string): string;
  str(name: string, fallback?: undefined): string | undefined;
  str(name: string, fallback?: string): string | undefined {
    return this.raw(name) ?? fallback;
  }

  int(
    name: string,
    opts: Common & { default?: number; min?: number; max?: number; required?: boolean } = {},
  ): number {
    const v = this.raw(name);
    if (v === undefined) {
      if (opts.default === undefined || opts.required) this.problem(name, "is required but not set");
      return opts.default ?? 0;
    }
    const n = Number(v);
    const min = opts.min ?? Number.MIN_SAFE_INTEGER;
    const max = opts.max ?? Number.MAX_SAFE_INTEGER;
    if (!/^-?\d+$/.test(v) || !Number.isSafeInteger(n) || n < min || n > max) {
      this.problem(name, `must be an integer between ${min} and ${max} (${this.shown(v, opts)})`);
      return opts.default ?? 0;
    }
    return n;
  }

  port(name: string, fallback: number): number {
    return this.int(name, { default: fallback, min: 0, max: 65535 });
  }

  bool(name: string, fallback: boolean): boolean {
    const v = this.raw(name);
    if (v === undefined) return fallback;
    if (/^(1|true|yes|on)$/i.test(v)) return true;
    if (/^(0|false|no|off)$/i.test(v)) return false;
    this.problem(name, `must be true or false (got ${JSON.stringify(v)})`);
    return fallback;
  }

  /** A duration with a unit ("250ms", "30s", "15m", "1h"), returned in milliseconds. */
  duration(name: string, fallbackMs: number, opts: { minMs?: number; maxMs?: number } = {}): number {
    const v = this.raw(name);
    if (v === undefined) return fallbackMs;
    const ms = parseDuration(v);
    const min = opts.minMs ?? 0;
    const max = opts.maxMs ?? Number.MAX_SAFE_INTEGER;
    if (ms === undefined) {
      this.problem(name, `must be a duration such as 500ms, 30s, 15m or 1h (got ${JSON.stringify(v)})`);
      return fallbackMs;
    }
    if (ms < min || ms > max) {
      this.problem(name, `must be between ${min} ms and ${max} ms (got ${JSON.stringify(v)})`);
      return fallbackMs;
    }
    return ms;
  }

  /** A URL with one of the given schemes; credentials in it are never echoed back. */
  url(name: string, schemes: string[], opts: { required?: boolean; default?: string } = {}): string {
    const v = this.raw(name) ?? opts.default;
    if (v === undefined) {
      if (opts.required !== false) this.problem(name, "is required but not set");
      return "";
    }
    let parsed: URL;
    try {
      parsed = new URL(v);
    } catch {
      this.problem(
        name,
        `must be a URL such as ${schemes[0]}://host:port (value hidden: it may hold credentials)`,
      );
      return "";
    }
    const scheme = parsed.protocol.replace(/:$/, "");
    if (!schemes.includes(scheme)) {
      this.problem(name, `must use one of the schemes ${schemes.join(", ")} (got ${scheme}://)`);
      return "";
    }
    return v;
  }

  oneOf<T extends string>(name: string, values: readonly T[], fallback: T): T {
    const v = this.raw(name);
    if (v === undefined) return fallback;
    if (!(values as readonly string[]).includes(v)) {
      this.problem(name, `must be one of ${values.join(", ")} (got ${JSON.stringify(v)})`);
      return fallback;
    }
    return v as T;
  }

  /** Throws one ConfigError listing every problem recorded so far. */
  done(): void {
    if (this.problems.length > 0) throw new ConfigError([...this.problems]);
  }
}

/** Settings every workload shares: identity, ops ports, logging, shutdown. */
export interface RuntimeConfig {
  podName: string;
  namespace: string;
  region: string;
  healthPort: number;
  metricsPort: number;
  logLevel: LogLevel;
  shutdownTimeoutMs: number;
  /** After readiness goes off at shutdown, keep serving this long so endpoints catch up. */
  drainDelayMs: number;
  /**
   * The directory of the serving certificate (tls.crt, tls.key): the gateway and coordinator
   * then serve wss, the login and char servers https. Unset: plain ws/http (a Region that
   * asks for it). The ops ports stay plain http either way (kubelet probes, Prometheus).
   */
  servingTlsDir: string | undefined;
}

export function readRuntimeConfig(r: EnvReader): RuntimeConfig {
  return {
    podName: r.str(ENV.podName, "local"),
    namespace: r.str(ENV.podNamespace, "default"),
    region: r.str(ENV.region, "local"),
    healthPort: r.port(ENV.healthPort, DEFAULT_HEALTH_PORT),
    metricsPort: r.port(ENV.metricsPort, DEFAULT_METRICS_PORT),
    logLevel: r.oneOf(ENV.logLevel, LOG_LEVELS, "info"),
    shutdownTimeoutMs: r.duration(ENV.shutdownTimeout, 20_000, { minMs: 100 }),
    drainDelayMs: r.duration(ENV.drainDelay, 3000, { minMs: 0, maxMs: 60_000 }),
    servingTlsDir: r.str(ENV.servingTlsDir),
  };
}
