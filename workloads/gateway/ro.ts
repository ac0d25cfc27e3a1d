// The gateway's RO map endpoint (PACKETVER 20101124): the original's protocol bridging. Each RO
// client's TCP connection is bridged to a session of this gateway over its own client port (a
// loopback WebSocket speaking the SDK protocol): RO packets become the SDK's client messages and
// the session's server messages become RO packets, so RO, SDK and P2P players share maps
// through the same sessions, routing, sequence, rate limits, handovers and modes
// (platform/protocol/messages.ts, platform/bus/contract.ts), and this module needs nothing of
// the gateway's insides.
// A P2PPolicy toggle or a fallback changes nothing an RO client sees: `mode` messages are not
// translated, and P2P players' moves reach it like anyone's.
//
// Client packets:
//   0x0436 enter (account, character, login_id1) -> 0x0283, then 0x02eb once joined (0x0074 refused)
//   0x007d load end       -> HP/SP/exp/zeny (0x00b0/0x00b1) and every actor in view (0x07f9)
//   0x0360 tick sync      -> 0x007f
//   0x035f walk           -> move; 0x0087 when the own character starts, 0x0088 when refused
//   0x0368 name request   -> 0x0095
//   0x00f3 public chat    -> chat; others' chat as 0x008d, the own echo as 0x008e
//   0x0437 attack (7/0)   -> attack; hits as 0x02e1; a mob's death 0x0080 and exp 0x07f6/0x00b1
//   0x0118 stop attack    -> stop
//   0x018a quit           -> 0x018b, then the connection closes (the character is saved)
//   0x00b2 char select    -> 0x00b3, then the connection closes; the client returns to the char server
// Actors: entering the view 0x07f9, moving one cell at a time 0x0086, leaving 0x0080 (0 out of
// sight, 1 died); a map handover vanishes and re-shows them; a portal sends 0x0091.
//
// Ids: the client's own character is its account id, as RO clients expect; every other actor is
// ENTITY_ID_BASE + its entity id on the map (entity ids are per map owner, see the bus contract).
import { WebSocket } from "ws";
import type { Logger } from "../../platform/log.ts";
import {
  type ClientMessage,
  type Entity,
  type ServerMessage,
  decode as sdkDecode,
  encode as sdkEncode,
} from "../../platform/protocol/messages.ts";
import {
  type ClientPacket,
  NO_LOOKS,
  type PacketOf,
  type ServerPacket,
} from "../../platform/protocol/ro/codec.ts";
import {
  type RoConnection,
  type RoEndpoint,
  roTick,
  startRoEndpoint,
} from "../../platform/protocol/ro/endpoint.ts";
import type { ReasonCode } from "../../platform/protocol/schema.ts";
import { type RoMapTicket, type RoTickets, roId } from "../auth/ro-tickets.ts";
import { MOB_TYPES } from "../map-server/sim/maps.ts";

/** RO ids of actors other than the client's own character. */
export const ENTITY_ID_BASE = 100_000_000;

/** Monster job ids of the mob types (rAthena's mob_db). */
const MOB_JOBS: Record<string, number> = { poring: 1002, lunatic: 1063, wolf: 1013 };
const OBJECT_PC = 0;
const OBJECT_MOB = 5;
/** 0x00b0 / 0x00b1 parameters (rAthena SP_*). */
const SP_BASEEXP = 1;
const SP_HP = 5;
const SP_MAXHP = 6;
const SP_ZENY = 20;
/** 0x0080 kinds. */
const VANISH_OUT_OF_SIGHT = 0;
const VANISH_DIED = 1;

/** What the RO map endpoint needs from the gateway. */
export interface RoMapOptions {
  port: number;
  host?: string;
  log: Logger;
  tickets: RoTickets;
  /**
   * The gateway's own client port (ws:// or wss://127.0.0.1:<port>), where each RO client gets a
   * session, and the TLS options to reach it (wss: the gateway's own serving CA).
   */
  gatewayUrl: string;
  gatewayTls?: { ca?: string; servername?: string };
  maxConnections?: number;
}

interface GatewayDial {
  url: string;
  tls?: RoMapOptions["gatewayTls"];
}

interface Actor {
  e: Entity;
  /** The cell the client last saw it on. */
  cx: number;
  cy: number;
  shown: boolean;
}

/** One RO client and its bridged session on the gateway. */
class RoPlayer {
  readonly c: RoConnection<RoPlayer | undefined>;
  private readonly log: Logger;
  private ws?: WebSocket;
  private accountId = 0;
  private ticket?: RoMapTicket;
  private welcomed = false;
  private loaded = false;
  private map = "";
  private self = -1;
  private name = "";
  private x = 0;
  private y = 0;
  private hp = 0;
  private maxHp = 0;
  private alive = true;
  private exp = 0;
  private zeny = 0;
  private n = 0;
  private walk?: { n: number; x: number; y: number; started: boolean };
  private readonly actors = new Map<number, Actor>();
  private refused = false;

