// Fan-out: what the map servers publish, delivered to the connected clients. An AOI frame (one
// per map per tick, with the views of every session of this gateway on it) becomes one message
// per client, encoded once per mode; a zone event batch becomes messages to the sessions each
// event names.
//
// In p2p mode a P2P client's AOI leaves out the moves of the peers it reports hearing directly
// (`meshReport`), so the gateway relays only what the mesh does not carry. Legacy clients get
// everything from the server in every mode.
import {
  type AoiFrame,
  decode as busDecode,
  type EntityState,
  type EventBatch,
  parseMapSubject,
  type ZoneEvent,
} from "../../platform/bus/contract.ts";
import { AoiBatchEncoder, encode, type Mode } from "../../platform/protocol/messages.ts";
import type { MapRouter } from "./routing.ts";
import type { GatewayLogger, Session, Sessions } from "./sessions.ts";

const MAX_CELL = 0xffff / 16;

/** The bus carries i32 hit points and any coordinates; the wire carries u32 and 1/16 cells. */
export function fitEntity(e: EntityState): EntityState {
  if (
    e.hp >= 0 &&
    e.maxHp >= 0 &&
    e.x >= 0 &&
    e.y >= 0 &&
    e.x <= MAX_CELL &&
    e.y <= MAX_CELL &&
    e.name.length <= 32
  )
    return e;
  const clamp = (v: number, hi: number) => Math.min(hi, Math.max(0, v));
  return {
    ...e,
    hp: clamp(e.hp, 0xffffffff),
    maxHp: clamp(e.maxHp, 0xffffffff),
    x: clamp(e.x, MAX_CELL),
    y: clamp(e.y, MAX_CELL),
    name: truncateUtf8(e.name, 32),
  };
}

function truncateUtf8(s: string, maxBytes: number): string {
  let out = s;
  while (Buffer.byteLength(out) > maxBytes) out = out.slice(0, -1);
  return out;
}

/** Fences are etcd revisions (decimal); anything else compares as text. */
function newerFence(a: string, b: string): boolean {
  if (/^\d+$/.test(a) && /^\d+$/.test(b)) return BigInt(a) > BigInt(b);
  return a > b;
}

export interface FanoutOptions {
  sessions: Sessions;
  router: MapRouter;
  log: GatewayLogger;
  now: () => number;
}

export class Fanout {
  private readonly sessions: Sessions;
  private readonly router: MapRouter;
  private readonly log: GatewayLogger;
  private readonly now: () => number;

  constructor(opts: FanoutOptions) {
    this.sessions = opts.sessions;
    this.router = opts.router;
    this.log = opts.log;
    this.now = opts.now;
  }

  /** One AOI frame from a map's owner. */
  aoi(subject: string, data: Uint8Array): void {
    try {
      this.aoiFrame(subject, data);
    } catch (err) {
      // A frame the protocol cannot carry (a value out of range) is dropped, loudly; the
      // subscription and every other map go on.
      this.log.error("AOI frame dropped", { subject, err: String(err) });
    }
  }

  private aoiFrame(subject: string, data: Uint8Array): void {
    const where = parseMapSubject(subject);
    if (!where) return;
    let frame: AoiFrame;
    try {
      frame = busDecode<AoiFrame>(data);
    } catch {
      this.log.warn("undecodable AOI frame", { subject });
      return;
    }
    const m = this.router.mapAt(where);
    if (!m) return;
    this.router.ownerHeard(m);
    this.router.setServerMode(m, frame.mode);
    const t = this.now();
    const ents = frame.ents.map(fitEntity);
    const enc = new AoiBatchEncoder({ map: frame.map, tick: frame.tick, t, mode: "server" }, ents);
    // One encoder per mode a client may see: the header carries the session's effective mode.
    const encoders = new Map<Mode, AoiBatchEncoder>([["server", enc]]);
    const encoderFor = (mode: Mode) => {
      let e = encoders.get(mode);
      if (!e) {
        e = new AoiBatchEncoder({ map: frame.map, tick: frame.tick, t, mode }, ents);
        encoders.set(mode, e);
      }
      return e;
    };
    for (const v of frame.views) {
      const s = this.sessions.get(v.session);
      if (!s || s.mapKey !== m.key || s.state === "closed") continue;
      if (frame.fence !== s.fence && s.fence !== "") {
        // Only forward: a late frame of the previous owner is dropped.
        if (!newerFence(frame.fence, s.fence)) continue;
        this.router.handover(s, frame, v.self);
      }
      const e = encoderFor(s.mode);
      let update = v.update;
      if (s.meshEntities.size > 0) update = update.filter((i) => !s.meshEntities.has(frame.ents[i]!.id));
      const fixes = v.corrections?.map((c) => ({
        n: c.seq,
        kind: c.kind,
        x: c.x,
        y: c.y,
        reason: c.reason.slice(0, 64),
      }));
      // The hot path (one message per client per tick) builds no closure.
      if (s.state === "playing") this.sessions.send(s, e.encode(++s.seq, v.enter, update, v.leave, fixes));
      else this.sessions.deliver(s, (seq) => e.encode(seq, v.enter, update, v.leave, fixes));
    }
  }

  /** One zone event batch (from the JetStream consumer, see events.ts). */
  events(batch: EventBatch, zone: string): void {
    const t = this.now();
    for (const ev of batch.events) {
      if (ev.k === "warp") {
        this.router.warp(ev, batch.map, zone);
        continue;
      }
      const build = eventMessage(ev, t);
      if (!build) continue;
      for (const sid of ev.to) {
        const s = this.sessions.get(sid);
        if (!s || s.addr?.map !== batch.map || s.addr.zone !== zone) continue;
        this.sessions.deliver(s, build);
      }
    }
  }

  /** A P2P client lists the peers it hears directly: their moves leave its AOI (p2p mode only). */
  meshReport(s: Session, connected: readonly string[]): void {
    s.meshEntities.clear();
    if (s.mode !== "p2p") return;
    for (const id of connected) {
      const p = this.sessions.get(id);
      if (p && p.mapKey === s.mapKey && p.kind === "p2p" && p.state === "playing")
        s.meshEntities.add(p.entity);
    }
  }
}

function eventMessage(ev: ZoneEvent, t: number): ((seq: number) => Uint8Array) | undefined {
  switch (ev.k) {
    case "chat":
      return (seq) =>
        encode({ type: "chatMsg", seq, from: ev.from, name: ev.name.slice(0, 32), text: ev.text, t });
    case "hit":
      return (seq) =>
        encode({
          type: "combat",
          seq,
          from: ev.from,
          target: ev.target,
          damage: ev.damage,
          hpLeft: ev.hpLeft,
          t,
        });
    case "death":
      return (seq) => encode({ type: "death", seq, entity: ev.entity, killer: ev.killer });
    case "loot":
      return (seq) => encode({ type: "loot", seq, exp: ev.exp, zeny: ev.zeny });
    case "respawn":
      return (seq) => encode({ type: "respawn", seq, entity: ev.entity, x: ev.x, y: ev.y });
    case "announce":
      return (seq) => encode({ type: "announce", seq, event: ev.event.slice(0, 160), text: ev.text, t });
  }
  return undefined;
}
