// RO clients play: the independent RO test client (testkit/ro/client.ts) logs in on the login
// server's RO endpoint, creates and selects a character on the char server's, enters the map
// through the gateway's RO endpoint, walks, sees an SDK bot walk, chats both ways, kills a mob
// for experience, goes back to character select and quits, all against the real login and char
// servers, gateway and map server on the local NATS, PostgreSQL and Redis.
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { call } from "../../testkit/auth.ts";
import { startTestMesh } from "../../testkit/client.ts";
import {
  createCharacters,
  readCharacter,
  servicesFrom,
  startTestServer,
  unique,
} from "../../testkit/map-server/harness.ts";
import { enc, RoTestConnection, RoTestPlayer } from "../../testkit/ro/client.ts";
import { type RoStack, startRoStack } from "../../testkit/ro/stack.ts";
import { GameClient } from "../client/client.ts";
import { P2PClient } from "../client/p2p.ts";
import { openMap } from "../map-server/sim/maps.ts";
import { ENTITY_ID_BASE } from "./ro.ts";

const svc = servicesFrom(inject("localEnv"));
const map = "prt_fild08";
const host = "127.0.0.1";
const password = "ro-plain-pass";

let stack: RoStack;
// A poring a few cells east of the start point.
const mapDef = (name: string) =>
  openMap(name, 48, 48, { mobs: [{ type: 0, count: 1, at: [[25, 20]] }], spawn: [20, 20] });
let bot: GameClient;
let botEntity = 0;
const botName = unique("Sdk").slice(0, 14);

beforeAll(async () => {
  stack = await startRoStack({
    svc,
    map,
    start: { x: 20, y: 20 },
    // A poring a few cells east of the start point.
    mapDef: (name) =>
      openMap(name, 48, 48, { mobs: [{ type: 0, count: 1, at: [[25, 20]] }], spawn: [20, 20] }),
  });
  const [botChar] = await createCharacters(stack.db, [{ name: botName, map, x: 18, y: 22, hp: 400 }]);
  bot = await GameClient.connect({ url: stack.gw.url, token: await stack.gw.token(botChar!, map, botName) });
  botEntity = bot.entity;
});

afterAll(async () => {
  await bot?.close().catch(() => undefined);
  await stack?.close();
});

async function until<T>(
  what: string,
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 15_000,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe("RO login endpoint", () => {
  it("refuses a wrong password with 0x006a and an unknown name the same way", async () => {
    const user = unique("ro_").slice(0, 20);
    await stack.signUp(user, password);
    const p = new RoTestPlayer(host);
    expect(await p.login(stack.ports.login, user, "wrong-password")).toMatchObject({
      type: "loginRefused",
      error: 1,
    });
    expect(await p.login(stack.ports.login, "nobody_here", password)).toMatchObject({
      type: "loginRefused",
      error: 1,
    });
  });

  it("shares the HTTP login's lockout: five failures lock the account on both paths", async () => {
    const user = unique("ro_").slice(0, 20);
    await stack.signUp(user, password);
    const p = new RoTestPlayer(host);
    for (let k = 0; k < 5; k++)
      expect(await p.login(stack.ports.login, user, "wrong-password")).toMatchObject({ error: 1 });
    const locked = await p.login(stack.ports.login, user, password);
    expect(locked).toMatchObject({ type: "loginRefused", error: 6 });
    expect(locked.blockDate).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/);
    const http = await call(stack.login.url, "POST", "/v1/sessions", { body: { username: user, password } });
    expect(http.status).toBe(429);
  });

  it("refuses the char server without the login ids", async () => {
    const p = new RoTestPlayer(host);
    p.accountId = 12345;
    p.loginId1 = 1;
    p.loginId2 = 2;
    const { echo, list } = await p.charEnter(stack.ports.char);
    expect(echo).toBe(12345);
    expect(list).toMatchObject({ type: "charRefused" });
  });
});