  constructor(c: RoConnection<RoPlayer | undefined>, log: Logger) {
    this.c = c;
    this.log = log;
  }

  /** The RO client is gone: so is its session (it leaves its map, the character is saved). */
  gone(): void {
    this.ws?.close(1000);
  }

  private fromFrame(frame: Buffer): void {
    let m: ServerMessage;
    try {
      m = sdkDecode(frame, "s2c");
    } catch (err) {
      this.log.error("RO bridge could not read a gateway message", { err: String(err) });
      return;
    }
    this.fromGateway(m);
  }

  private toGateway(m: ClientMessage): void {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(sdkEncode(m));
  }

  private out(p: ServerPacket): void {
    this.c.send(p);
  }

  // ---- RO client packets --------------------------------------------------------------------

  async packet(p: ClientPacket, tickets: RoTickets, gateway: GatewayDial): Promise<void> {
    if (p.type === "mapEnter") return this.enter(p, tickets, gateway);
    if (!this.ticket) return;
    switch (p.type) {
      case "loadEnd":
        this.loadEnd();
        return;
      case "tickSync":
        this.out({ type: "tickReply", serverTick: roTick() });
        return;
      case "walk":
        if (!this.welcomed) return;
        this.walk = { n: ++this.n, x: p.dest.x, y: p.dest.y, started: false };
        this.toGateway({ type: "move", n: this.n, x: p.dest.x, y: p.dest.y });
        return;
      case "nameRequest": {
        const name = p.id === this.accountId ? this.name : this.actors.get(p.id - ENTITY_ID_BASE)?.e.name;
        if (name !== undefined) this.out({ type: "nameReply", id: p.id, name: name.slice(0, 23) });
        return;
      }
      case "chat": {
        // "Name : text": the client puts its character's name in front.
        const at = p.text.indexOf(" : ");
        const text = (at >= 0 ? p.text.slice(at + 3) : p.text).slice(0, 200);
        if (text.trim() !== "") this.toGateway({ type: "chat", n: ++this.n, text });
        return;
      }
      case "attack": {
        const target = p.target - ENTITY_ID_BASE;
        if ((p.action === 0 || p.action === 7) && this.actors.has(target))
          this.toGateway({ type: "attack", n: ++this.n, target });
        return;
      }
      case "stopAttack":
        this.toGateway({ type: "stop", n: ++this.n });
        return;
      case "quit":
        this.out({ type: "quitAck", result: 0 });
        this.c.end("quit");
        return;
      case "restart":
        if (p.kind === 1) {
          this.out({ type: "restartAck", kind: 1 });
          this.c.end("back to character select");
        }
        return;
    }
  }

  private async enter(p: PacketOf<"mapEnter">, tickets: RoTickets, gateway: GatewayDial) {
    if (this.ticket || this.accountId !== 0) return;
    this.accountId = p.accountId;
    this.out({ type: "accountId", accountId: p.accountId });
    const t = await tickets.takeMap(p.accountId);
    if (!t || roId(t.characterId) !== p.charId || t.loginId1 !== p.loginId1) {
      this.log.info("RO map enter refused", { accountId: p.accountId, address: this.c.remoteAddress });
      this.out({ type: "mapRefused", error: 0 });
      this.c.end("map enter refused");
      return;
    }
    this.ticket = t;
    this.exp = Number(t.baseExp) || 0;
    this.zeny = Number(t.zeny) || 0;
    // A session of this gateway, authenticated as an SDK client would be, with the same token.
    const ws = new WebSocket(gateway.url, { perMessageDeflate: false, ...gateway.tls });
    this.ws = ws;
    ws.binaryType = "nodebuffer";
    ws.on("open", () => {
      if (!this.c.open) {
        ws.close(1000);
        return;
      }
      this.toGateway({ type: "hello", token: t.token, kind: "legacy" });
    });
    ws.on("message", (data) => this.fromFrame(data as Buffer));
    ws.on("error", (err) => this.log.warn("RO bridge lost its gateway session", { err: String(err) }));
    ws.on("close", () => {
      if (!this.welcomed && !this.refused) this.out({ type: "mapRefused", error: 0 });
      this.c.end("gateway session closed");
    });
  }

  private loadEnd(): void {
    if (!this.welcomed) return;
    this.loaded = true;
    this.out({ type: "param", param: SP_HP, value: this.hp });
    this.out({ type: "param", param: SP_MAXHP, value: this.maxHp });
    this.out({ type: "longParam", param: SP_BASEEXP, value: clampU32(this.exp) });
    this.out({ type: "longParam", param: SP_ZENY, value: clampU32(this.zeny) });
    for (const a of this.actors.values()) this.show(a);
  }

