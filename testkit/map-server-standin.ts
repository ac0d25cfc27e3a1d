// A minimal map server speaking the bus contract (platform/bus/contract.ts), for the gateway's
// tests and benchmark: it owns a few maps, answers join and leave, applies inputs at its tick
// (moves teleport, `pos` is taken as reported in p2p mode and rejected otherwise, attacks hit
// for a fixed amount), publishes one AoiFrame per (map, gateway) per tick and zone events on
// JetStream. Everyone on a map sees everyone (no geometry). Its mode is set by hand.
// It is not the map server (workloads/map-server); it only has to be faithful to the contract.
import { jetstream } from "@nats-io/jetstream";
import type { Msg, NatsConnection, Subscription } from "@nats-io/transport-node";
import {
  type AoiFrame,
  type ClientInput,
  decode,
  type EntityState,
  type EventBatch,
  encode,
  encodeFrame,
  eventMessageId,
  type InputBatch,
  type JoinReply,
  type JoinRequest,
  type LeaveRequest,
  type MapAddress,
  type MapMode,
  type OwnerNotice,
  type SessionView,
  subjects,
  type ZoneEvent,
} from "../platform/bus/contract.ts";

interface Player {
  session: string;
  gateway: string;
  p2p: boolean;
  characterId: string;
  entity: EntityState;
  /** Entity ids this session has been told about. */
  known: Set<number>;
  corrections: NonNullable<SessionView["corrections"]>;
}

interface MapRun {
  addr: MapAddress;
  mode: MapMode;
  entities: Map<number, EntityState>;
  mobs: Map<number, EntityState>;
  players: Map<string, Player>;
  changed: Set<number>;
  events: ZoneEvent[];
  inputs: ClientInput[];
  subs: Subscription[];
}

export interface StandInOptions {
  nc: NatsConnection;
  region: string;
  zone: string;
  maps: string[];
  owner?: string;
  tickHz?: number;
  /** Mobs per map (ids from 1_000_000); `moving` of them walk every tick (benchmark load). */
  mobs?: number;
  moving?: number;
  mode?: MapMode;
  /** Publish events on JetStream (default true; the stream must exist). */
  events?: boolean;
  /** Players see each other (default true); false: they see only the mobs (benchmark fan-out). */
  playersVisible?: boolean;
  /** Tick from start() (default true). */
  ticking?: boolean;
  /** The owner's fence (a new owner has a greater one). Default: the clock. */
  fence?: string;
  /** First entity id it hands out (a new owner numbers entities anew). Default 1. */
  firstEntity?: number;
  /** Sessions taken over from a previous owner (as the map server restores them from Redis). */
  restore?: RestoredSession[];
}

export interface RestoredSession {
  map: string;
  session: string;
  gateway: string;
  p2p: boolean;
  characterId: string;
  x: number;
  y: number;
}

export class StandInMapServer {
  readonly owner: string;
  readonly fence: string;
  tick = 0;
  /** Inputs received, by kind (tests read them). */
  readonly received: ClientInput[] = [];
  private readonly opts: StandInOptions;
  private readonly maps = new Map<string, MapRun>();
  private timer?: NodeJS.Timeout;
  private nextEntity: number;

  constructor(opts: StandInOptions) {
    this.opts = opts;
    this.nextEntity = opts.firstEntity ?? 1;
    this.owner = opts.owner ?? "standin-0";
    this.fence = opts.fence ?? String(Date.now());
  }