describe("an RO player", () => {
  const user = unique("ro_").slice(0, 20);
  const charName = unique("Ro").slice(0, 12);
  const p = new RoTestPlayer(host);
  let charId = 0;
  let roEntityForBot = 0;

  it("logs in and is sent to the char server's externally reachable port", async () => {
    await stack.signUp(user, password);
    const ok = await p.login(stack.ports.login, user, password);
    expect(ok.type).toBe("loginOk");
    expect(ok.items).toHaveLength(1);
    expect(ok.items[0]).toMatchObject({ ip: "127.0.0.1", port: stack.ports.char, name: "hybrid-test" });
  });

  it("creates a character and selects it: 0x0071 names the map and the map endpoint's port", async () => {
    const { conn, echo, list } = await p.charEnter(stack.ports.char);
    expect(echo).toBe(p.accountId);
    expect(list).toMatchObject({ type: "charList", maxSlots: 9, items: [] });
    // Stats outside rAthena's rule are refused.
    conn.send(enc.charCreate(charName, [9, 9, 9, 9, 9, 9], 0, 1, 2));
    expect(await conn.next("charCreateFailed")).toMatchObject({ error: 0xff });
    conn.send(enc.charCreate(charName, [5, 5, 5, 5, 5, 5], 0, 1, 2));
    const created = await conn.next("charCreated");
    expect(created).toMatchObject({ name: charName, slot: 0, str: 5, hp: 40, lastMap: `${map}.gat` });
    charId = created.charId;
    // The same name again: taken.
    conn.send(enc.charCreate(charName.toUpperCase(), [5, 5, 5, 5, 5, 5], 1, 1, 2));
    expect(await conn.next("charCreateFailed")).toMatchObject({ error: 0 });
    conn.send(enc.charSelect(0));
    const sel = await conn.next("mapServer");
    expect(sel).toMatchObject({ charId, mapName: `${map}.gat`, ip: "127.0.0.1", port: stack.ports.map });
    conn.close();
  });

  it("enters the map (0x0283, 0x02eb at its position) and the SDK bot sees it appear", async () => {
    const acc = await p.enterMap(stack.ports.map, charId);
    expect(acc).toMatchObject({ type: "mapAccept", pos: { x: 20, y: 20 } });
    const m = p.map!;
    expect(m.received[0]).toMatchObject({ type: "accountId", accountId: p.accountId });
    await m.next("param", (x) => x.param === 5);
    // The RO client sees the bot standing (0x07f9) under the bot's entity id.
    await m.next("actorStand", (x) => x.id === ENTITY_ID_BASE + botEntity && x.objectType === 0);
    const e = await until("the bot to see the RO player", () =>
      [...bot.world.values()].find((x) => x.name === charName),
    );
    roEntityForBot = e.id;
    // Tick sync and name requests.
    m.send(enc.tickSync(1234));
    await m.next("tickReply");
    m.send(enc.nameRequest(ENTITY_ID_BASE + botEntity));
    expect(await m.next("nameReply")).toMatchObject({ id: ENTITY_ID_BASE + botEntity, name: botName });
    m.send(enc.nameRequest(p.accountId));
    expect(await m.next("nameReply", (x) => x.id === p.accountId)).toMatchObject({ name: charName });
  });

  it("walks (0x035f -> 0x0087) and the SDK bot sees it move", async () => {
    const m = p.map!;
    m.send(enc.walk(22, 18));
    expect(await m.next("ownMove")).toMatchObject({ move: { x0: 20, y0: 20, x1: 22, y1: 18 } });
    await until("the bot to see the RO player arrive", () => {
      const e = bot.world.get(roEntityForBot);
      return e && Math.floor(e.x) === 22 && Math.floor(e.y) === 18;
    });
    // Behind the wall: the server walks RO's cell path around it, as the client itself would.
    m.send(enc.walk(13, 17));
    expect(await m.next("ownMove")).toMatchObject({ move: { x0: 22, y0: 18, x1: 13, y1: 17 } });
    await until(
      "the bot to see the RO player arrive behind the wall",
      () => {
        const e = bot.world.get(roEntityForBot);
        return e && Math.floor(e.x) === 13 && Math.floor(e.y) === 17;
      },
      20_000,
    );
    p.x = 13;
    p.y = 17;
    // A walk into the map's edge is refused: the client is stopped where it stands (0x0088).
    m.send(enc.walk(0, 0));
    expect(await m.next("moveStop", (x) => x.id === p.accountId)).toMatchObject({ x: 13, y: 17 });
  });

  it("sees the SDK bot walk (0x0086, one cell at a time)", async () => {
    const m = p.map!;
    const from = m.received.length;
    bot.move(18, 25);
    await m.next("actorMove", (x) => x.id === ENTITY_ID_BASE + botEntity && x.move.y1 === 25, 15_000, from);
    const steps = m.received
      .slice(from)
      .filter((x) => x.type === "actorMove" && x.id === ENTITY_ID_BASE + botEntity);
    for (const s of steps) expect(Math.abs(s.move.y1 - s.move.y0)).toBeLessThanOrEqual(1);
  });

  it("chats both ways", async () => {
    const m = p.map!;
    const heard = bot.next("chatMsg", 15_000, (x) => x.text === "hello from RO");
    m.send(enc.chat(`${charName} : hello from RO`));
    expect(await heard).toMatchObject({ name: charName });
    expect(await m.next("chatSelf")).toMatchObject({ text: `${charName} : hello from RO` });
    bot.chat("hello from the SDK");
    expect(await m.next("chatFrom")).toMatchObject({
      id: ENTITY_ID_BASE + botEntity,
      text: `${botName} : hello from the SDK`,
    });
  });

  it("kills a mob: damage (0x02e1), death (0x0080 type 1) and experience (0x07f6, 0x00b1)", async () => {
    const m = p.map!;
    p.track();
    const poring = await until("the poring in view", () => {
      p.track();
      return [...p.actors.entries()].find(([, a]) => a.objectType === 5 && a.job === 1002);
    });
    const id = poring[0];
    const deadline = Date.now() + 40_000;
    let died = false;
    while (!died && Date.now() < deadline) {
      p.track();
      const a = p.actors.get(id);
      if (a && (Math.abs(a.x - p.x) > 1 || Math.abs(a.y - p.y) > 1)) m.send(enc.walk(a.x - 1, a.y));
      m.send(enc.attack(id, 7));
      died = await m
        .next("vanish", (x) => x.id === id && x.how === 1, 1000)
        .then(() => true)
        .catch(() => false);
    }
    expect(died).toBe(true);
    expect(m.received.some((x) => x.type === "damage" && x.src === p.accountId && x.target === id)).toBe(
      true,
    );
    expect(await m.next("expGain")).toMatchObject({ id: p.accountId, amount: 2, varId: 1 });
    await m.next("longParam", (x) => x.param === 1 && x.value === 2);
  });

  it("goes back to character select (0x00b2 -> 0x00b3) and on with the same login", async () => {
    const m = p.map!;
    m.send(enc.restart(1));
    expect(await m.next("restartAck")).toMatchObject({ kind: 1 });
    await m.closedPromise;
    // The map server saves the character as the session leaves, a moment after the close.
    await until(
      "the experience saved",
      async () => Number((await readCharacter(stack.db, String(charId))).base_exp) === 2,
    );
    const { conn, list } = await p.charEnter(stack.ports.char);
    expect(list.items.map((c: { name: string }) => c.name)).toEqual([charName]);
    expect(list.items[0].baseExp).toBe(2);
    conn.send(enc.charSelect(0));
    await conn.next("mapServer");
    conn.close();
    expect((await p.enterMap(stack.ports.map, charId)).type).toBe("mapAccept");
  });

  it("quits (0x018a -> 0x018b); the character is saved where it stood", async () => {
    const m = p.map!;
    p.track();
    m.send(enc.quit());
    expect(await m.next("quitAck")).toMatchObject({ result: 0 });
    await m.closedPromise;
    let row = await readCharacter(stack.db, String(charId));
    for (let i = 0; i < 100 && row.online; i++) {
      await new Promise((r) => setTimeout(r, 50));
      row = await readCharacter(stack.db, String(charId));
    }
    expect(row.last_map).toBe(map);
    expect(row.online).toBe(false);
    expect(Number(row.base_exp)).toBe(2);
  });
});