  // ---- gateway messages -> RO packets -------------------------------------------------------

  private fromGateway(m: ServerMessage): void {
    switch (m.type) {
      case "welcome":
        this.welcomed = true;
        this.map = m.map;
        this.self = m.entity;
        this.name = m.name;
        this.x = m.x;
        this.y = m.y;
        this.hp = m.hp;
        this.maxHp = m.maxHp;
        this.out({
          type: "mapAccept",
          tick: roTick(),
          pos: { x: cell(m.x), y: cell(m.y), dir: 0 },
          xSize: 5,
          ySize: 5,
          font: 0,
        });
        return;
      case "aoi":
        for (const e of m.enter) this.seen(e, true);
        for (const e of m.update) this.seen(e, false);
        for (const id of m.leave) this.left(id, VANISH_OUT_OF_SIGHT);
        for (const c of m.corrections) {
          if (c.kind === "smooth") continue;
          // Refused or snapped back: the client stops where the server has it.
          if (this.walk && c.n === this.walk.n) this.walk = undefined;
          this.x = c.x;
          this.y = c.y;
          this.out({ type: "moveStop", id: this.accountId, x: cell(c.x), y: cell(c.y) });
        }
        return;
      case "chatMsg": {
        const line = `${m.name} : ${m.text}`;
        if (m.from === this.self) this.out({ type: "chatSelf", text: line });
        else this.out({ type: "chatFrom", id: this.idOf(m.from), text: line });
        return;
      }
      case "announce":
        // A world event's announcement: RO's broadcast, as rAthena's @broadcast sends it.
        this.out({ type: "broadcast", text: m.text });
        return;
      case "combat":
        if (!this.loaded) return;
        this.out({
          type: "damage",
          src: this.idOf(m.from),
          target: this.idOf(m.target),
          tick: roTick(),
          srcSpeed: 800,
          dmgSpeed: 300,
          damage: Math.min(m.damage, 0x7fffffff),
          div: 1,
          action: 0,
          damage2: 0,
        });
        if (m.target === this.self) {
          this.hp = m.hpLeft;
          this.out({ type: "param", param: SP_HP, value: Math.min(m.hpLeft, 0x7fffffff) });
        }
        return;
      case "death":
        if (m.entity === this.self) {
          this.alive = false;
          if (this.loaded) this.out({ type: "vanish", id: this.accountId, how: VANISH_DIED });
        } else this.left(m.entity, VANISH_DIED);
        return;
      case "loot":
        this.exp += m.exp;
        this.zeny += m.zeny;
        this.out({
          type: "expGain",
          id: this.accountId,
          amount: Math.min(m.exp, 0x7fffffff),
          varId: 1,
          expType: 0,
        });
        this.out({ type: "longParam", param: SP_BASEEXP, value: clampU32(this.exp) });
        this.out({ type: "longParam", param: SP_ZENY, value: clampU32(this.zeny) });
        return;
      case "mapChange":
        this.forgetAll();
        this.self = m.entity;
        this.x = m.x;
        this.y = m.y;
        this.walk = undefined;
        if (m.map !== this.map) {
          // Through a portal: the client loads the new map and says load end again.
          this.map = m.map;
          this.loaded = false;
          this.out({ type: "changeMap", mapName: `${m.map}.gat`.slice(0, 15), x: cell(m.x), y: cell(m.y) });
        } else {
          // The map changed owner: the actors come back under new ids with the next update.
          this.out({ type: "moveStop", id: this.accountId, x: cell(m.x), y: cell(m.y) });
        }
        return;
      case "viewReset":
        this.forgetAll();
        return;
      case "error":
        this.refuse(m.reason);
        return;
      // mode (P2P is invisible to RO clients), respawn (the actor re-enters the view), pong
      default:
        return;
    }
  }

  private refuse(reason: ReasonCode): void {
    this.refused = true;
    if (!this.welcomed) this.out({ type: "mapRefused", error: 0 });
    // 0x0081: 2 = someone else logged in with this character, 1 = the server closed.
    else this.out({ type: "kicked", error: reason === "duplicate_session" ? 2 : 1 });
  }

  private idOf(entity: number): number {
    return entity === this.self ? this.accountId : ENTITY_ID_BASE + entity;
  }

