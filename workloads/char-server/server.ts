// The char server: the logged-in account's characters (Bearer session token from the login
// server, checked against the keyset and the session record in Redis).
//
//   GET    /v1/characters             → 200 {characters: [...], maxCharacters}
//   POST   /v1/characters             {name, slot?, hair?, hairColor?} → 201 {character}
//   DELETE /v1/characters/:id         → 204
//   POST   /v1/characters/:id/select  → 200 {gateway, token, expiresAt, character}
//
// Select returns the gateway's address and a short-lived character token bound to the account,
// the character and its map; the gateway checks it with verifyCharacterToken (auth/tokens.ts).
import { Type } from "@sinclair/typebox";
import { Counter } from "prom-client";
import { HttpError, type RequestContext, type Route, readBody, sendJson } from "../../platform/http.ts";
import { createLogger, type Logger } from "../../platform/log.ts";
import type { KeySource } from "../auth/keyset.ts";
import { type RunningService, type ServiceDeps, startService } from "../auth/service.ts";
import { authenticate } from "../auth/sessions.ts";
import { signCharacterToken } from "../auth/tokens.ts";
import type { CharacterRowOf, CharacterStats } from "../db/characters.ts";
import { isUniqueViolation } from "../db/pool.ts";
import type { CharConfig } from "./config.ts";
import { checkCharacterName } from "./names.ts";
import { startRoChar } from "./ro.ts";

const CreateBody = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 64, description: "is required" }),
    slot: Type.Optional(
      Type.Integer({ minimum: 0, maximum: 14, description: "must be an integer from 0 to 14" }),
    ),
    hair: Type.Optional(
      Type.Integer({ minimum: 1, maximum: 29, description: "must be an integer from 1 to 29" }),
    ),
    hairColor: Type.Optional(
      Type.Integer({ minimum: 0, maximum: 8, description: "must be an integer from 0 to 8" }),
    ),
  },
  { additionalProperties: false },
);

const COLUMNS =
  "id, slot, name, class, base_level, job_level, zeny, hp, max_hp, sp, max_sp, str, agi, vit, int, dex, luk, hair, hair_color, last_map, last_x, last_y";
type Row = CharacterRowOf<typeof COLUMNS>;

export interface CharacterView {
  id: string;
  slot: number;
  name: string;
  class: number;
  baseLevel: number;
  jobLevel: number;
  zeny: string;
  hp: number;
  maxHp: number;
  sp: number;
  maxSp: number;
  stats: CharacterStats;
  hair: number;
  hairColor: number;
  map: string;
  x: number;
  y: number;
}

function view(r: Row): CharacterView {
  return {
    id: String(r.id),
    slot: r.slot,
    name: r.name,
    class: r.class,
    baseLevel: r.base_level,
    jobLevel: r.job_level,
    zeny: String(r.zeny),
    hp: r.hp,
    maxHp: r.max_hp,
    sp: r.sp,
    maxSp: r.max_sp,
    stats: { str: r.str, agi: r.agi, vit: r.vit, int: r.int, dex: r.dex, luk: r.luk },
    hair: r.hair,
    hairColor: r.hair_color,
    map: r.last_map,
    x: r.last_x,
    y: r.last_y,
  };
}

function characterId(raw: string | undefined): string {
  if (!raw || !/^[1-9]\d{0,17}$/.test(raw)) throw new HttpError(404, "not_found", "no such character");
  return raw;
}

/** What every character route shares: built once per server, then handed to each handler. */
interface CharApp {
  cfg: CharConfig;
  deps: ServiceDeps;
  metrics: ReturnType<typeof charMetrics>;
}

function charMetrics(deps: ServiceDeps) {
  return {
    created: new Counter({
      name: "hybridp2p_char_characters_created_total",
      help: "Character creations by result (ok, name_taken, invalid_name, no_free_slot)",
      labelNames: ["result"],
      registers: [deps.registry],
    }),
    deleted: new Counter({
      name: "hybridp2p_char_characters_deleted_total",
      help: "Characters deleted",
      registers: [deps.registry],
    }),
    selected: new Counter({
      name: "hybridp2p_char_selections_total",
      help: "Characters selected (character tokens issued)",
      registers: [deps.registry],
    }),
  };
}

export function charRoutes(cfg: CharConfig, deps: ServiceDeps): Route[] {
  const app: CharApp = { cfg, deps, metrics: charMetrics(deps) };
  return [
    { method: "GET", path: "/v1/characters", handler: (rc) => listCharacters(app, rc) },
    { method: "POST", path: "/v1/characters", handler: (rc) => createCharacter(app, rc) },
    { method: "DELETE", path: "/v1/characters/:id", handler: (rc) => deleteCharacter(app, rc) },
    { method: "POST", path: "/v1/characters/:id/select", handler: (rc) => selectCharacter(app, rc) },
  ];
}

async function listCharacters({ cfg, deps }: CharApp, { req, res }: RequestContext): Promise<void> {
  const s = await authenticate(req, deps.keys, deps.sessions);
  const { rows } = await deps.pool.query<Row>(
    `SELECT ${COLUMNS} FROM characters WHERE account_id = $1 ORDER BY slot`,
    [s.accountId],
  );
  sendJson(res, 200, { characters: rows.map(view), maxCharacters: cfg.maxCharacters });
}