describe("RO map endpoint robustness", () => {
  it("refuses 0x0436 without a ticket and closes that connection only", async () => {
    const c = await RoTestConnection.open(host, stack.ports.map);
    c.send(enc.mapEnter(999, 999, 1, 0, 1));
    await c.next("mapRefused");
    await c.closedPromise;
  });

  it("closes a connection that sends an id with no known length; others go on", async () => {
    const bad = await RoTestConnection.open(host, stack.ports.map);
    bad.send(Buffer.from([0xff, 0xff, 1, 2, 3]));
    await bad.closedPromise;
    const bad2 = await RoTestConnection.open(host, stack.ports.map);
    const big = Buffer.alloc(8);
    big.writeUInt16LE(0x00f3, 0);
    big.writeUInt16LE(60_000, 2);
    bad2.send(big);
    await bad2.closedPromise;
    expect(stack.roMap.stats.protocolErrors).toBeGreaterThanOrEqual(2);
    // The SDK bot still plays.
    expect(await bot.ping()).toBeGreaterThanOrEqual(0);
  });

  it("skips a packet it has no handler for by its length and keeps reading", async () => {
    const c = await RoTestConnection.open(host, stack.ports.map);
    const guild = Buffer.from([0x4f, 0x01, 0, 0, 0, 0]);
    const skipped = stack.roMap.stats.skipped;
    c.send(Buffer.concat([guild, enc.mapEnter(4242, 4242, 1, 0, 1)]));
    await c.next("accountId");
    expect(stack.roMap.stats.skipped).toBe(skipped + 1);
    c.close();
  });
});

