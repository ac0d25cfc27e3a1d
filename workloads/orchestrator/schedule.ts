// Five-field cron (minute hour day-of-month month day-of-week, UTC), as WorldEvent
// spec.schedule.cron takes it: `*`, numbers, ranges `a-b`, lists `a,b`, steps `*/n` and `a-b/n`;
// day-of-week 0-7 with 0 and 7 both Sunday; when both day fields are restricted a day matches
// either (as in Vixie cron). Pure: the orchestrator asks for the latest start at or before a time
// and the next one after it.

interface Field {
  min: number;
  max: number;
}

const FIELDS: Field[] = [
  { min: 0, max: 59 },
  { min: 0, max: 23 },
  { min: 1, max: 31 },
  { min: 1, max: 12 },
  { min: 0, max: 7 },
];

export interface Cron {
  minutes: Set<number>;
  hours: Set<number>;
  days: Set<number>;
  months: Set<number>;
  weekdays: Set<number>;
  /** Whether day-of-month and day-of-week were restricted (not `*`). */
  dayRestricted: boolean;
  weekdayRestricted: boolean;
}

function parseField(text: string, f: Field, what: string): Set<number> {
  const out = new Set<number>();
  for (const part of text.split(",")) {
    const m = /^(\*|(\d+)(?:-(\d+))?)(?:\/(\d+))?$/.exec(part);
    if (!m) throw new Error(`cron ${what}: cannot read ${JSON.stringify(part)}`);
    const step = m[4] === undefined ? 1 : Number(m[4]);
    let lo = f.min;
    let hi = f.max;
    if (m[1] !== "*") {
      lo = Number(m[2]);
      hi = m[3] === undefined ? (m[4] === undefined ? lo : f.max) : Number(m[3]);
    }
    if (lo < f.min || hi > f.max || lo > hi || step < 1)
      throw new Error(`cron ${what}: ${JSON.stringify(part)} is outside ${f.min}-${f.max}`);
    for (let v = lo; v <= hi; v += step) out.add(v);
  }
  return out;
}

/** Parses five cron fields; throws with what is wrong. */
export function parseCron(expr: string): Cron {
  const parts = expr.trim().split(/\s+/);
  if (parts.length !== 5) throw new Error(`cron needs five fields, got ${parts.length}`);
  const names = ["minute", "hour", "day of month", "month", "day of week"];
  const [minutes, hours, days, months, weekdays] = parts.map((p, i) => parseField(p, FIELDS[i]!, names[i]!));
  if (weekdays!.has(7)) weekdays!.add(0);
  return {
    minutes: minutes!,
    hours: hours!,
    days: days!,
    months: months!,
    weekdays: weekdays!,
    dayRestricted: parts[2] !== "*",
    weekdayRestricted: parts[4] !== "*",
  };
}

function dayMatches(c: Cron, d: Date): boolean {
  const dom = c.days.has(d.getUTCDate());
  const dow = c.weekdays.has(d.getUTCDay());
  if (c.dayRestricted && c.weekdayRestricted) return dom || dow;
  return dom && dow;
}

const MINUTE = 60_000;
const DAY = 24 * 60 * MINUTE;
/** Searches at most this far (a year and a day: every valid expression matches within it). */
const HORIZON = 367 * DAY;

function matchesMinute(c: Cron, t: number): boolean {
  const d = new Date(t);
  return (
    c.months.has(d.getUTCMonth() + 1) &&
    dayMatches(c, d) &&
    c.hours.has(d.getUTCHours()) &&
    c.minutes.has(d.getUTCMinutes())
  );
}

/** The first match strictly after `after` (unix ms), or undefined (e.g. 31 February). */
export function nextCron(c: Cron, after: number): number | undefined {
  let t = Math.floor(after / MINUTE) * MINUTE + MINUTE;
  const end = after + HORIZON;
  while (t <= end) {
    const d = new Date(t);
    if (!c.months.has(d.getUTCMonth() + 1) || !dayMatches(c, d)) {
      t = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() + 1);
      continue;
    }
    if (!c.hours.has(d.getUTCHours())) {
      t = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate(), d.getUTCHours() + 1);
      continue;
    }
    if (c.minutes.has(d.getUTCMinutes())) return t;
    t += MINUTE;
  }
  return undefined;
}

/** The latest match at or before `at` (unix ms) and not before `notBefore`, or undefined. */
export function previousCron(c: Cron, at: number, notBefore: number): number | undefined {
  let t = Math.floor(at / MINUTE) * MINUTE;
  const end = Math.max(notBefore, at - HORIZON);
  while (t >= end) {
    const d = new Date(t);
    if (!c.months.has(d.getUTCMonth() + 1) || !dayMatches(c, d)) {
      t = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()) - MINUTE;
      continue;
    }
    if (!c.hours.has(d.getUTCHours())) {
      t = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate(), d.getUTCHours()) - MINUTE;
      continue;
    }
    if (matchesMinute(c, t)) return t;
    t -= MINUTE;
  }
  return undefined;
}