// Into the slot asked for, or the lowest free one (generate_series over the account's slots):
// one statement either way, so the unique indexes on (account_id, slot) and lower(name) settle
// races between replicas.
const INSERT =
  "INSERT INTO characters (account_id, slot, name, hair, hair_color, last_map, last_x, last_y, save_map, save_x, save_y)";
const INSERT_INTO_SLOT = `${INSERT} VALUES ($1, $8, $2, $3, $4, $5, $6, $7, $5, $6, $7) RETURNING ${COLUMNS}`;
const INSERT_INTO_FREE_SLOT = `${INSERT}
  SELECT $1, s, $2, $3, $4, $5, $6, $7, $5, $6, $7 FROM generate_series(0, $8::int - 1) AS s
  WHERE s NOT IN (SELECT slot FROM characters WHERE account_id = $1) ORDER BY s LIMIT 1
  RETURNING ${COLUMNS}`;

async function createCharacter(
  { cfg, deps, metrics }: CharApp,
  { req, res, log }: RequestContext,
): Promise<void> {
  const s = await authenticate(req, deps.keys, deps.sessions);
  const body = await readBody(req, CreateBody, cfg.maxBodyBytes);
  const problem = checkCharacterName(body.name);
  if (problem) {
    metrics.created.inc({ result: "invalid_name" });
    throw new HttpError(400, "invalid_name", `name ${problem}`);
  }
  if (body.slot !== undefined && body.slot >= cfg.maxCharacters) {
    throw new HttpError(400, "invalid_request", `slot must be below ${cfg.maxCharacters}`);
  }
  const sp = cfg.startPoint;
  const params = [s.accountId, body.name, body.hair ?? 1, body.hairColor ?? 0, sp.map, sp.x, sp.y];
  const sql = body.slot !== undefined ? INSERT_INTO_SLOT : INSERT_INTO_FREE_SLOT;
  let row: Row | undefined;
  for (let attempt = 1; ; attempt++) {
    try {
      const r = await deps.pool.query<Row>(sql, [...params, body.slot ?? cfg.maxCharacters]);
      row = r.rows[0];
      break;
    } catch (err) {
      if (isUniqueViolation(err, "characters_name_lower_key")) {
        metrics.created.inc({ result: "name_taken" });
        throw new HttpError(409, "name_taken", "that character name is taken");
      }
      if (!isUniqueViolation(err, "characters_account_slot_key")) throw err;
      // Two creations for one account raced for the same free slot: look again.
      if (body.slot === undefined && attempt < 3) continue;
      metrics.created.inc({ result: "slot_taken" });
      throw new HttpError(409, "slot_taken", "that slot is in use");
    }
  }
  if (!row) {
    metrics.created.inc({ result: "no_free_slot" });
    throw new HttpError(409, "no_free_slot", `an account has at most ${cfg.maxCharacters} characters`);
  }
  metrics.created.inc({ result: "ok" });
  log.info("character created", { accountId: s.accountId, characterId: row.id, name: row.name });
  sendJson(res, 201, { character: view(row) });
}

async function deleteCharacter(
  { deps, metrics }: CharApp,
  { req, res, params, log }: RequestContext,
): Promise<void> {
  const s = await authenticate(req, deps.keys, deps.sessions);
  const id = characterId(params.id);
  const r = await deps.pool.query("DELETE FROM characters WHERE id = $1 AND account_id = $2", [
    id,
    s.accountId,
  ]);
  if (r.rowCount !== 1) throw new HttpError(404, "not_found", "no such character");
  metrics.deleted.inc();
  log.info("character deleted", { accountId: s.accountId, characterId: id });
  res.writeHead(204).end();
}

async function selectCharacter(
  { cfg, deps, metrics }: CharApp,
  { req, res, params, log }: RequestContext,
): Promise<void> {
  const s = await authenticate(req, deps.keys, deps.sessions);
  const id = characterId(params.id);
  const { rows } = await deps.pool.query<Row>(
    `SELECT ${COLUMNS} FROM characters WHERE id = $1 AND account_id = $2`,
    [id, s.accountId],
  );
  const row = rows[0];
  if (!row) throw new HttpError(404, "not_found", "no such character");
  const signed = await signCharacterToken(
    deps.keys,
    {
      accountId: s.accountId,
      characterId: String(row.id),
      characterName: row.name,
      map: row.last_map,
      sessionId: s.sessionId,
    },
    cfg.characterTokenTtlMs,
  );
  metrics.selected.inc();
  log.info("character selected", {
    accountId: s.accountId,
    characterId: id,
    map: row.last_map,
    kid: signed.kid,
  });
  sendJson(res, 200, {
    gateway: cfg.gatewayAddress,
    token: signed.token,
    expiresAt: new Date(signed.expiresAt).toISOString(),
    character: view(row),
  });
}

export async function startCharServer(
  cfg: CharConfig,
  opts: { log?: Logger; keys?: KeySource } = {},
): Promise<RunningService> {
  const log =
    opts.log ??
    createLogger("char-server", { level: cfg.runtime.logLevel, fields: { pod: cfg.runtime.podName } });
  const svc = await startService(
    cfg,
    { log, keys: opts.keys, metricsPrefix: "hybridp2p_char", requirePrivateKey: true },
    (deps) => charRoutes(cfg, deps),
    cfg.ro ? (deps) => startRoChar(cfg, deps, log) : undefined,
  );
  return svc;
}
