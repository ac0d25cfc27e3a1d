// Structured JSON logs, one object per line, that never print secrets: fields whose name
// suggests a secret are replaced, credentials inside URLs are masked, and anything shaped like
// a signed token (JWS) is masked wherever it appears, even inside messages and error text.

export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export type Fields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: Fields): void;
  info(msg: string, fields?: Fields): void;
  warn(msg: string, fields?: Fields): void;
  error(msg: string, fields?: Fields): void;
  child(fields: Fields): Logger;
}

const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export const REDACTED = "[redacted]";

/** Field names whose values are never logged. */
const SECRET_KEY =
  /pass(word|wd|phrase)?|secret|token|authorization|cookie|credential|api[-_]?key|private|signature|^d$|^salt$|^hash$/i;

/** A compact JWS (three base64url parts, the first an encoded JSON header). */
const JWS = /eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+/g;
/** scheme://user:password@ in URLs. */
const URL_CREDENTIALS = /([a-z][a-z0-9+.-]*:\/\/)([^/\s:@]*):([^/\s@]*)@/gi;
/** Bearer credentials in free text. */
const BEARER = /(bearer\s+)[A-Za-z0-9._~+/=-]+/gi;

export function redactString(s: string): string {
  return s
    .replace(JWS, REDACTED)
    .replace(URL_CREDENTIALS, `$1$2:${REDACTED}@`)
    .replace(BEARER, `$1${REDACTED}`);
}

export function redact(value: unknown, depth = 0): unknown {
  if (depth > 6) return "[depth]";
  if (typeof value === "string") return redactString(value);
  if (value === null || typeof value !== "object") {
    return typeof value === "bigint" ? value.toString() : value;
  }
  if (value instanceof Error) {
    const e = value as Error & { code?: unknown };
    const out: Fields = { name: e.name, message: redactString(e.message) };
    if (e.code !== undefined) out.code = e.code;
    if (e.stack) out.stack = redactString(e.stack);
    if (e.cause !== undefined) out.cause = redact(e.cause, depth + 1);
    return out;
  }
  if (Array.isArray(value)) return value.slice(0, 50).map((v) => redact(v, depth + 1));
  if (Buffer.isBuffer(value) || ArrayBuffer.isView(value)) return `[${value.byteLength} bytes]`;
  const out: Fields = {};
  for (const [k, v] of Object.entries(value)) {
    out[k] = SECRET_KEY.test(k) && v !== undefined && v !== null ? REDACTED : redact(v, depth + 1);
  }
  return out;
}

export interface LoggerOptions {
  level?: LogLevel;
  /** Where lines go; stdout by default. Tests pass an array-backed sink. */
  sink?: (line: string) => void;
  fields?: Fields;
}

export function createLogger(component: string, opts: LoggerOptions = {}): Logger {
  const min = ORDER[opts.level ?? "info"];
  const sink = opts.sink ?? ((line: string) => process.stdout.write(`${line}\n`));
  const make = (base: Fields): Logger => {
    const emit = (level: LogLevel, msg: string, fields?: Fields) => {
      if (ORDER[level] < min) return;
      const record = redact({ ...base, ...fields }) as Fields;
      let line: string;
      try {
        line = JSON.stringify({ time: new Date().toISOString(), level, msg: redactString(msg), ...record });
      } catch {
        line = JSON.stringify({
          time: new Date().toISOString(),
          level,
          msg: redactString(msg),
          fields: "[unserializable]",
        });
      }
      sink(line);
    };
    return {
      debug: (m, f) => emit("debug", m, f),
      info: (m, f) => emit("info", m, f),
      warn: (m, f) => emit("warn", m, f),
      error: (m, f) => emit("error", m, f),
      child: (f) => make({ ...base, ...f }),
    };
  };
  return make({ component, ...opts.fields });
}

/** A logger that drops everything (tests, benchmarks). */
export function silentLogger(): Logger {
  const l: Logger = { debug() {}, info() {}, warn() {}, error() {}, child: () => l };
  return l;
}
