// The one schema for accounts and characters, shared by the login, char and map servers.
// Migrations are applied on start by whichever workload starts, idempotently: a session-level
// advisory lock serialises concurrent replicas, and each migration runs in its own transaction
// and is recorded in schema_migrations. Append new migrations; never edit an applied one.
import type pg from "pg";
import type { Logger } from "../../platform/log.ts";

export interface Migration {
  id: number;
  name: string;
  sql: string;
}

export const MIGRATIONS: Migration[] = [
  {
    id: 1,
    name: "accounts",
    sql: `
      CREATE TABLE accounts (
        id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        username      text NOT NULL,
        password_hash text NOT NULL,
        email         text,
        state         text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'banned')),
        created_at    timestamptz NOT NULL DEFAULT now(),
        last_login_at timestamptz,
        CONSTRAINT accounts_username_length CHECK (char_length(username) BETWEEN 4 AND 23)
      );
      -- Usernames are unique regardless of case.
      CREATE UNIQUE INDEX accounts_username_lower_key ON accounts (lower(username));
    `,
  },
  {
    id: 2,
    name: "characters",
    sql: `
      CREATE TABLE characters (
        id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        account_id bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
        slot       smallint NOT NULL CHECK (slot BETWEEN 0 AND 14),
        name       text NOT NULL CHECK (char_length(name) BETWEEN 4 AND 23),
        class      integer NOT NULL DEFAULT 0,
        base_level integer NOT NULL DEFAULT 1 CHECK (base_level >= 1),
        job_level  integer NOT NULL DEFAULT 1 CHECK (job_level >= 1),
        base_exp   bigint NOT NULL DEFAULT 0,
        job_exp    bigint NOT NULL DEFAULT 0,
        zeny       bigint NOT NULL DEFAULT 0 CHECK (zeny >= 0),
        str        smallint NOT NULL DEFAULT 1,
        agi        smallint NOT NULL DEFAULT 1,
        vit        smallint NOT NULL DEFAULT 1,
        int        smallint NOT NULL DEFAULT 1,
        dex        smallint NOT NULL DEFAULT 1,
        luk        smallint NOT NULL DEFAULT 1,
        hp         integer NOT NULL DEFAULT 40,
        max_hp     integer NOT NULL DEFAULT 40,
        sp         integer NOT NULL DEFAULT 11,
        max_sp     integer NOT NULL DEFAULT 11,
        hair       smallint NOT NULL DEFAULT 1,
        hair_color smallint NOT NULL DEFAULT 0,
        last_map   text NOT NULL DEFAULT 'prontera',
        last_x     integer NOT NULL DEFAULT 156,
        last_y     integer NOT NULL DEFAULT 191,
        save_map   text NOT NULL DEFAULT 'prontera',
        save_x     integer NOT NULL DEFAULT 156,
        save_y     integer NOT NULL DEFAULT 191,
        online     boolean NOT NULL DEFAULT false,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
      );
      -- Character names are unique across the world regardless of case: the database decides
      -- races between replicas, not the application.
      CREATE UNIQUE INDEX characters_name_lower_key ON characters (lower(name));
      CREATE UNIQUE INDEX characters_account_slot_key ON characters (account_id, slot);
    `,
  },
];

/** Any fixed 64-bit key, shared by every workload that migrates this schema. */
export const MIGRATION_LOCK_KEY = 0x68703270_00000001n; // "hp2p" + 1

export interface MigrateResult {
  applied: number[];
  current: number;
}

export async function migrate(
  pool: pg.Pool,
  log?: Logger,
  migrations: Migration[] = MIGRATIONS,
): Promise<MigrateResult> {
  const client = await pool.connect();
  try {
    await client.query("SELECT pg_advisory_lock($1)", [MIGRATION_LOCK_KEY.toString()]);
    try {
      await client.query(`
        CREATE TABLE IF NOT EXISTS schema_migrations (
          id         integer PRIMARY KEY,
          name       text NOT NULL,
          applied_at timestamptz NOT NULL DEFAULT now()
        )`);
      const done = new Set(
        (await client.query<{ id: number }>("SELECT id FROM schema_migrations")).rows.map((r) =>
          Number(r.id),
        ),
      );
      const applied: number[] = [];
      for (const m of [...migrations].sort((a, b) => a.id - b.id)) {
        if (done.has(m.id)) continue;
        await client.query("BEGIN");
        try {
          await client.query(m.sql);
          await client.query("INSERT INTO schema_migrations (id, name) VALUES ($1, $2)", [m.id, m.name]);
          await client.query("COMMIT");
        } catch (err) {
          await client.query("ROLLBACK");
          throw new Error(`migration ${m.id} (${m.name}) failed: ${(err as Error).message}`, { cause: err });
        }
        applied.push(m.id);
        log?.info("migration applied", { id: m.id, name: m.name });
      }
      const current = Math.max(0, ...done, ...applied);
      return { applied, current };
    } finally {
      await client.query("SELECT pg_advisory_unlock($1)", [MIGRATION_LOCK_KEY.toString()]);
    }
  } finally {
    client.release();
  }
}