  start(): void {
    const opts = this.opts;
    const { nc, region, zone } = opts;
    for (const map of this.opts.maps) {
      const addr = { region, zone, map };
      const run: MapRun = {
        addr,
        mode: this.opts.mode ?? "server",
        entities: new Map(),
        mobs: new Map(),
        players: new Map(),
        changed: new Set(),
        events: [],
        inputs: [],
        subs: [],
      };
      for (let i = 0; i < (this.opts.mobs ?? 1); i++) {
        const id = 1_000_000 + i;
        const mob: EntityState = {
          id,
          kind: "mob",
          x: 10 + (i % 50),
          y: 10 + Math.floor(i / 50),
          hp: 1_000_000,
          maxHp: 1_000_000,
          alive: true,
          name: "poring",
        };
        run.entities.set(id, mob);
        run.mobs.set(id, mob);
      }
      run.subs.push(
        nc.subscribe(subjects.join(addr), { callback: (_e, m) => this.onJoin(run, m) }),
        nc.subscribe(subjects.leave(addr), { callback: (_e, m) => this.onLeave(run, m) }),
        nc.subscribe(subjects.input(addr), {
          callback: (_e, m) => {
            run.inputs.push(...decode<InputBatch>(m.data).inputs);
          },
        }),
      );
      this.maps.set(map, run);
      for (const r of opts.restore ?? []) if (r.map === map) this.addPlayer(run, r);
      this.notice(run);
    }
    if (this.opts.ticking !== false) this.tickOn();
  }

  /** Starts ticking (when created with `ticking: false`, e.g. to connect a crowd first). */
  tickOn(): void {
    this.timer ??= setInterval(() => this.step(), 1000 / (this.opts.tickHz ?? 20));
  }

  /** Switches a map's mode (as a flag flip would), announced by an OwnerNotice and every frame. */
  setMode(map: string, mode: MapMode): void {
    const run = this.maps.get(map)!;
    run.mode = mode;
    this.notice(run);
  }

  /** Entity id of a session (tests). */
  entityOf(map: string, session: string): number | undefined {
    return this.maps.get(map)?.players.get(session)?.entity.id;
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    for (const run of this.maps.values()) for (const s of run.subs) s.unsubscribe();
    await this.opts.nc.flush().catch(() => undefined);
  }

  private notice(run: MapRun): void {
    const n: OwnerNotice = {
      v: 1,
      map: run.addr.map,
      owner: this.owner,
      fence: this.fence,
      mode: run.mode,
      tickHz: this.opts.tickHz ?? 20,
    };
    this.opts.nc.publish(subjects.owner(run.addr), encode(n));
  }

  /** What a new owner needs to carry the sessions on (the map server keeps this in Redis). */
  exportSessions(): RestoredSession[] {
    const out: RestoredSession[] = [];
    for (const run of this.maps.values())
      for (const p of run.players.values())
        out.push({
          map: run.addr.map,
          session: p.session,
          gateway: p.gateway,
          p2p: p.p2p,
          characterId: p.characterId,
          x: p.entity.x,
          y: p.entity.y,
        });
    return out;
  }

  private addPlayer(
    run: MapRun,
    r: { session: string; gateway: string; p2p: boolean; characterId: string; x: number; y: number },
  ): EntityState {
    const id = this.nextEntity++;
    const entity: EntityState = {
      id,
      kind: "player",
      x: r.x,
      y: r.y,
      hp: 100,
      maxHp: 100,
      alive: true,
      name: `char-${r.characterId}`.slice(0, 24),
    };
    run.players.set(r.session, {
      session: r.session,
      gateway: r.gateway,
      p2p: r.p2p,
      characterId: r.characterId,
      entity,
      known: new Set(),
      corrections: [],
    });
    run.entities.set(id, entity);
    run.changed.add(id);
    return entity;
  }

  private onJoin(run: MapRun, m: Msg): void {
    const req = decode<JoinRequest>(m.data);
    const entity = this.addPlayer(run, { ...req, x: 50, y: 50 });
    const id = entity.id;
    const reply: JoinReply = {
      v: 1,
      ok: true,
      entity: id,
      x: entity.x,
      y: entity.y,
      hp: entity.hp,
      maxHp: entity.maxHp,
      mode: run.mode,
      owner: this.owner,
      fence: this.fence,
      width: 400,
      height: 400,
      tickHz: this.opts.tickHz ?? 20,
    };
    m.respond(encode(reply));
  }

  private onLeave(run: MapRun, m: Msg): void {
    const req = decode<LeaveRequest>(m.data);
    const p = run.players.get(req.session);
    if (p) {
      run.players.delete(req.session);
      run.entities.delete(p.entity.id);
    }
    m.respond(encode({ v: 1, ok: true }));
  }

