// The RO protocol's hand-offs between its three endpoints, in Redis so any replica of the login
// server, char server and gateway can take them (rAthena keeps them in the login and char
// servers' memory and passes them between its servers):
// - login ticket `<prefix>ro:login:<accountId>`: the login ids (login_id1/login_id2) the login
//   server handed the client in 0x0069 with its login session; the char server admits 0x0065
//   only with them, while the session lives. It stays for the session's lifetime, because a
//   client comes back to the char server after "back to character select".
// - map ticket `<prefix>ro:map:<accountId>`: after character select (0x0066), the character
//   and a character token (the same token the SDK path gets from the char server's select); the
//   gateway's map endpoint takes it (once) on 0x0436, checks character and login_id1 and admits
//   the client as it admits an SDK client with that token.
import { randomInt } from "node:crypto";
import type { Redis } from "ioredis";

export interface RoLoginTicket {
  accountId: string;
  username: string;
  sessionId: string;
  loginId1: number;
  loginId2: number;
  sex: number;
}

export interface RoMapTicket {
  accountId: string;
  characterId: string;
  loginId1: number;
  /** The character token (workloads/auth/tokens.ts) the gateway verifies. */
  token: string;
  /** The character's experience and zeny when selected (the map endpoint reports totals). */
  baseExp: string;
  zeny: string;
}

/** A random u32 that is not 0 (rAthena treats 0 as "no id"). */
export function newLoginId(): number {
  return randomInt(1, 0xffffffff);
}

/** RO carries account and character ids as u32: larger database ids cannot use it. */
export function roId(id: string): number | undefined {
  const n = Number(id);
  return Number.isSafeInteger(n) && n > 0 && n <= 0xffffffff ? n : undefined;
}

export class RoTickets {
  private readonly redis: Redis;
  private readonly prefix: string;

  constructor(redis: Redis, prefix: string) {
    this.redis = redis;
    this.prefix = prefix;
  }

  private loginKey(accountId: string | number): string {
    return `${this.prefix}ro:login:${accountId}`;
  }

  private mapKey(accountId: string | number): string {
    return `${this.prefix}ro:map:${accountId}`;
  }

  async putLogin(t: RoLoginTicket, ttlMs: number): Promise<void> {
    await this.redis.set(this.loginKey(t.accountId), JSON.stringify(t), "PX", ttlMs);
  }

  async getLogin(accountId: number): Promise<RoLoginTicket | undefined> {
    const raw = await this.redis.get(this.loginKey(accountId));
    return raw ? (JSON.parse(raw) as RoLoginTicket) : undefined;
  }

  async dropLogin(accountId: number): Promise<void> {
    await this.redis.del(this.loginKey(accountId));
  }

  async putMap(t: RoMapTicket, ttlMs: number): Promise<void> {
    await this.redis.set(this.mapKey(t.accountId), JSON.stringify(t), "PX", ttlMs);
  }

  /** Takes the map ticket (it works once). */
  async takeMap(accountId: number): Promise<RoMapTicket | undefined> {
    const res = await this.redis.multi().get(this.mapKey(accountId)).del(this.mapKey(accountId)).exec();
    const raw = res?.[0]?.[1] as string | null | undefined;
    return raw ? (JSON.parse(raw) as RoMapTicket) : undefined;
  }
}

/** host:port as a client should be told it (the ip field wants IPv4; see resolveAdvertised). */
export interface RoAddress {
  host: string;
  port: number;
}

export function parseRoAddress(s: string): RoAddress | undefined {
  const m = /^([A-Za-z0-9.-]+):(\d{1,5})$/.exec(s.trim());
  if (!m) return undefined;
  const port = Number(m[2]);
  return port >= 1 && port <= 65535 ? { host: m[1]!, port } : undefined;
}

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** The IPv4 address to put in 0x0069 and 0x0071 for a host: itself, or looked up once. */
export async function resolveAdvertised(host: string): Promise<string> {
  if (IPV4.test(host)) return host;
  const { lookup } = await import("node:dns/promises");
  try {
    return (await lookup(host, { family: 4 })).address;
  } catch {
    // Clients configured with the host connect there and ignore the ip field.
    return "127.0.0.1";
  }
}
