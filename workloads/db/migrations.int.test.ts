// Migrations against real PostgreSQL: many replicas starting at once apply each migration once.
import { describe, expect, inject, it } from "vitest";
import { requireStoreAccess } from "../../platform/stores/access.ts";
import { freshDatabase } from "../../testkit/auth.ts";
import { loadCharacter, saveCharacters } from "./characters.ts";
import { MIGRATIONS, migrate } from "./migrations.ts";
import { createPool, isUniqueViolation } from "./pool.ts";

const env = inject("localEnv");

describe("migrations", () => {
  it("are applied once when replicas start together, and are idempotent after", async () => {
    const url = await freshDatabase(env.databaseUrl!, "migrate");
    const pools = Array.from({ length: 5 }, () =>
      createPool(requireStoreAccess("postgres", url), { max: 2 }),
    );
    try {
      const results = await Promise.all(pools.map((p) => migrate(p)));
      const applied = results.flatMap((r) => r.applied).sort((a, b) => a - b);
      expect(applied).toEqual(MIGRATIONS.map((m) => m.id));
      const latest = Math.max(...MIGRATIONS.map((m) => m.id));
      for (const r of results) expect(r.current).toBe(latest);
      expect(await migrate(pools[0]!)).toEqual({ applied: [], current: latest });
      const { rows } = await pools[0]!.query("SELECT count(*)::int AS n FROM schema_migrations");
      expect(rows[0].n).toBe(MIGRATIONS.length);
      // The unique indexes the servers rely on exist and ignore case.
      await pools[0]!.query("INSERT INTO accounts (username, password_hash) VALUES ('Someone', 'x')");
      const dup = await pools[0]!
        .query("INSERT INTO accounts (username, password_hash) VALUES ('SOMEONE', 'x')")
        .catch((e) => e);
      expect(isUniqueViolation(dup, "accounts_username_lower_key")).toBe(true);
    } finally {
      await Promise.all(pools.map((p) => p.end()));
    }
  });

  it("roll back a failing migration and report which one", async () => {
    const url = await freshDatabase(env.databaseUrl!, "migrate_bad");
    const pool = createPool(requireStoreAccess("postgres", url));
    try {
      const bad = [
        ...MIGRATIONS,
        { id: 999, name: "broken", sql: "CREATE TABLE ok_part (id int); SELECT nonsense FROM nowhere" },
      ];
      await expect(migrate(pool, undefined, bad)).rejects.toThrow(/migration 999 \(broken\) failed/);
      const { rows } = await pool.query(
        "SELECT to_regclass('ok_part') AS t, (SELECT max(id) FROM schema_migrations) AS m",
      );
      expect(rows[0]).toEqual({ t: null, m: MIGRATIONS.length });
    } finally {
      await pool.end();
    }
  });
});

describe("character persistence", () => {
  it("loads a character and saves snapshots, never letting an older one win", async () => {
    const url = await freshDatabase(env.databaseUrl!, "persist");
    const pool = createPool(requireStoreAccess("postgres", url));
    try {
      await migrate(pool);
      const acct = await pool.query(
        "INSERT INTO accounts (username, password_hash) VALUES ('mapper', 'x') RETURNING id",
      );
      const ch = await pool.query(
        "INSERT INTO characters (account_id, slot, name) VALUES ($1, 0, 'Walker'), ($1, 1, 'Runner') RETURNING id",
        [acct.rows[0].id],
      );
      const [walker, runner] = ch.rows.map((r) => String(r.id)) as [string, string];
      const loaded = await loadCharacter(pool, walker);
      expect(loaded).toMatchObject({
        name: "Walker",
        map: "prontera",
        baseLevel: 1,
        zeny: "0",
        online: false,
      });
      const base = {
        baseLevel: 2,
        jobLevel: 1,
        baseExp: 10,
        jobExp: 0,
        zeny: "9007199254740993",
        hp: 30,
        sp: 5,
        online: true,
      };
      const now = Date.now() + 1000;
      const written = await saveCharacters(pool, [
        { ...base, id: walker, map: "prt_fild08", x: 10, y: 20, at: now },
        { ...base, id: runner, map: "payon", x: 1, y: 2, at: now },
      ]);
      expect(written.sort()).toEqual([walker, runner].sort());
      // A late flush of an older snapshot (say, from the map's previous owner) is skipped.
      expect(
        await saveCharacters(pool, [{ ...base, id: walker, map: "izlude", x: 5, y: 5, at: now - 60_000 }]),
      ).toEqual([]);
      expect(await loadCharacter(pool, walker)).toMatchObject({
        map: "prt_fild08",
        x: 10,
        y: 20,
        zeny: "9007199254740993",
        online: true,
      });
      expect(await loadCharacter(pool, "999999")).toBeUndefined();
    } finally {
      await pool.end();
    }
  });
});
