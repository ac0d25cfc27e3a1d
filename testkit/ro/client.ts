// An RO test client (PACKETVER 20101124) written independently of the server's codec
// (platform/protocol/ro): its own byte writer and reader, its own packet lengths and layouts,
// typed in from the documented layouts (shared/notes/ro-protocol.md and rAthena's sources),
// so that a mistake in the server's table cannot hide behind the same mistake here. Golden
// byte vectors (golden.ts) hold both sides to the same bytes. Only the TCP connect is shared
// (platform/protocol/ro/connect.ts, which knows nothing of packets).
//
// It speaks to the three endpoints over TCP: login (0x0064), char (0x0065 with the 4-byte
// account id answer, 0x0067, 0x0066) and map (0x0436 and play).
import type { Socket } from "node:net";
import { connectRo } from "../../platform/protocol/ro/connect.ts";

// ---- bytes --------------------------------------------------------------------------------

class W {
  private readonly parts: number[] = [];
  u8(v: number): this {
    this.parts.push(v & 0xff);
    return this;
  }
  u16(v: number): this {
    return this.u8(v).u8(v >>> 8);
  }
  u32(v: number): this {
    return this.u16(v & 0xffff).u16(v >>> 16);
  }
  /** A fixed-size field: the text's bytes, then NULs up to `size`. */
  fixed(text: string, size: number): this {
    const b = Buffer.from(text, "latin1");
    if (b.length > size) throw new Error(`${JSON.stringify(text)} longer than ${size}`);
    for (let i = 0; i < size; i++) this.u8(i < b.length ? b[i]! : 0);
    return this;
  }
  /** The 3-byte cell position: (x << 14 | y << 4 | dir) as a big-endian 24-bit number. */
  cell(x: number, y: number, dir = 0): this {
    const v = (x << 14) | (y << 4) | dir;
    return this.u8(v >>> 16)
      .u8(v >>> 8)
      .u8(v);
  }
  text0(text: string): this {
    for (const c of Buffer.from(text, "latin1")) this.u8(c);
    return this.u8(0);
  }
  /** Patches a variable packet's length (bytes 2..3) with the total. */
  done(variable = false): Buffer {
    const b = Buffer.from(this.parts);
    if (variable) b.writeUInt16LE(b.length, 2);
    return b;
  }
}

class R {
  o = 0;
  readonly b: Buffer;
  constructor(b: Buffer) {
    this.b = b;
  }
  u8(): number {
    return this.b[this.o++]!;
  }
  u16(): number {
    const v = this.b.readUInt16LE(this.o);
    this.o += 2;
    return v;
  }
  i16(): number {
    const v = this.b.readInt16LE(this.o);
    this.o += 2;
    return v;
  }
  u32(): number {
    const v = this.b.readUInt32LE(this.o);
    this.o += 4;
    return v;
  }
  i32(): number {
    const v = this.b.readInt32LE(this.o);
    this.o += 4;
    return v;
  }
  str(size: number): string {
    const raw = this.b.subarray(this.o, this.o + size);
    this.o += size;
    const nul = raw.indexOf(0);
    return raw.subarray(0, nul < 0 ? raw.length : nul).toString("latin1");
  }
  skip(n: number): void {
    this.o += n;
  }
  ipv4(): string {
    const v = [this.u8(), this.u8(), this.u8(), this.u8()];
    return v.join(".");
  }
  cell(): { x: number; y: number; dir: number } {
    const v = (this.u8() << 16) | (this.u8() << 8) | this.u8();
    return { x: v >>> 14, y: (v >>> 4) & 0x3ff, dir: v & 0xf };
  }
  /** Two cells at 10 bits each, then a byte of sub-cell offsets. */
  walkpath(): { x0: number; y0: number; x1: number; y1: number; sx: number; sy: number } {
    // 40 bits of coordinates, most significant first.
    let bits = 0n;
    for (let i = 0; i < 5; i++) bits = (bits << 8n) | BigInt(this.u8());
    const sub = this.u8();
    const f = (shift: bigint) => Number((bits >> shift) & 0x3ffn);
    return { x0: f(30n), y0: f(20n), x1: f(10n), y1: f(0n), sx: sub >>> 4, sy: sub & 0xf };
  }
  text0(): string {
    return this.str(this.b.length - this.o);
  }
}

