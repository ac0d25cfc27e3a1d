// The char server against real PostgreSQL and Redis, behind a real login server: list, create,
// delete and select; names unique regardless of case under concurrent creation on two
// replicas; the character token the gateway verifies; key rotation without dropping sessions.
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import {
  call,
  capturingLogger,
  freshDatabase,
  keysetFile,
  testCharConfig,
  testLoginConfig,
  uniquePrefix,
} from "../../testkit/auth.ts";
import { AuthClient } from "../auth/client.ts";
import { GatewayAuth } from "../auth/gateway.ts";
import { addKey, FileKeySource, type KeysetDocument, publicKeyset, removeKey } from "../auth/keyset.ts";
import type { RunningService } from "../auth/service.ts";
import { TokenError, verifyCharacterToken } from "../auth/tokens.ts";
import { startLoginServer } from "../login-server/server.ts";
import type { CharConfig } from "./config.ts";
import { startCharServer } from "./server.ts";

const env = inject("localEnv");

let login: RunningService;
let c1: RunningService;
let c2: RunningService;
let cfg: CharConfig;
let keys: Awaited<ReturnType<typeof keysetFile>>;
const password = "pa55word-for-tests";

beforeAll(async () => {
  const databaseUrl = await freshDatabase(env.databaseUrl!, "chars");
  keys = await keysetFile("k1");
  const shared = {
    databaseUrl,
    redisUrl: env.redisUrl!,
    redisPrefix: uniquePrefix("chars"),
    keysetFile: keys.path,
  };
  cfg = testCharConfig(shared);
  login = await startLoginServer(testLoginConfig(shared), { log: capturingLogger("login").log });
  [c1, c2] = await Promise.all([
    startCharServer(cfg, { log: capturingLogger("c1").log }),
    startCharServer(cfg, { log: capturingLogger("c2").log }),
  ]);
});

afterAll(async () => {
  await Promise.all([login?.close(), c1?.close(), c2?.close()]);
});

let n = 0;
async function newAccount(): Promise<{ token: string; accountId: string }> {
  const username = `player_${process.pid}_${n++}`;
  expect((await call(login.url, "POST", "/v1/accounts", { body: { username, password } })).status).toBe(201);
  const r = await call(login.url, "POST", "/v1/sessions", { body: { username, password } });
  expect(r.status).toBe(200);
  return { token: r.body.token, accountId: r.body.accountId };
}

/** Every replica re-reads the keyset file now (in a cluster: the mounted Secret's update). */
async function reloadKeys(doc: KeysetDocument) {
  keys.write(doc);
  for (const s of [login, c1, c2]) await (s.deps.keys as FileKeySource).reload();
}

