// Where map state lives outside the process:
// - Redis (DragonflyDB's protocol): the hot state of each map's sessions (gateway, character,
//   position, hp, progress), saved every second and on join, so the next owner of a map (after a
//   crash or a handover) restores the players where they were. Writes are fenced: a script
//   refuses a write whose fence (the ownership key's create revision) is older than the newest
//   one seen for the map, so a deposed owner can never overwrite its successor.
//     <prefix>map:<region>:<zone>:<map>:sessions   hash session -> HotSession JSON
//     <prefix>map:<region>:<zone>:<map>:fence      newest fence
// - PostgreSQL: characters, persisted on leave, periodically and on shutdown (the schema is
//   workloads/db's; no extra columns are needed).
import type { Redis } from "ioredis";
import type pg from "pg";
import type { CharacterRowOf } from "../db/characters.ts";
import type { PlayerInfo } from "./sim/world.ts";

export interface HotSession extends PlayerInfo {
  x: number;
  y: number;
  /** The entity id under the owner that saved it; the next owner keeps it when it can. */
  entity?: number;
}

/** KEYS: fence key, sessions key. ARGV: fence, ttl ms, mode ("set"|"del"), then session/value pairs or sessions. */
const FENCED_WRITE = `
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local mine = tonumber(ARGV[1])
if mine < cur then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if ARGV[3] == 'set' then
  for i = 4, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
elseif ARGV[3] == 'del' then
  for i = 4, #ARGV do redis.call('HDEL', KEYS[2], ARGV[i]) end
end
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
`;

export class HotStore {
  private readonly redis: Redis;
  private readonly prefix: string;
  private readonly ttlMs: number;

  constructor(redis: Redis, prefix = "hp2p:", ttlMs = 3_600_000) {
    this.redis = redis;
    this.prefix = prefix;
    this.ttlMs = ttlMs;
  }

  private keys(region: string, zone: string, map: string): [string, string] {
    const base = `${this.prefix}map:${region}:${zone}:${map}:`;
    return [`${base}fence`, `${base}sessions`];
  }

  /** Claims the map's hot state for `fence`; false when a newer owner already wrote. */
  async claim(region: string, zone: string, map: string, fence: string): Promise<boolean> {
    return this.fencedWrite(region, zone, map, fence, "claim", []);
  }

  async save(
    region: string,
    zone: string,
    map: string,
    fence: string,
    sessions: HotSession[],
  ): Promise<boolean> {
    if (sessions.length === 0) return this.claim(region, zone, map, fence);
    const args = sessions.flatMap((s) => [s.session, JSON.stringify(s)]);
    return this.fencedWrite(region, zone, map, fence, "set", args);
  }

  async remove(
    region: string,
    zone: string,
    map: string,
    fence: string,
    sessions: string[],
  ): Promise<boolean> {
    return this.fencedWrite(region, zone, map, fence, "del", sessions);
  }

  /** Runs FENCED_WRITE (mode "claim" only claims); false when a newer fence is stored. */
  private async fencedWrite(
    region: string,
    zone: string,
    map: string,
    fence: string,
    mode: "claim" | "set" | "del",
    args: string[],
  ): Promise<boolean> {
    const keys = this.keys(region, zone, map);
    return (await this.redis.eval(FENCED_WRITE, 2, ...keys, fence, this.ttlMs, mode, ...args)) === 1;
  }

  async load(region: string, zone: string, map: string): Promise<HotSession[]> {
    const raw = await this.redis.hgetall(this.keys(region, zone, map)[1]);
    const out: HotSession[] = [];
    for (const v of Object.values(raw)) {
      try {
        out.push(JSON.parse(v) as HotSession);
      } catch {
        // A malformed entry is skipped: that client rejoins.
      }
    }
    return out.sort((p, q) => (p.session < q.session ? -1 : p.session > q.session ? 1 : 0));
  }
}

/** A character as the simulation takes it in on a join. */
export interface LoadedCharacter {
  name: string;
  hp: number;
  maxHp: number;
  atk: number;
  exp: number;
  zeny: number;
  map: string;
  x: number;
  y: number;
}

export interface CharacterSave {
  characterId: string;
  map: string;
  x: number;
  y: number;
  hp: number;
  exp: number;
  zeny: number;
  online: boolean;
}

const LOAD_COLUMNS = "name, hp, max_hp, str, base_level, base_exp, zeny, last_map, last_x, last_y";

export class CharacterStore {
  private readonly pool: pg.Pool;

  constructor(pool: pg.Pool) {
    this.pool = pool;
  }

  async load(characterId: string): Promise<LoadedCharacter | undefined> {
    const r = await this.pool.query<CharacterRowOf<typeof LOAD_COLUMNS>>(
      `SELECT ${LOAD_COLUMNS} FROM characters WHERE id = $1`,
      [characterId],
    );
    const row = r.rows[0];
    if (!row) return undefined;
    return {
      name: row.name,
      hp: Number(row.hp),
      maxHp: Number(row.max_hp),
      // rAthena-like base attack from strength and level.
      atk: 5 + 2 * Number(row.str) + Number(row.base_level),
      exp: Number(row.base_exp),
      zeny: Number(row.zeny),
      map: row.last_map,
      x: Number(row.last_x),
      y: Number(row.last_y),
    };
  }

  /** One statement for any number of characters. */
  async save(rows: CharacterSave[]): Promise<void> {
    if (rows.length === 0) return;
    await this.pool.query(
      `UPDATE characters c SET last_map = u.map, last_x = u.x, last_y = u.y, hp = LEAST(u.hp, c.max_hp),
              base_exp = u.exp, zeny = u.zeny, online = u.online, updated_at = now()
         FROM unnest($1::bigint[], $2::text[], $3::int[], $4::int[], $5::int[], $6::bigint[], $7::bigint[], $8::boolean[])
              AS u(id, map, x, y, hp, exp, zeny, online)
        WHERE c.id = u.id`,
      [
        rows.map((r) => r.characterId),
        rows.map((r) => r.map),
        rows.map((r) => Math.floor(r.x)),
        rows.map((r) => Math.floor(r.y)),
        rows.map((r) => Math.max(1, Math.round(r.hp))),
        rows.map((r) => Math.round(r.exp)),
        rows.map((r) => Math.round(r.zeny)),
        rows.map((r) => r.online),
      ],
    );
  }
}
