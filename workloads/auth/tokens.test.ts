// Tokens and keysets without any server: expiry on an injected clock, rotation, tampering,
// and the type separation between session and character tokens.
import { describe, expect, it } from "vitest";
import { checkCharacterName } from "../char-server/names.ts";
import { addressUnit } from "../login-server/lockout.ts";
import { HashLimiter, hashPassword, parseHash, verifyPassword } from "../login-server/password.ts";
import { addKey, Keyset, newKeysetDocument, publicKeyset, removeKey, staticKeys } from "./keyset.ts";
import { signCharacterToken, signSessionToken, verifyCharacterToken, verifySessionToken } from "./tokens.ts";

const character = {
  accountId: "7",
  characterId: "42",
  characterName: "Poring Slayer",
  map: "prt_fild08",
  sessionId: "s1",
};

describe("tokens", () => {
  it("round-trips a character token and expires it on the verifier's clock", async () => {
    const keys = staticKeys(await Keyset.parse(JSON.stringify(await newKeysetDocument("a"))));
    const now = Date.UTC(2026, 0, 1);
    const t = await signCharacterToken(keys, character, 60_000, now);
    expect(await verifyCharacterToken(keys, t.token, { now: now + 30_000 })).toMatchObject({
      ...character,
      kid: "a",
    });
    await expect(verifyCharacterToken(keys, t.token, { now: now + 120_000 })).rejects.toMatchObject({
      code: "expired",
    });
  });

  it("keeps old tokens valid after rotation and rejects them once their key is removed", async () => {
    const v1 = await newKeysetDocument("old");
    const keys = staticKeys(await Keyset.parse(JSON.stringify(v1)));
    const before = await signSessionToken(keys, { accountId: "1", sessionId: "s", username: "u" }, 60_000);
    const v2 = await addKey(v1, "new", { activate: true });
    keys.set(await Keyset.parse(JSON.stringify(v2)));
    const after = await signSessionToken(keys, { accountId: "1", sessionId: "s", username: "u" }, 60_000);
    expect((await verifySessionToken(keys, before.token)).kid).toBe("old");
    expect((await verifySessionToken(keys, after.token)).kid).toBe("new");
    keys.set(await Keyset.parse(JSON.stringify(removeKey(v2, "old"))));
    await expect(verifySessionToken(keys, before.token)).rejects.toMatchObject({ code: "unknown_key" });
    expect((await verifySessionToken(keys, after.token)).kid).toBe("new");
    expect(() => removeKey(v2, "new")).toThrow(/active/);
  });

  it("verifies with a public-only keyset, which cannot sign", async () => {
    const doc = await newKeysetDocument("k", "ES256");
    const signer = staticKeys(await Keyset.parse(JSON.stringify(doc), { requirePrivate: true }));
    const pub = JSON.stringify(publicKeyset(doc));
    expect(pub).not.toContain('"d"');
    const verifier = staticKeys(await Keyset.parse(pub));
    const t = await signCharacterToken(signer, character, 60_000);
    expect((await verifyCharacterToken(verifier, t.token)).characterId).toBe("42");
    await expect(signCharacterToken(verifier, character, 60_000)).rejects.toThrow(/cannot sign/);
    await expect(Keyset.parse(pub, { requirePrivate: true })).rejects.toThrow(/private/);
  });

  it("rejects a token signed by a key outside the keyset, even with a known kid", async () => {
    const mine = staticKeys(await Keyset.parse(JSON.stringify(await newKeysetDocument("k"))));
    const theirs = staticKeys(await Keyset.parse(JSON.stringify(await newKeysetDocument("k"))));
    const forged = await signCharacterToken(theirs, character, 60_000);
    await expect(verifyCharacterToken(mine, forged.token)).rejects.toMatchObject({ code: "invalid" });
  });

  it("never accepts one kind of token as the other", async () => {
    const keys = staticKeys(await Keyset.parse(JSON.stringify(await newKeysetDocument("k"))));
    const s = await signSessionToken(keys, { accountId: "1", sessionId: "s", username: "u" }, 60_000);
    const c = await signCharacterToken(keys, character, 60_000);
    await expect(verifyCharacterToken(keys, s.token)).rejects.toMatchObject({ code: "invalid" });
    await expect(verifySessionToken(keys, c.token)).rejects.toMatchObject({ code: "invalid" });
  });

  it("refuses malformed keysets with a clear message", async () => {
    await expect(Keyset.parse("{")).rejects.toThrow(/not valid JSON/);
    await expect(Keyset.parse(JSON.stringify({ active: "x", keys: [] }))).rejects.toThrow(/at least one key/);
    const doc = await newKeysetDocument("a");
    await expect(Keyset.parse(JSON.stringify({ ...doc, active: "b" }))).rejects.toThrow(/active kid b/);
    await expect(
      Keyset.parse(JSON.stringify({ active: "a", keys: [doc.keys[0], doc.keys[0]] })),
    ).rejects.toThrow(/twice/);
  });
});

describe("passwords", () => {
  const cheap = { logN: 10, r: 8, p: 1 };
  it("hashes with a salt and verifies", async () => {
    const h1 = await hashPassword("pässword!", cheap);
    const h2 = await hashPassword("pässword!", cheap);
    expect(h1).not.toBe(h2);
    expect(parseHash(h1)?.params).toEqual(cheap);
    expect(await verifyPassword("pässword!", h1, cheap)).toEqual({ ok: true, needsRehash: false });
    // NFC normalisation: the decomposed form is the same password.
    expect((await verifyPassword("pa\u0308ssword!", h1, cheap)).ok).toBe(true);
    expect((await verifyPassword("password!", h1, cheap)).ok).toBe(false);
    expect(await verifyPassword("pässword!", h1, { ...cheap, logN: 11 })).toEqual({
      ok: true,
      needsRehash: true,
    });
    expect((await verifyPassword("x", "$scrypt$garbage", cheap)).ok).toBe(false);
  });

  it("bounds concurrent hashes and refuses past the queue", async () => {
    const limiter = new HashLimiter(1, 1);
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const first = limiter.run(() => gate);
    const second = limiter.run(async () => "second");
    expect(await limiter.run(async () => "third")).toBeUndefined();
    release();
    await first;
    expect(await second).toEqual({ value: "second" });
    expect(limiter.pending).toBe(0);
  });
});

describe("character names", () => {
  it("accepts ordinary names and refuses bad or reserved ones", () => {
    for (const ok of ["Poring", "Sir Lancelot", "dark_knight-9", "Abcd"])
      expect(checkCharacterName(ok), ok).toBeUndefined();
    for (const bad of [
      "abc",
      "x".repeat(24),
      "9lives",
      " Lead",
      "Trail ",
      "two  gaps",
      "semi;colon",
      "émile",
      "admin",
      "GM Bob",
    ]) {
      expect(checkCharacterName(bad), bad).toBeDefined();
    }
  });
});

describe("address units for login limits", () => {
  it("keeps IPv4 addresses and folds IPv6 ones to their /64", () => {
    expect(addressUnit("203.0.113.9")).toBe("203.0.113.9");
    expect(addressUnit("2001:db8:1:2:aaaa:bbbb:cccc:dddd")).toBe("2001:db8:1:2::/64");
    expect(addressUnit("2001:0db8:0001:0002::1")).toBe("2001:db8:1:2::/64");
    expect(addressUnit("2001:db8::1")).toBe("2001:db8:0:0::/64");
    expect(addressUnit("::1")).toBe("0:0:0:0::/64");
    expect(addressUnit("fe80::1%eth0")).toBe("fe80:0:0:0::/64");
  });
});