// ---- client to server -----------------------------------------------------------------------

export const enc = {
  login: (username: string, password: string, version = 1, clientType = 22) =>
    new W().u16(0x64).u32(version).fixed(username, 24).fixed(password, 24).u8(clientType).done(),
  charEnter: (accountId: number, loginId1: number, loginId2: number, sex: number) =>
    new W().u16(0x65).u32(accountId).u32(loginId1).u32(loginId2).u16(0).u8(sex).done(),
  charCreate: (
    name: string,
    stats: [number, number, number, number, number, number],
    slot: number,
    hairColor: number,
    hairStyle: number,
  ) => {
    const w = new W().u16(0x67).fixed(name, 24);
    for (const s of stats) w.u8(s);
    return w.u8(slot).u16(hairColor).u16(hairStyle).done();
  },
  charSelect: (slot: number) => new W().u16(0x66).u8(slot).done(),
  charPing: (accountId: number) => new W().u16(0x187).u32(accountId).done(),
  mapEnter: (accountId: number, charId: number, loginId1: number, clientTick: number, sex: number) =>
    new W().u16(0x436).u32(accountId).u32(charId).u32(loginId1).u32(clientTick).u8(sex).done(),
  loadEnd: () => new W().u16(0x7d).done(),
  tickSync: (clientTick: number) => new W().u16(0x360).u32(clientTick).done(),
  walk: (x: number, y: number) => new W().u16(0x35f).cell(x, y, 0).done(),
  nameRequest: (id: number) => new W().u16(0x368).u32(id).done(),
  chat: (line: string) => new W().u16(0xf3).u16(0).text0(line).done(true),
  attack: (target: number, action = 7) => new W().u16(0x437).u32(target).u8(action).done(),
  stopAttack: () => new W().u16(0x118).done(),
  quit: () => new W().u16(0x18a).u16(0).done(),
  restart: (kind: number) => new W().u16(0xb2).u8(kind).done(),
};

// ---- server to client -----------------------------------------------------------------------

/** Lengths of the server packets this client reads (-1: variable). */
const LEN: Record<number, number> = {
  105: -1,
  106: 23,
  107: -1,
  108: 3,
  109: 134,
  110: 3,
  113: 28,
  643: 6,
  747: 13,
  116: 3,
  129: 3,
  127: 6,
  135: 12,
  136: 10,
  134: 16,
  2039: -1,
  2040: -1,
  2041: -1,
  128: 7,
  149: 30,
  141: -1,
  142: -1,
  154: -1,
  737: 33,
  2038: 14,
  176: 8,
  177: 8,
  145: 22,
  395: 4,
  179: 3,
};

function character(r: R) {
  const c = {
    charId: r.u32(),
    baseExp: r.u32(),
    zeny: r.u32(),
    jobExp: r.u32(),
    jobLevel: r.u32(),
    opt1: r.u32(),
    opt2: r.u32(),
    option: r.u32(),
    karma: r.u32(),
    manner: r.u32(),
    statusPoint: r.u16(),
    hp: r.u32(),
    maxHp: r.u32(),
    sp: r.u16(),
    maxSp: r.u16(),
    speed: r.u16(),
    job: r.u16(),
    hair: r.u16(),
    weapon: r.u16(),
    baseLevel: r.u16(),
    skillPoint: r.u16(),
    headBottom: r.u16(),
    shield: r.u16(),
    headTop: r.u16(),
    headMid: r.u16(),
    hairColor: r.u16(),
    clothesColor: r.u16(),
    name: r.str(24),
    str: r.u8(),
    agi: r.u8(),
    vit: r.u8(),
    int: r.u8(),
    dex: r.u8(),
    luk: r.u8(),
    slot: r.u16(),
    renamed: r.u16(),
    lastMap: r.str(16),
    deleteDate: r.u32(),
  };
  return c;
}

