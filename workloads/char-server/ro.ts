// The char server's RO endpoint (PACKETVER 20101124):
//   0x0065 enter (account id, login ids)  -> the bare u32 account id, then 0x006b or 0x006c
//   0x0067 create (name, six stats, slot, hair) -> 0x006d (the new character) or 0x006e
//   0x0066 select (slot)                  -> 0x0071 (character id, "map.gat", map endpoint)
//   0x0187 keep-alive                     -> nothing
//
// The same characters, name rules and database constraints as the HTTP API; a client is
// admitted with the login ids the login server's RO endpoint gave it, while its login session
// lives. Select signs the same character token the HTTP select returns and leaves it, with the
// character, as a map ticket for the gateway's RO map endpoint.
import type { Logger } from "../../platform/log.ts";
import type { CharacterBlock, ClientPacket, PacketOf } from "../../platform/protocol/ro/codec.ts";
import { type RoConnection, type RoEndpoint, startRoEndpoint } from "../../platform/protocol/ro/endpoint.ts";
import { type RoLoginTicket, RoTickets, resolveAdvertised, roId } from "../auth/ro-tickets.ts";
import type { ServiceDeps } from "../auth/service.ts";
import { signCharacterToken } from "../auth/tokens.ts";
import type { CharacterRowOf, CharacterStats } from "../db/characters.ts";
import { isUniqueViolation } from "../db/pool.ts";
import type { CharConfig } from "./config.ts";
import { checkCharacterName } from "./names.ts";

/** 0x006e reasons (rAthena): name taken, symbols not allowed, slot not usable, denied. */
export const RO_CREATE_ERROR = { nameTaken: 0x00, badName: 0x02, slot: 0x03, denied: 0xff } as const;

const COLUMNS =
  "id, slot, name, class, base_level, job_level, base_exp, job_exp, zeny, hp, max_hp, sp, max_sp, str, agi, vit, int, dex, luk, hair, hair_color, last_map";
type Row = CharacterRowOf<typeof COLUMNS>;

const clampU32 = (v: string | number) => Math.max(0, Math.min(0xffffffff, Math.floor(Number(v) || 0)));
const clampU16 = (v: number) => Math.max(0, Math.min(0xffff, Math.floor(v)));

/** One character as the 132-byte block of 0x006b and 0x006d. */
export function characterBlock(r: Row): CharacterBlock {
  return {
    charId: clampU32(r.id),
    baseExp: clampU32(r.base_exp),
    zeny: clampU32(r.zeny),
    jobExp: clampU32(r.job_exp),
    jobLevel: clampU32(r.job_level),
    opt1: 0,
    opt2: 0,
    option: 0,
    karma: 0,
    manner: 0,
    statusPoint: 0,
    hp: clampU32(r.hp),
    maxHp: clampU32(r.max_hp),
    sp: clampU16(Math.min(r.sp, 0x7fff)),
    maxSp: clampU16(Math.min(r.max_sp, 0x7fff)),
    speed: 150,
    job: clampU16(r.class),
    hair: clampU16(r.hair),
    weapon: 0,
    baseLevel: clampU16(r.base_level),
    skillPoint: 0,
    headBottom: 0,
    shield: 0,
    headTop: 0,
    headMid: 0,
    hairColor: clampU16(r.hair_color),
    clothesColor: 0,
    name: r.name,
    str: r.str,
    agi: r.agi,
    vit: r.vit,
    int: r.int,
    dex: r.dex,
    luk: r.luk,
    slot: r.slot,
    renamed: 1,
    lastMap: `${r.last_map}.gat`.slice(0, 15),
    deleteDate: 0,
  };
}

/**
 * rAthena's rule for clients before 2015-10-01: six stats from 1 to 9 summing to 30, with
 * str+int, agi+luk and vit+dex each 10.
 */
export function statsValid(p: CharacterStats): boolean {
  const all = [p.str, p.agi, p.vit, p.int, p.dex, p.luk];
  return (
    all.every((v) => v >= 1 && v <= 9) && p.str + p.int === 10 && p.agi + p.luk === 10 && p.vit + p.dex === 10
  );
}

interface State {
  accountId?: number;
  ticket?: RoLoginTicket;
  entering: boolean;
}