  /** An entity entered the view or changed in it. */
  private seen(e: Entity, entering: boolean): void {
    if (e.id === this.self) {
      this.ownState(e);
      return;
    }
    let a = this.actors.get(e.id);
    if (!a || entering) {
      if (a?.shown) this.vanish(a, VANISH_OUT_OF_SIGHT);
      a = { e, cx: cell(e.x), cy: cell(e.y), shown: false };
      this.actors.set(e.id, a);
      if (e.alive) this.show(a);
      return;
    }
    const wasAlive = a.e.alive;
    a.e = e;
    if (!e.alive) {
      if (a.shown) this.vanish(a, VANISH_DIED);
      return;
    }
    if (!wasAlive || !a.shown) {
      // Back from the dead (a respawned mob): it appears where it is.
      a.cx = cell(e.x);
      a.cy = cell(e.y);
      this.show(a, true);
      return;
    }
    const cx = cell(e.x);
    const cy = cell(e.y);
    if (cx === a.cx && cy === a.cy) return;
    if (this.loaded)
      this.out({
        type: "actorMove",
        id: this.idOf(e.id),
        move: { x0: a.cx, y0: a.cy, x1: cx, y1: cy, sx: 8, sy: 8 },
        tick: roTick(),
      });
    a.cx = cx;
    a.cy = cy;
  }

  private ownState(e: Entity): void {
    const from = [cell(this.x), cell(this.y)] as const;
    const moved = e.x !== this.x || e.y !== this.y;
    this.x = e.x;
    this.y = e.y;
    if (e.hp !== this.hp) {
      this.hp = e.hp;
      if (this.loaded && e.alive)
        this.out({ type: "param", param: SP_HP, value: Math.min(e.hp, 0x7fffffff) });
    }
    if (!e.alive) {
      this.alive = false;
      return;
    }
    if (!this.alive) {
      // Respawned at the map's spawn point: as rAthena's return to the save point, the client
      // reloads the map there.
      this.alive = true;
      this.walk = undefined;
      this.forgetAll();
      this.loaded = false;
      this.out({ type: "changeMap", mapName: `${this.map}.gat`.slice(0, 15), x: cell(e.x), y: cell(e.y) });
      return;
    }
    const w = this.walk;
    // The first step of an accepted walk: the client starts its own walk animation.
    if (w && !w.started && moved) {
      w.started = true;
      if (this.loaded)
        this.out({
          type: "ownMove",
          tick: roTick(),
          move: { x0: from[0], y0: from[1], x1: w.x, y1: w.y, sx: 8, sy: 8 },
        });
    }
  }

  private left(entity: number, how: number): void {
    const a = this.actors.get(entity);
    if (!a) return;
    if (a.shown) this.vanish(a, how);
    this.actors.delete(entity);
  }

  private forgetAll(): void {
    for (const a of this.actors.values()) if (a.shown) this.vanish(a, VANISH_OUT_OF_SIGHT);
    this.actors.clear();
  }

  private vanish(a: Actor, how: number): void {
    a.shown = false;
    if (this.loaded) this.out({ type: "vanish", id: this.idOf(a.e.id), how });
  }

  private show(a: Actor, spawned = false): void {
    if (!this.loaded || !a.e.alive) return;
    a.shown = true;
    const mob = a.e.kind === "mob";
    const mt = mob ? MOB_TYPES.find((m) => m.name === a.e.name) : undefined;
    const common = {
      objectType: mob ? OBJECT_MOB : OBJECT_PC,
      id: this.idOf(a.e.id),
      speed: mt ? Math.round(1000 / mt.speed) : 150,
      bodyState: 0,
      healthState: 0,
      effectState: 0,
      job: mob ? (MOB_JOBS[a.e.name] ?? 1002) : 0,
      head: mob ? 0 : 1,
      weapon: 0,
      accessory: 0,
      ...NO_LOOKS,
      sex: 1,
      pos: { x: a.cx, y: a.cy, dir: 0 },
      xSize: 5,
      ySize: 5,
      level: 1,
      font: 0,
    };
    if (spawned) this.out({ type: "actorSpawn", ...common });
    else this.out({ type: "actorStand", ...common, state: 0 });
  }
}

function cell(v: number): number {
  return Math.max(0, Math.min(1023, Math.floor(v)));
}

function clampU32(v: number): number {
  return Math.max(0, Math.min(0xffffffff, Math.floor(v)));
}

export async function startRoMap(opts: RoMapOptions): Promise<RoEndpoint> {
  return startRoEndpoint<RoPlayer | undefined>({
    name: "ro-map",
    port: opts.port,
    host: opts.host,
    log: opts.log,
    maxConnections: opts.maxConnections,
    handler: {
      open: (c) => new RoPlayer(c, opts.log),
      packet: (c, p) => c.state?.packet(p, opts.tickets, { url: opts.gatewayUrl, tls: opts.gatewayTls }),
      closed: (c) => c.state?.gone(),
    },
  });
}
