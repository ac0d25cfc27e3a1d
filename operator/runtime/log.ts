// Structured JSON logs, one object per line on stdout (stderr for errors), so log
// pipelines can index fields without parsing prose.
export type Level = "debug" | "info" | "warn" | "error";
const order: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(fields: Record<string, unknown>): Logger;
}

export interface LoggerOptions {
  level?: Level;
  /** Where lines go; defaults to stdout/stderr. Tests pass an array sink. */
  write?: (line: string, level: Level) => void;
}

function defaultWrite(line: string, level: Level): void {
  (level === "error" ? process.stderr : process.stdout).write(`${line}\n`);
}

function errorFields(v: unknown): unknown {
  return v instanceof Error ? { message: v.message, name: v.name, stack: v.stack } : v;
}

export function createLogger(opts: LoggerOptions = {}, base: Record<string, unknown> = {}): Logger {
  const min = order[opts.level ?? (process.env.LOG_LEVEL as Level | undefined) ?? "info"] ?? order.info;
  const write = opts.write ?? defaultWrite;
  const emit = (level: Level, msg: string, fields?: Record<string, unknown>): void => {
    if (order[level] < min) return;
    const rec: Record<string, unknown> = { ts: new Date().toISOString(), level, msg, ...base };
    for (const [k, v] of Object.entries(fields ?? {})) rec[k] = errorFields(v);
    write(JSON.stringify(rec), level);
  };
  return {
    debug: (m, f) => emit("debug", m, f),
    info: (m, f) => emit("info", m, f),
    warn: (m, f) => emit("warn", m, f),
    error: (m, f) => emit("error", m, f),
    child: (fields) => createLogger(opts, { ...base, ...fields }),
  };
}

/** A logger that drops everything (tests that do not care about logs). */
export const silentLogger: Logger = createLogger({ write: () => {} });
