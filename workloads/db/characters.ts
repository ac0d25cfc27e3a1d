// Character persistence for the map server (the char server owns creation and deletion): load a
// character when it enters a map, save its state on logout and periodically. Saves are
// batched into one statement and guarded by `updated_at` so an older snapshot never
// overwrites a newer one (a map handed over between pods may flush late).
import type pg from "pg";

export interface CharacterState {
  id: string;
  accountId: string;
  name: string;
  class: number;
  baseLevel: number;
  jobLevel: number;
  baseExp: string;
  jobExp: string;
  zeny: string;
  hp: number;
  maxHp: number;
  sp: number;
  maxSp: number;
  map: string;
  x: number;
  y: number;
  saveMap: string;
  saveX: number;
  saveY: number;
  online: boolean;
}

/** What the map server changes during play. */
export interface CharacterSnapshot {
  id: string;
  baseLevel: number;
  jobLevel: number;
  baseExp: string | number;
  jobExp: string | number;
  zeny: string | number;
  hp: number;
  sp: number;
  map: string;
  x: number;
  y: number;
  online: boolean;
  /** When the snapshot was taken (ms since the epoch); older than the stored one: skipped. */
  at: number;
}

/**
 * One row of `characters` (migrations.ts) as node-postgres returns it: bigint columns arrive as
 * strings. A query selects only the columns it needs: its rows are CharacterRowOf<its column list>.
 */
export interface CharacterRow {
  id: string;
  account_id: string;
  slot: number;
  name: string;
  class: number;
  base_level: number;
  job_level: number;
  base_exp: string;
  job_exp: string;
  zeny: string;
  str: number;
  agi: number;
  vit: number;
  int: number;
  dex: number;
  luk: number;
  hp: number;
  max_hp: number;
  sp: number;
  max_sp: number;
  hair: number;
  hair_color: number;
  last_map: string;
  last_x: number;
  last_y: number;
  save_map: string;
  save_x: number;
  save_y: number;
  online: boolean;
  created_at: Date;
  updated_at: Date;
}

/** The six base stats, named as the table and the RO packets name them. */
export type CharacterStats = Pick<CharacterRow, "str" | "agi" | "vit" | "int" | "dex" | "luk">;

/** The column names in a list like "id, name, zeny", as a SELECT or RETURNING clause has them. */
type ColumnNames<S extends string> = S extends `${infer Head}, ${infer Rest}` ? Head | ColumnNames<Rest> : S;

/**
 * The row a query returns for the column list `S` (a string constant): one list names the columns
 * for both the SQL and the type. A misspelt column gets no field, so reading it is a type error.
 */
export type CharacterRowOf<S extends string> = Pick<
  CharacterRow,
  Extract<ColumnNames<S>, keyof CharacterRow>
>;

const LOAD_COLUMNS =
  "id, account_id, name, class, base_level, job_level, base_exp, job_exp, zeny, hp, max_hp, sp, max_sp, last_map, last_x, last_y, save_map, save_x, save_y, online";

export async function loadCharacter(pool: pg.Pool, id: string): Promise<CharacterState | undefined> {
  const { rows } = await pool.query<CharacterRowOf<typeof LOAD_COLUMNS>>(
    `SELECT ${LOAD_COLUMNS} FROM characters WHERE id = $1`,
    [id],
  );
  const r = rows[0];
  if (!r) return undefined;
  return {
    id: String(r.id),
    accountId: String(r.account_id),
    name: r.name,
    class: r.class,
    baseLevel: r.base_level,
    jobLevel: r.job_level,
    baseExp: String(r.base_exp),
    jobExp: String(r.job_exp),
    zeny: String(r.zeny),
    hp: r.hp,
    maxHp: r.max_hp,
    sp: r.sp,
    maxSp: r.max_sp,
    map: r.last_map,
    x: r.last_x,
    y: r.last_y,
    saveMap: r.save_map,
    saveX: r.save_x,
    saveY: r.save_y,
    online: r.online,
  };
}

/** Saves many snapshots in one statement; returns the ids actually written (newer than stored). */
export async function saveCharacters(pool: pg.Pool, snapshots: CharacterSnapshot[]): Promise<string[]> {
  if (snapshots.length === 0) return [];
  const { rows } = await pool.query<{ id: string }>(
    `UPDATE characters AS c SET
        base_level = s.base_level, job_level = s.job_level, base_exp = s.base_exp, job_exp = s.job_exp,
        zeny = s.zeny, hp = s.hp, sp = s.sp, last_map = s.map, last_x = s.x, last_y = s.y,
        online = s.online, updated_at = s.at
       FROM jsonb_to_recordset($1::jsonb) AS s(
         id bigint, base_level int, job_level int, base_exp bigint, job_exp bigint, zeny bigint,
         hp int, sp int, map text, x int, y int, online boolean, at timestamptz)
      WHERE c.id = s.id AND c.updated_at <= s.at
      RETURNING c.id`,
    [
      JSON.stringify(
        snapshots.map((s) => ({
          id: s.id,
          base_level: s.baseLevel,
          job_level: s.jobLevel,
          base_exp: String(s.baseExp),
          job_exp: String(s.jobExp),
          zeny: String(s.zeny),
          hp: s.hp,
          sp: s.sp,
          map: s.map,
          x: s.x,
          y: s.y,
          online: s.online,
          at: new Date(s.at).toISOString(),
        })),
      ),
    ],
  );
  return rows.map((r) => String(r.id));
}