/** A new account and character, through the three endpoints, standing on the map. */
async function enterAs(user: string, charName: string): Promise<RoTestPlayer> {
  await stack.signUp(user, password);
  const p = new RoTestPlayer(host);
  expect((await p.login(stack.ports.login, user, password)).type).toBe("loginOk");
  const { conn } = await p.charEnter(stack.ports.char);
  conn.send(enc.charCreate(charName, [5, 5, 5, 5, 5, 5], 0, 1, 2));
  const created = await conn.next("charCreated");
  conn.send(enc.charSelect(0));
  await conn.next("mapServer");
  conn.close();
  expect((await p.enterMap(stack.ports.map, created.charId)).type).toBe("mapAccept");
  return p;
}

describe("RO beside P2P players", () => {
  it("sees a P2P player move and keeps playing through P2P toggles and a fallback", async () => {
    const mesh = await startTestMesh({
      natsUrl: svc.natsUrl,
      region: stack.gw.region,
      keyset: stack.gw.keyset,
      zones: { [stack.zone]: [map] },
    });
    let peer: P2PClient | undefined;
    try {
      stack.modes.set("p2p");
      const peerName = unique("Peer").slice(0, 14);
      const [peerChar] = await createCharacters(stack.db, [{ name: peerName, map, x: 30, y: 30, hp: 400 }]);
      peer = await P2PClient.connect({
        url: stack.gw.url,
        token: await stack.gw.token(peerChar!, map, peerName),
        coordinators: mesh.urls,
        ice: mesh.ice,
      });
      const p = await enterAs(unique("ro_").slice(0, 20), unique("Rp").slice(0, 12));
      const m = p.map!;
      const peerId = ENTITY_ID_BASE + peer.entity;
      await m.next("actorStand", (x) => x.id === peerId);
      await until("the peer in p2p mode", () => peer!.mode === "p2p");
      // The P2P player reports its own positions; the RO player sees it walk through the gateway.
      for (let k = 1; k <= 4; k++) {
        peer.move(30 + k, 30);
        await new Promise((r) => setTimeout(r, 250));
      }
      await m.next("actorMove", (x) => x.id === peerId && x.move.x1 >= 32, 15_000);
      // P2P off, a fallback, P2P on again: the RO client stays connected and answered.
      for (const mode of ["server", "fallback", "p2p"] as const) {
        stack.modes.set(mode);
        await new Promise((r) => setTimeout(r, 300));
        m.send(enc.tickSync(1));
        await m.next("tickReply");
        expect(m.closed).toBe(false);
      }
      m.send(enc.walk(p.x + 2, p.y));
      await m.next("ownMove");
      m.send(enc.quit());
      await m.next("quitAck");
    } finally {
      stack.modes.set("server");
      await peer?.close().catch(() => undefined);
      await mesh.stop();
    }
  });
});

describe("RO across a map handover", () => {
  it("keeps playing when the map moves to another map-server pod, after a short pause", async () => {
    const second = await startTestServer(
      { ...svc, databaseUrl: stack.db },
      {
        region: stack.gw.region,
        zone: stack.zone,
        pod: "ms-ro-2",
        maps: [map],
        modes: stack.modes,
        threads: 1,
        mapDef,
      },
    );
    try {
      const p = await enterAs(unique("ro_").slice(0, 20), unique("Rh").slice(0, 12));
      const m = p.map!;
      await m.next("actorStand", (x) => x.id === ENTITY_ID_BASE + botEntity);
      const from = m.received.length;
      // The first pod stops (gracefully: it saves the map's sessions and gives the map up).
      await stack.mapServer.server.close();
      await until("the second pod to own the map", () => second.owns(map), 20_000);
      // The client saw the actors go and come back under the new owner; it was never disconnected.
      await m.next("vanish", (x) => x.how === 0, 20_000, from);
      await m.next("actorStand", (x) => x.objectType === 0, 20_000, from);
      expect(m.closed).toBe(false);
      m.send(enc.walk(p.x + 2, p.y + 1));
      await m.next("ownMove", () => true, 15_000, from);
      m.send(enc.quit());
      await m.next("quitAck");
    } finally {
      await second.close();
    }
  });
});