/** The fields an actor record (0x07f7, 0x07f8, 0x07f9) shares, up to the position. */
function actor(r: R, walking: boolean) {
  const head = {
    objectType: r.u8(),
    id: r.u32(),
    speed: r.i16(),
    bodyState: r.i16(),
    healthState: r.i16(),
    effectState: r.i32(),
    job: r.i16(),
    head: r.u16(),
    weapon: r.u32(),
    accessory: r.u16(),
  };
  const moveStartTime = walking ? { moveStartTime: r.u32() } : {};
  const looks = {
    accessory2: r.u16(),
    accessory3: r.u16(),
    headPalette: r.i16(),
    bodyPalette: r.i16(),
    headDir: r.i16(),
    robe: r.u16(),
    guildId: r.u32(),
    emblemVersion: r.i16(),
    honor: r.i16(),
    virtue: r.i32(),
    pkMode: r.u8(),
    sex: r.u8(),
  };
  return { ...head, ...moveStartTime, ...looks };
}

// biome-ignore lint/suspicious/noExplicitAny: packets are read into loosely typed records in tests
export type Decoded = { type: string; [k: string]: any };

/** Decodes one whole server packet into the same names the documented layouts use. */
export function decodeServer(b: Buffer): Decoded {
  const r = new R(b);
  const id = r.u16();
  const variable = LEN[id] === -1;
  if (variable) r.u16();
  switch (id) {
    case 0x69: {
      const p = {
        type: "loginOk",
        loginId1: r.u32(),
        accountId: r.u32(),
        loginId2: r.u32(),
        lastIp: r.u32(),
        lastLogin: r.str(26),
        sex: r.u8(),
        items: [] as Record<string, unknown>[],
      };
      while (r.o + 32 <= b.length)
        p.items.push({
          ip: r.ipv4(),
          port: r.u16(),
          name: r.str(20),
          users: r.u16(),
          type: r.u16(),
          isNew: r.u16(),
        });
      return p;
    }
    case 0x6a:
      return { type: "loginRefused", error: r.u8(), blockDate: r.str(20) };
    case 0x6b: {
      const p = {
        type: "charList",
        maxSlots: r.u8(),
        availableSlots: r.u8(),
        premiumSlots: r.u8(),
        items: [] as Decoded[],
      };
      r.skip(20);
      while (r.o + 132 <= b.length) p.items.push(character(r) as unknown as Decoded);
      return p;
    }
    case 0x6c:
      return { type: "charRefused", error: r.u8() };
    case 0x6d:
      return { type: "charCreated", ...character(r) };
    case 0x6e:
      return { type: "charCreateFailed", error: r.u8() };
    case 0x71:
      return { type: "mapServer", charId: r.u32(), mapName: r.str(16), ip: r.ipv4(), port: r.u16() };
    case 0x283:
      return { type: "accountId", accountId: r.u32() };
    case 0x2eb:
      return { type: "mapAccept", tick: r.u32(), pos: r.cell(), xSize: r.u8(), ySize: r.u8(), font: r.u16() };
    case 0x74:
      return { type: "mapRefused", error: r.u8() };
    case 0x81:
      return { type: "kicked", error: r.u8() };
    case 0x7f:
      return { type: "tickReply", serverTick: r.u32() };
    case 0x87:
      return { type: "ownMove", tick: r.u32(), move: r.walkpath() };
    case 0x88:
      return { type: "moveStop", id: r.u32(), x: r.u16(), y: r.u16() };
    case 0x86:
      return { type: "actorMove", id: r.u32(), move: r.walkpath(), tick: r.u32() };
    case 0x7f7: {
      const a = actor(r, true);
      return {
        type: "actorWalking",
        ...a,
        move: r.walkpath(),
        xSize: r.u8(),
        ySize: r.u8(),
        level: r.i16(),
        font: r.i16(),
      };
    }
    case 0x7f8: {
      const a = actor(r, false);
      return {
        type: "actorSpawn",
        ...a,
        pos: r.cell(),
        xSize: r.u8(),
        ySize: r.u8(),
        level: r.i16(),
        font: r.i16(),
      };
    }
    case 0x7f9: {
      const a = actor(r, false);
      return {
        type: "actorStand",
        ...a,
        pos: r.cell(),
        xSize: r.u8(),
        ySize: r.u8(),
        state: r.u8(),
        level: r.i16(),
        font: r.i16(),
      };
    }
    case 0x80:
      return { type: "vanish", id: r.u32(), how: r.u8() };
    case 0x95:
      return { type: "nameReply", id: r.u32(), name: r.str(24) };
    case 0x8d:
      return { type: "chatFrom", id: r.u32(), text: r.text0() };
    case 0x8e:
      return { type: "chatSelf", text: r.text0() };
    case 0x9a:
      return { type: "broadcast", text: r.text0() };
    case 0x2e1:
      return {
        type: "damage",
        src: r.u32(),
        target: r.u32(),
        tick: r.u32(),
        srcSpeed: r.i32(),
        dmgSpeed: r.i32(),
        damage: r.i32(),
        div: r.u16(),
        action: r.u8(),
        damage2: r.i32(),
      };
    case 0x7f6:
      return { type: "expGain", id: r.u32(), amount: r.i32(), varId: r.u16(), expType: r.u16() };
    case 0xb0:
      return { type: "param", param: r.u16(), value: r.i32() };
    case 0xb1:
      return { type: "longParam", param: r.u16(), value: r.u32() };
    case 0x91:
      return { type: "changeMap", mapName: r.str(16), x: r.u16(), y: r.u16() };
    case 0x18b:
      return { type: "quitAck", result: r.u16() };
    case 0xb3:
      return { type: "restartAck", kind: r.u8() };
  }
  throw new Error(`test client: no decoder for 0x${id.toString(16)}`);
}