export async function startRoChar(cfg: CharConfig, deps: ServiceDeps, log: Logger): Promise<RoEndpoint> {
  const ro = cfg.ro!;
  const tickets = new RoTickets(deps.redis, cfg.redisPrefix);
  const ip = await resolveAdvertised(ro.mapAddress.host);

  const list = async (accountId: string) =>
    (
      await deps.pool.query<Row>(`SELECT ${COLUMNS} FROM characters WHERE account_id = $1 ORDER BY slot`, [
        accountId,
      ])
    ).rows;

  /** The login session behind the ticket still lives (a logout or ban ends it). */
  const live = async (t: RoLoginTicket) => {
    const rec = await deps.sessions.get(t.sessionId);
    return rec !== undefined && rec.accountId === t.accountId;
  };

  const enter = async (c: RoConnection<State>, p: PacketOf<"charEnter">) => {
    if (c.state.ticket || c.state.entering) return;
    c.state.entering = true;
    // rAthena answers 0x0065 with the bare account id first, whatever follows.
    const raw = Buffer.alloc(4);
    raw.writeUInt32LE(p.accountId >>> 0);
    c.sendRaw(raw);
    const t = await tickets.getLogin(p.accountId);
    if (!t || t.loginId1 !== p.loginId1 || t.loginId2 !== p.loginId2 || !(await live(t))) {
      log.info("RO char enter refused", { accountId: p.accountId, address: c.remoteAddress });
      c.send({ type: "charRefused", error: 0 });
      c.end("char enter refused");
      return;
    }
    c.state.ticket = t;
    c.state.accountId = p.accountId;
    const rows = await list(t.accountId);
    c.send({
      type: "charList",
      maxSlots: cfg.maxCharacters,
      availableSlots: cfg.maxCharacters,
      premiumSlots: cfg.maxCharacters,
      items: rows.map(characterBlock),
    });
    log.info("RO char list", { accountId: t.accountId, characters: rows.length });
  };

  const create = async (c: RoConnection<State>, p: PacketOf<"charCreate">) => {
    const t = c.state.ticket!;
    const fail = (error: number, why: string) => {
      log.info("RO character not created", { accountId: t.accountId, why });
      c.send({ type: "charCreateFailed", error });
    };
    if (checkCharacterName(p.name)) return fail(RO_CREATE_ERROR.badName, "invalid name");
    if (p.slot >= cfg.maxCharacters) return fail(RO_CREATE_ERROR.slot, "slot out of range");
    if (!statsValid(p)) return fail(RO_CREATE_ERROR.denied, "invalid stats");
    if (p.hairStyle < 1 || p.hairStyle > 29 || p.hairColor > 8)
      return fail(RO_CREATE_ERROR.denied, "invalid hair");
    const sp = cfg.startPoint;
    try {
      const { rows } = await deps.pool.query<Row>(
        `INSERT INTO characters (account_id, slot, name, hair, hair_color, str, agi, vit, int, dex, luk,
                                 last_map, last_x, last_y, save_map, save_x, save_y)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $12, $13, $14)
         RETURNING ${COLUMNS}`,
        [
          t.accountId,
          p.slot,
          p.name,
          p.hairStyle,
          p.hairColor,
          p.str,
          p.agi,
          p.vit,
          p.int,
          p.dex,
          p.luk,
          sp.map,
          sp.x,
          sp.y,
        ],
      );
      const row = rows[0]!;
      log.info("character created", {
        accountId: t.accountId,
        characterId: row.id,
        name: row.name,
        via: "ro",
      });
      c.send({ type: "charCreated", ...characterBlock(row) });
    } catch (err) {
      if (isUniqueViolation(err, "characters_name_lower_key"))
        return fail(RO_CREATE_ERROR.nameTaken, "name taken");
      if (isUniqueViolation(err, "characters_account_slot_key"))
        return fail(RO_CREATE_ERROR.slot, "slot taken");
      throw err;
    }
  };

  const select = async (c: RoConnection<State>, p: PacketOf<"charSelect">) => {
    const t = c.state.ticket!;
    const row = (await list(t.accountId)).find((r) => r.slot === p.slot);
    const charId = row ? roId(String(row.id)) : undefined;
    if (!row || charId === undefined || !(await live(t))) {
      c.send({ type: "charRefused", error: 0 });
      return;
    }
    const signed = await signCharacterToken(
      deps.keys,
      {
        accountId: t.accountId,
        characterId: String(row.id),
        characterName: row.name,
        map: row.last_map,
        sessionId: t.sessionId,
      },
      cfg.characterTokenTtlMs,
    );
    await tickets.putMap(
      {
        accountId: t.accountId,
        characterId: String(row.id),
        loginId1: t.loginId1,
        token: signed.token,
        baseExp: String(row.base_exp),
        zeny: String(row.zeny),
      },
      cfg.characterTokenTtlMs,
    );
    log.info("character selected", {
      accountId: t.accountId,
      characterId: row.id,
      map: row.last_map,
      via: "ro",
    });
    c.send({
      type: "mapServer",
      charId,
      mapName: `${row.last_map}.gat`.slice(0, 15),
      ip,
      port: ro.mapAddress.port,
    });
  };

  return startRoEndpoint<State>({
    name: "ro-char",
    port: ro.port,
    host: ro.host,
    log,
    handler: {
      open: () => ({ entering: false }),
      packet: (c, p: ClientPacket) => {
        if (p.type === "charEnter") return enter(c, p);
        if (!c.state.ticket) return; // nothing before a successful enter
        if (p.type === "charCreate") return create(c, p);
        if (p.type === "charSelect") return select(c, p);
      },
    },
  });
}
