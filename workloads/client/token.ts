// Development tokens (`hybridctl token`): a character token signed with a keyset's active key,
// in exactly the form the char server issues (workloads/auth/tokens.ts), so the gateway verifies
// both the same way. For development and tests only: real clients log in and pick a character.
import { randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import { Keyset, type KeysetDocument, staticKeys } from "../auth/keyset.ts";
import { signCharacterToken } from "../auth/tokens.ts";

export interface DevTokenOptions {
  /** A keyset document with a private active key, or the path of its JSON file. */
  keyset: KeysetDocument | string;
  characterId: string;
  map: string;
  characterName?: string;
  accountId?: string;
  /** Default one hour. */
  ttlMs?: number;
}

const parsed = new WeakMap<KeysetDocument, Promise<Keyset>>();

async function keysetOf(k: KeysetDocument | string): Promise<Keyset> {
  if (typeof k === "string") return Keyset.parse(await readFile(k, "utf8"), { requirePrivate: true });
  let p = parsed.get(k);
  if (!p) {
    p = Keyset.parse(JSON.stringify(k), { requirePrivate: true });
    parsed.set(k, p);
  }
  return p;
}

export async function devToken(o: DevTokenOptions): Promise<string> {
  const keys = staticKeys(await keysetOf(o.keyset));
  const { token } = await signCharacterToken(
    keys,
    {
      accountId: o.accountId ?? `dev-${o.characterId}`,
      characterId: o.characterId,
      characterName: o.characterName ?? `dev${o.characterId}`.slice(0, 24),
      map: o.map,
      sessionId: `dev-${randomBytes(9).toString("base64url")}`,
    },
    o.ttlMs ?? 60 * 60_000,
  );
  return token;
}