  private apply(run: MapRun, input: ClientInput): void {
    this.received.push(input);
    const p = run.players.get(input.s);
    if (!p) return;
    const everyone = [...run.players.keys()];
    switch (input.k) {
      case "move":
        p.entity.x = input.x;
        p.entity.y = input.y;
        run.changed.add(p.entity.id);
        return;
      case "pos":
        if (run.mode === "p2p" && p.p2p) {
          p.entity.x = Math.round(input.x * 16) / 16;
          p.entity.y = Math.round(input.y * 16) / 16;
          run.changed.add(p.entity.id);
        } else {
          p.corrections.push({
            seq: input.seq,
            kind: "reject",
            x: p.entity.x,
            y: p.entity.y,
            reason: "not in p2p mode",
          });
        }
        return;
      case "stop":
        return;
      case "chat":
        run.events.push({
          k: "chat",
          from: p.entity.id,
          name: p.entity.name,
          text: input.text,
          to: everyone,
        });
        return;
      case "attack": {
        const target = run.entities.get(input.target);
        if (!target) return;
        target.hp = Math.max(0, target.hp - 7);
        run.changed.add(target.id);
        run.events.push({
          k: "hit",
          from: p.entity.id,
          target: target.id,
          damage: 7,
          hpLeft: target.hp,
          to: everyone,
        });
        return;
      }
    }
  }

  private step(): void {
    this.tick++;
    const moving = this.opts.moving ?? 0;
    for (const run of this.maps.values()) {
      for (const input of run.inputs.splice(0)) this.apply(run, input);
      for (let i = 0; i < moving; i++) {
        const e = run.entities.get(1_000_000 + i);
        if (!e) continue;
        e.x = 10 + ((e.x - 10 + 1 / 16) % 300);
        run.changed.add(e.id);
      }
      this.publishAoi(run);
      if (run.events.length > 0 && this.opts.events !== false) {
        const batch: EventBatch = {
          v: 1,
          map: run.addr.map,
          tick: this.tick,
          fence: this.fence,
          owner: this.owner,
          events: run.events.splice(0),
        };
        void jetstream(this.opts.nc)
          .publish(subjects.events(run.addr), encode(batch), {
            msgID: eventMessageId(run.addr.map, this.fence, this.tick),
          })
          .catch(() => undefined);
      }
      run.changed.clear();
    }
  }

  private publishAoi(run: MapRun): void {
    const byGateway = new Map<
      string,
      { ents: EntityState[]; index: Map<number, number>; views: SessionView[] }
    >();
    for (const p of run.players.values()) {
      let g = byGateway.get(p.gateway);
      if (!g) {
        g = { ents: [], index: new Map(), views: [] };
        byGateway.set(p.gateway, g);
      }
      const slot = (e: EntityState) => {
        let i = g.index.get(e.id);
        if (i === undefined) {
          i = g.ents.length;
          g.ents.push({ ...e });
          g.index.set(e.id, i);
        }
        return i;
      };
      const enter: number[] = [];
      const update: number[] = [];
      const leave: number[] = [];
      for (const e of (this.opts.playersVisible === false ? run.mobs : run.entities).values()) {
        if (!p.known.has(e.id)) {
          p.known.add(e.id);
          enter.push(slot(e));
        } else if (run.changed.has(e.id)) update.push(slot(e));
      }
      for (const id of p.known) {
        if (!run.entities.has(id)) {
          p.known.delete(id);
          leave.push(id);
        }
      }
      if (enter.length + update.length + leave.length + p.corrections.length === 0) continue;
      const view: SessionView = { session: p.session, self: p.entity.id, enter, update, leave };
      if (p.corrections.length > 0) view.corrections = p.corrections.splice(0);
      g.views.push(view);
    }
    for (const [gateway, g] of byGateway) {
      if (g.views.length === 0) continue;
      const frame: AoiFrame = {
        v: 1,
        map: run.addr.map,
        tick: this.tick,
        mode: run.mode,
        fence: this.fence,
        ents: g.ents,
        views: g.views,
      };
      this.opts.nc.publish(subjects.aoi(run.addr, gateway), encodeFrame(frame));
    }
  }
}