// ---- a connection ---------------------------------------------------------------------------

/**
 * One TCP connection to an RO endpoint. Packets are decoded as they arrive and kept in
 * `received`; `next` waits for one. `expectRaw(4)` reads the char server's bare account id.
 */
export class RoTestConnection {
  readonly received: Decoded[] = [];
  private readonly taken = new WeakSet<Decoded>();
  closed = false;
  private buf = Buffer.alloc(0);
  private rawWanted = 0;
  private rawWaiter?: (b: Buffer) => void;
  private waiters = new Set<() => void>();
  readonly closedPromise: Promise<void>;

  readonly socket: Socket;

  private constructor(socket: Socket) {
    this.socket = socket;
    this.closedPromise = new Promise((resolve) => {
      socket.on("close", () => {
        this.closed = true;
        this.wake();
        resolve();
      });
    });
    socket.on("data", (d) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.drain();
    });
    socket.on("error", () => {});
  }

  static async open(host: string, port: number, timeoutMs = 10_000): Promise<RoTestConnection> {
    return new RoTestConnection(await connectRo(host, port, timeoutMs));
  }

  send(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  /** The next `n` bytes as they are, without a packet id (the char server's account id echo). */
  expectRaw(n: number): Promise<Buffer> {
    return new Promise((resolve) => {
      this.rawWanted = n;
      this.rawWaiter = resolve;
      this.drain();
    });
  }

  private drain(): void {
    for (;;) {
      if (this.rawWanted > 0) {
        if (this.buf.length < this.rawWanted) return;
        const raw = this.buf.subarray(0, this.rawWanted);
        this.buf = this.buf.subarray(this.rawWanted);
        this.rawWanted = 0;
        this.rawWaiter?.(Buffer.from(raw));
        continue;
      }
      if (this.buf.length < 2) return;
      const id = this.buf.readUInt16LE(0);
      const fixed = LEN[id];
      if (fixed === undefined) {
        this.received.push({ type: "unknown", id });
        this.socket.destroy();
        return;
      }
      let len = fixed;
      if (fixed === -1) {
        if (this.buf.length < 4) return;
        len = this.buf.readUInt16LE(2);
      }
      if (this.buf.length < len) return;
      const pkt = Buffer.from(this.buf.subarray(0, len));
      this.buf = this.buf.subarray(len);
      this.received.push(decodeServer(pkt));
      this.wake();
    }
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }

  /**
   * Waits for a packet of `type` (matching `match`) received from index `from` on that no earlier
   * `next` returned: each packet is handed out once.
   */
  next(
    type: string,
    match: (p: Decoded) => boolean = () => true,
    timeoutMs = 15_000,
    from = 0,
  ): Promise<Decoded> {
    return new Promise((resolve, reject) => {
      const check = () => {
        for (let i = from; i < this.received.length; i++) {
          const p = this.received[i]!;
          if (p.type === type && !this.taken.has(p) && match(p)) {
            this.taken.add(p);
            done();
            resolve(p);
            return true;
          }
        }
        if (this.closed) {
          done();
          reject(new Error(`connection closed before ${type}`));
          return true;
        }
        return false;
      };
      const timer = setTimeout(() => {
        done();
        reject(
          new Error(`no ${type} within ${timeoutMs} ms (got ${this.received.map((p) => p.type).join(",")})`),
        );
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(wake);
      };
      const wake = () => void check();
      if (check()) return;
      this.waiters.add(wake);
    });
  }

  close(): void {
    this.socket.destroy();
  }
}

// ---- a whole player ---------------------------------------------------------------------------

/** An RO player through the three endpoints, as the real client goes: login, char, map. */
export class RoTestPlayer {
  accountId = 0;
  loginId1 = 0;
  loginId2 = 0;
  charId = 0;
  name = "";
  map?: RoTestConnection;
  /** Where the player last knew each actor (id -> cell), from 0x07f9/0x07f8/0x07f7/0x0086. */
  readonly actors = new Map<number, { x: number; y: number; job: number; objectType: number }>();
  x = 0;
  y = 0;
  charServer?: { ip: string; port: number };
  private seen = 0;
  readonly host: string;

  constructor(host: string) {
    this.host = host;
  }

  async login(port: number, username: string, password: string): Promise<Decoded> {
    const c = await RoTestConnection.open(this.host, port);
    try {
      c.send(enc.login(username, password, 20101124, 22));
      const p = await Promise.race([c.next("loginOk"), c.next("loginRefused")]);
      if (p.type === "loginOk") {
        this.accountId = p.accountId;
        this.loginId1 = p.loginId1;
        this.loginId2 = p.loginId2;
        this.charServer = { ip: p.items[0].ip, port: p.items[0].port };
      }
      return p;
    } finally {
      c.close();
    }
  }

  /** Enters the char server: the bare account id, then the character list. */
  async charEnter(port: number): Promise<{ conn: RoTestConnection; echo: number; list: Decoded }> {
    const conn = await RoTestConnection.open(this.host, port);
    const raw = conn.expectRaw(4);
    conn.send(enc.charEnter(this.accountId, this.loginId1, this.loginId2, 1));
    const echo = (await raw).readUInt32LE(0);
    const list = await Promise.race([conn.next("charList"), conn.next("charRefused")]);
    return { conn, echo, list };
  }

  async enterMap(port: number, charId: number): Promise<Decoded> {
    const conn = await RoTestConnection.open(this.host, port);
    this.map = conn;
    this.charId = charId;
    conn.send(enc.mapEnter(this.accountId, charId, this.loginId1, Date.now() >>> 0, 1));
    await conn.next("accountId");
    const acc = await Promise.race([conn.next("mapAccept"), conn.next("mapRefused")]);
    if (acc.type === "mapAccept") {
      this.x = acc.pos.x;
      this.y = acc.pos.y;
      conn.send(enc.loadEnd());
    }
    return acc;
  }

  /** Folds what arrived into `actors` and the own position. */
  track(): void {
    const got = this.map?.received ?? [];
    for (; this.seen < got.length; this.seen++) {
      const p = got[this.seen]!;
      if (p.type === "actorStand" || p.type === "actorSpawn")
        this.actors.set(p.id, { x: p.pos.x, y: p.pos.y, job: p.job, objectType: p.objectType });
      else if (p.type === "actorWalking")
        this.actors.set(p.id, { x: p.move.x1, y: p.move.y1, job: p.job, objectType: p.objectType });
      else if (p.type === "actorMove") {
        const a = this.actors.get(p.id);
        if (a) {
          a.x = p.move.x1;
          a.y = p.move.y1;
        }
      } else if (p.type === "vanish") this.actors.delete(p.id);
      else if (p.type === "ownMove") {
        this.x = p.move.x1;
        this.y = p.move.y1;
      } else if (p.type === "moveStop" && p.id === this.accountId) {
        this.x = p.x;
        this.y = p.y;
      }
    }
  }
}
