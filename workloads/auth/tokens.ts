// The two tokens of the login flow, both compact JWS signed with the keyset's active key:
// - the session token (login server → client → char server): account and session id;
// - the character token (char server → client → gateway): bound to account, character and map.
// Each has its own `typ` header and audience so one can never be used as the other. Expiry is
// short; revocation is the session record in Redis (see sessions.ts), not the token.
import { sign as cryptoSign, type KeyObject, randomBytes } from "node:crypto";
import { type CryptoKey, errors, type JWTPayload, jwtVerify } from "jose";
import type { KeySource, LoadedKey, SigningAlg } from "./keyset.ts";

export const ISSUER = "hybridp2p";
export const SESSION_TYP = "hp2p-session+jwt";
export const SESSION_AUD = "hybridp2p:session";
export const CHARACTER_TYP = "hp2p-character+jwt";
export const CHARACTER_AUD = "hybridp2p:gateway";

export type Clock = () => number;

export type TokenErrorCode = "expired" | "invalid" | "unknown_key" | "mismatch" | "revoked";

export class TokenError extends Error {
  readonly code: TokenErrorCode;
  constructor(code: TokenErrorCode, message: string) {
    super(message);
    this.name = "TokenError";
    this.code = code;
  }
}

export function newSessionId(): string {
  return randomBytes(18).toString("base64url");
}

export interface SessionClaims {
  accountId: string;
  sessionId: string;
  username: string;
  expiresAt: number;
  kid: string;
}

export interface CharacterClaims {
  accountId: string;
  characterId: string;
  characterName: string;
  map: string;
  sessionId: string;
  expiresAt: number;
  kid: string;
}

/**
 * Signs a compact JWS with node:crypto, synchronously (an Ed25519 signature takes tens of
 * microseconds). WebCrypto, which jose uses, runs each signature on libuv's thread pool, where
 * on the login server it would queue behind password hashes. Verification stays with jose.
 */
function signJws(
  key: { alg: SigningAlg; kid: string; signingKey: KeyObject },
  typ: string,
  payload: JWTPayload,
): string {
  const enc = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");
  const input = `${enc({ alg: key.alg, kid: key.kid, typ })}.${enc(payload)}`;
  const sig =
    key.alg === "EdDSA"
      ? cryptoSign(null, Buffer.from(input), key.signingKey)
      : cryptoSign("sha256", Buffer.from(input), { key: key.signingKey, dsaEncoding: "ieee-p1363" });
  return `${input}.${sig.toString("base64url")}`;
}

async function sign(
  keys: KeySource,
  typ: string,
  aud: string,
  claims: JWTPayload,
  ttlMs: number,
  now: number,
) {
  const key = keys.current().active;
  const iat = Math.floor(now / 1000);
  const exp = Math.floor((now + ttlMs) / 1000);
  const token = signJws(key, typ, {
    ...claims,
    iss: ISSUER,
    aud,
    iat,
    nbf: iat - 5,
    exp,
    jti: randomBytes(9).toString("base64url"),
  });
  return { token, expiresAt: exp * 1000, kid: key.kid };
}

export function signSessionToken(
  keys: KeySource,
  s: { accountId: string; sessionId: string; username: string },
  ttlMs: number,
  now = Date.now(),
) {
  return sign(
    keys,
    SESSION_TYP,
    SESSION_AUD,
    { sub: s.accountId, sid: s.sessionId, name: s.username },
    ttlMs,
    now,
  );
}

export function signCharacterToken(
  keys: KeySource,
  c: { accountId: string; characterId: string; characterName: string; map: string; sessionId: string },
  ttlMs: number,
  now = Date.now(),
) {
  return sign(
    keys,
    CHARACTER_TYP,
    CHARACTER_AUD,
    { sub: c.accountId, chr: c.characterId, cname: c.characterName, map: c.map, sid: c.sessionId },
    ttlMs,
    now,
  );
}

async function verify(keys: KeySource, token: string, typ: string, aud: string, now: number) {
  if (typeof token !== "string" || token.length > 4096) throw new TokenError("invalid", "malformed token");
  let usedKid = "";
  const lookup = async (header: { kid?: string; alg?: string }): Promise<CryptoKey> => {
    const kid = header.kid ?? "";
    let key: LoadedKey | undefined = keys.current().keys.get(kid);
    if (!key && keys.refresh) {
      await keys.refresh();
      key = keys.current().keys.get(kid);
    }
    if (!key) throw new TokenError("unknown_key", "token signed with a key that is not in the keyset");
    if (header.alg !== key.alg) throw new TokenError("invalid", "token algorithm does not match its key");
    usedKid = kid;
    return key.publicKey;
  };
  try {
    const { payload } = await jwtVerify(token, lookup, {
      issuer: ISSUER,
      audience: aud,
      typ,
      algorithms: ["EdDSA", "ES256"],
      currentDate: new Date(now),
      clockTolerance: 5,
      requiredClaims: ["sub", "exp", "iat", "sid"],
    });
    return { payload, kid: usedKid };
  } catch (err) {
    if (err instanceof TokenError) throw err;
    if (err instanceof errors.JWTExpired) throw new TokenError("expired", "token expired");
    throw new TokenError("invalid", "token rejected");
  }
}

function str(p: JWTPayload, k: string): string {
  const v = p[k];
  if (typeof v !== "string" || v === "") throw new TokenError("invalid", `token lacks ${k}`);
  return v;
}

export async function verifySessionToken(
  keys: KeySource,
  token: string,
  now = Date.now(),
): Promise<SessionClaims> {
  const { payload, kid } = await verify(keys, token, SESSION_TYP, SESSION_AUD, now);
  return {
    accountId: str(payload, "sub"),
    sessionId: str(payload, "sid"),
    username: str(payload, "name"),
    expiresAt: (payload.exp ?? 0) * 1000,
    kid,
  };
}

/**
 * What the gateway calls on a client's connect: checks the signature against the keyset (any
 * kid in it), the type, audience, issuer and expiry, and, when given, that the token is bound
 * to the expected character and map. Throws TokenError; never returns unverified claims.
 */
export async function verifyCharacterToken(
  keys: KeySource,
  token: string,
  opts: { now?: number; expect?: { accountId?: string; characterId?: string; map?: string } } = {},
): Promise<CharacterClaims> {
  const { payload, kid } = await verify(keys, token, CHARACTER_TYP, CHARACTER_AUD, opts.now ?? Date.now());
  const claims: CharacterClaims = {
    accountId: str(payload, "sub"),
    characterId: str(payload, "chr"),
    characterName: str(payload, "cname"),
    map: str(payload, "map"),
    sessionId: str(payload, "sid"),
    expiresAt: (payload.exp ?? 0) * 1000,
    kid,
  };
  const e = opts.expect ?? {};
  if (
    (e.accountId !== undefined && e.accountId !== claims.accountId) ||
    (e.characterId !== undefined && e.characterId !== claims.characterId) ||
    (e.map !== undefined && e.map !== claims.map)
  ) {
    throw new TokenError("mismatch", "token is bound to another account, character or map");
  }
  return claims;
}