describe("char server", () => {
  it("requires a live session", async () => {
    expect((await call(c1.url, "GET", "/v1/characters")).status).toBe(401);
    expect((await call(c1.url, "GET", "/v1/characters", { token: "not.a.token" })).status).toBe(401);
  });

  it("creates, lists, selects and deletes characters", async () => {
    const { token, accountId } = await newAccount();
    const created = await call(c1.url, "POST", "/v1/characters", {
      token,
      body: { name: "Swordie", hair: 3 },
    });
    expect(created.status).toBe(201);
    expect(created.body.character).toMatchObject({
      name: "Swordie",
      slot: 0,
      hair: 3,
      map: "prontera",
      baseLevel: 1,
    });
    const second = await call(c2.url, "POST", "/v1/characters", {
      token,
      body: { name: "Magey Mage", slot: 4 },
    });
    expect(second.status).toBe(201);
    const third = await call(c2.url, "POST", "/v1/characters", { token, body: { name: "Archie" } });
    expect(third.body.character.slot).toBe(1);

    const list = await call(c2.url, "GET", "/v1/characters", { token });
    expect(list.status).toBe(200);
    expect(list.body.characters.map((c: { name: string }) => c.name)).toEqual([
      "Swordie",
      "Archie",
      "Magey Mage",
    ]);
    expect(list.body.maxCharacters).toBe(9);

    const id = created.body.character.id as string;
    const sel = await call(c1.url, "POST", `/v1/characters/${id}/select`, { token });
    expect(sel.status).toBe(200);
    expect(sel.body.gateway).toBe("gateway.test.svc:7000");
    // What the gateway does with the token: verify it against the (public) keyset.
    const claims = await verifyCharacterToken(c2.deps.keys, sel.body.token, {
      expect: { characterId: id, map: "prontera" },
    });
    expect(claims).toMatchObject({
      accountId,
      characterId: id,
      characterName: "Swordie",
      map: "prontera",
      kid: "k1",
    });

    expect((await call(c1.url, "DELETE", `/v1/characters/${id}`, { token })).status).toBe(204);
    expect((await call(c1.url, "DELETE", `/v1/characters/${id}`, { token })).status).toBe(404);
    expect((await call(c2.url, "POST", `/v1/characters/${id}/select`, { token })).status).toBe(404);
    const after = await call(c1.url, "GET", "/v1/characters", { token });
    expect(after.body.characters).toHaveLength(2);
    // A deleted name is free again.
    expect((await call(c1.url, "POST", "/v1/characters", { token, body: { name: "swordie" } })).status).toBe(
      201,
    );
  });

  it("keeps characters to their account", async () => {
    const owner = await newAccount();
    const other = await newAccount();
    const c = await call(c1.url, "POST", "/v1/characters", {
      token: owner.token,
      body: { name: "Private Pat" },
    });
    const id = c.body.character.id as string;
    expect((await call(c1.url, "POST", `/v1/characters/${id}/select`, { token: other.token })).status).toBe(
      404,
    );
    expect((await call(c1.url, "DELETE", `/v1/characters/${id}`, { token: other.token })).status).toBe(404);
    expect((await call(c1.url, "GET", "/v1/characters", { token: other.token })).body.characters).toEqual([]);
    expect((await call(c1.url, "DELETE", "/v1/characters/abc", { token: owner.token })).status).toBe(404);
  });

  it("applies the name rules and the slot limit", async () => {
    const { token } = await newAccount();
    for (const bad of [
      "abc",
      "1Leading",
      "two  spaces",
      "Admin",
      "GM Bob",
      "trailing ",
      "semi;colon",
      "x".repeat(24),
    ]) {
      const r = await call(c1.url, "POST", "/v1/characters", { token, body: { name: bad } });
      expect(r.status, bad).toBe(400);
      expect(r.body.error.code, bad).toBe("invalid_name");
    }
    expect(
      (await call(c1.url, "POST", "/v1/characters", { token, body: { name: "Okay", slot: 9 } })).status,
    ).toBe(400);
    expect(
      (await call(c1.url, "POST", "/v1/characters", { token, body: { name: "Okay", hair: 99 } })).status,
    ).toBe(400);
    for (let i = 0; i < 9; i++) {
      expect(
        (await call(c1.url, "POST", "/v1/characters", { token, body: { name: `Alt Number ${i}` } })).status,
      ).toBe(201);
    }
    const full = await call(c2.url, "POST", "/v1/characters", { token, body: { name: "One Too Many" } });
    expect(full.status).toBe(409);
    expect(full.body.error.code).toBe("no_free_slot");
  });

  it("lets exactly one of many concurrent creations of one name win, across replicas and cases", async () => {
    const accounts = await Promise.all(Array.from({ length: 8 }, () => newAccount()));
    const results = await Promise.all(
      accounts.map((acc, i) =>
        call(i % 2 ? c1.url : c2.url, "POST", "/v1/characters", {
          token: acc.token,
          body: { name: i % 3 ? "Highlander" : "HIGHLANDER" },
        }),
      ),
    );
    const statuses = results.map((r) => r.status).sort();
    expect(statuses.filter((s) => s === 201)).toHaveLength(1);
    expect(statuses.filter((s) => s === 409)).toHaveLength(7);
    for (const r of results.filter((x) => x.status === 409)) expect(r.body.error.code).toBe("name_taken");
    const { rows } = await c1.deps.pool.query(
      "SELECT count(*)::int AS n FROM characters WHERE lower(name) = 'highlander'",
    );
    expect(rows[0].n).toBe(1);
  });

  it("fills distinct slots when one account creates several characters at once", async () => {
    const { token } = await newAccount();
    const results = await Promise.all(
      ["Racer One", "Racer Two", "Racer Three", "Racer Four"].map((name, i) =>
        call(i % 2 ? c1.url : c2.url, "POST", "/v1/characters", { token, body: { name } }),
      ),
    );
    expect(results.map((r) => r.status)).toEqual([201, 201, 201, 201]);
    expect(results.map((r) => r.body.character.slot).sort()).toEqual([0, 1, 2, 3]);
  });

  it("rejects a tampered, re-typed or revoked token", async () => {
    const { token } = await newAccount();
    const c = await call(c1.url, "POST", "/v1/characters", { token, body: { name: "Tamper Tom" } });
    const sel = await call(c1.url, "POST", `/v1/characters/${c.body.character.id}/select`, { token });
    const charToken = sel.body.token as string;
    const [h, p, s] = charToken.split(".") as [string, string, string];

    // Change the payload (another map) and keep the signature: the gateway must refuse it.
    const payload = JSON.parse(Buffer.from(p, "base64url").toString());
    const forged = `${h}.${Buffer.from(JSON.stringify({ ...payload, map: "gef_fild10" })).toString("base64url")}.${s}`;
    await expect(verifyCharacterToken(c1.deps.keys, forged)).rejects.toMatchObject({ code: "invalid" });
    // Flip one bit of the signature.
    const sig = Buffer.from(s, "base64url");
    sig[0] = sig[0]! ^ 1;
    await expect(
      verifyCharacterToken(c1.deps.keys, `${h}.${p}.${sig.toString("base64url")}`),
    ).rejects.toBeInstanceOf(TokenError);
    // alg "none" and a garbage token.
    const none = `${Buffer.from(JSON.stringify({ alg: "none", typ: "hp2p-character+jwt" })).toString("base64url")}.${p}.`;
    await expect(verifyCharacterToken(c1.deps.keys, none)).rejects.toBeInstanceOf(TokenError);
    await expect(verifyCharacterToken(c1.deps.keys, "garbage")).rejects.toBeInstanceOf(TokenError);
    // Bound to one character and map.
    await expect(
      verifyCharacterToken(c1.deps.keys, charToken, { expect: { map: "payon" } }),
    ).rejects.toMatchObject({
      code: "mismatch",
    });
    // A session token is not a character token, and the other way round.
    await expect(verifyCharacterToken(c1.deps.keys, token)).rejects.toBeInstanceOf(TokenError);
    expect((await call(c1.url, "GET", "/v1/characters", { token: charToken })).status).toBe(401);
    // Logout revokes the session on every server.
    expect((await call(login.url, "DELETE", "/v1/session", { token })).status).toBe(204);
    const gone = await call(c2.url, "GET", "/v1/characters", { token });
    expect(gone.status).toBe(401);
    expect(gone.body.error.code).toBe("session_revoked");
  });

  it("rotates keys without dropping sessions, and drops them when their key is removed", async () => {
    const before = await newAccount(); // signed with k1
    // Step 1: add k2, inactive, everywhere. Step 2: activate it.
    const withK2 = await addKey(keys.doc, "k2");
    await reloadKeys(withK2);
    await reloadKeys({ ...withK2, active: "k2" });
    const after = await newAccount(); // signed with k2
    expect(JSON.parse(Buffer.from(after.token.split(".")[0]!, "base64url").toString()).kid).toBe("k2");
    // The old session token still works, and so do new ones.
    expect((await call(c1.url, "GET", "/v1/characters", { token: before.token })).status).toBe(200);
    expect((await call(c2.url, "GET", "/v1/characters", { token: after.token })).status).toBe(200);
    const ch = await call(c2.url, "POST", "/v1/characters", {
      token: before.token,
      body: { name: "Rotated Rita" },
    });
    const sel = await call(c2.url, "POST", `/v1/characters/${ch.body.character.id}/select`, {
      token: before.token,
    });
    expect((await verifyCharacterToken(c1.deps.keys, sel.body.token)).kid).toBe("k2");

    // A gateway holding only the public half of the keyset verifies as well.
    const { writeFileSync } = await import("node:fs");
    const pubPath = `${keys.path}.public.json`;
    writeFileSync(pubPath, JSON.stringify(publicKeyset({ ...withK2, active: "k2" })));
    const gatewayKeys = await FileKeySource.open(pubPath, { pollMs: 0 });
    expect((await verifyCharacterToken(gatewayKeys, sel.body.token)).characterId).toBe(ch.body.character.id);

    // Step 3: retire k1. Tokens it signed are refused from then on.
    await reloadKeys(removeKey({ ...withK2, active: "k2" }, "k1"));
    const old = await call(c1.url, "GET", "/v1/characters", { token: before.token });
    expect(old.status).toBe(401);
    expect(old.body.error.code).toBe("invalid_token");
    expect((await call(c1.url, "GET", "/v1/characters", { token: after.token })).status).toBe(200);
    gatewayKeys.close();
  });

  it("keeps the last good keyset when the Secret holds garbage", async () => {
    const { token } = await newAccount();
    keys.write({ active: "nope", keys: [] });
    expect(await (c1.deps.keys as FileKeySource).reload()).toBe(false);
    expect((await call(c1.url, "GET", "/v1/characters", { token })).status).toBe(200);
  });

  it("lets a bot log in with the client, and the gateway admit it until it logs out", async () => {
    const bot = new AuthClient({ loginUrl: login.url, charUrl: c1.url });
    await bot.loginOrSignUp(`bot_${process.pid}`, password);
    const sel = await bot.enterAs("Bot Alpha");
    expect(sel.gateway).toBe("gateway.test.svc:7000");
    // Again: the same character, not a second one.
    const again = await bot.enterAs("bot alpha");
    expect(again.character.id).toBe(sel.character.id);
    expect(await bot.characters()).toHaveLength(1);

    const gateway = new GatewayAuth({ keys: c2.deps.keys, sessions: c2.deps.sessions });
    const claims = await gateway.verify(sel.token, { characterId: sel.character.id });
    expect(claims.map).toBe(sel.character.map);
    await bot.logout();
    await expect(gateway.verify(sel.token)).rejects.toMatchObject({ code: "revoked" });
    await expect(bot.characters()).rejects.toThrow(/not logged in/);
  });

  it("serves readiness and metrics", async () => {
    const ready = await call(`http://127.0.0.1:${c1.ops.healthPort}`, "GET", "/readyz");
    expect(ready.status).toBe(200);
    const metrics = await call(`http://127.0.0.1:${c1.ops.metricsPort}`, "GET", "/metrics");
    expect(metrics.body).toMatch(/hybridp2p_char_characters_created_total\{result="ok"/);
  });
});
