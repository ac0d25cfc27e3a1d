// Map routing: which map server a session plays on, reached over NATS (platform/bus/contract.ts)
// by its map's subjects. Joins (retried while a map has no owner), leaves, map changes through
// portals, owner handovers, the inputs batched per map, and each map's mode.
//
// Modes: the map server stamps every AOI frame and owner notice with the map's mode. When it
// changes, each session on the map gets a `mode` message in its sequence, before any message
// produced under the new mode; P2P clients join or leave their coordinator mesh on reading it
// (meshes and signaling are the coordinator's, workloads/coordinator). The gateway's own flags
// (p2pGate) and the zone's rollout may hold a map or a client in server mode.
//
// Input through a bus outage. Input batches are core NATS publishes: one sent while the owner's
// subscriptions are not back on the (restarted) server is gone, and a chat or an attack with it.
// So from the moment the control connection drops, each map's inputs wait in the gateway; they
// go once the connection is back and the owner has been heard from again (an AOI frame or owner
// notice that arrived after the bus came back: the owner re-subscribes before it publishes), or
// HOLD_RELEASE_MS after the reconnect at the latest. (Publishing into the reconnecting
// connection is no help: the NATS client discards its buffer on every dial.) For the same
// reason a resync request (below) waits until the control connection is back.
import type { NatsConnection } from "@nats-io/transport-node";
import {
  type AoiFrame,
  decode as busDecode,
  encode as busEncode,
  type ClientInput,
  type InputBatch,
  type JoinReply,
  type JoinRequest,
  type LeaveRequest,
  MAX_CHAT_LENGTH,
  MAX_INPUTS_PER_BATCH,
  type MapAddress,
  type MapMode,
  type OwnerNotice,
  parseMapSubject,
  subjects,
  type ViewResync,
  type ZoneEvent,
} from "../../platform/bus/contract.ts";
import { inRollout } from "../../platform/flags/layout.ts";
import { encode, type Mode } from "../../platform/protocol/messages.ts";
import type { GatewayLogger, PlayMessage, Session, Sessions } from "./sessions.ts";

/** Which zone serves a map (undefined: no zone does, in this region). */
export interface MapDirectory {
  zoneOf(map: string): string | undefined;
}

export function staticDirectory(zones: Record<string, readonly string[]>): MapDirectory {
  const byMap = new Map<string, string>();
  for (const [zone, maps] of Object.entries(zones)) for (const m of maps) byMap.set(m, zone);
  return { zoneOf: (m) => byMap.get(m) };
}

/** A map with sessions of this gateway on it (or inputs still to send). */
export interface MapState {
  addr: MapAddress;
  key: string;
  /** The mode the map server reports. */
  serverMode: MapMode;
  sessions: Set<Session>;
  inputs: ClientInput[];
  lastFlush: number;
  flushTimer?: NodeJS.Timeout;
  /** Set while inputs wait for the bus and the owner (see the header); `heard`: the owner was. */
  holding?: { heard: boolean };
  /** Views were reset while the control connection was down: the resync request is still owed. */
  resyncOwed?: boolean;
}

/** Held inputs go this long after the control connection is back, heard from the owner or not. */
export const HOLD_RELEASE_MS = 5000;
/** Inputs held per map at most (the oldest go first). */
const HOLD_CAP = 4 * MAX_INPUTS_PER_BATCH;

type JoinedReply = JoinReply & { ok: true };

function mapKeyOf(a: { zone: string; map: string }): string {
  return `${a.zone}/${a.map}`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function isRetryable(err: unknown): boolean {
  const name = (err as Error)?.name ?? "";
  const msg = String((err as Error)?.message ?? "");
  return /NoResponders|Timeout|RequestError/i.test(name) || /no responders|timeout/i.test(msg);
}

// A function, not `s.state === "closed"` inline: TypeScript keeps the narrowing of s.state
// across an await, where the session may have closed meanwhile.
function isClosed(s: Session): boolean {
  return s.state === "closed";
}

export interface MapRouterOptions {
  /** Requests and input (join, leave, input batches, resync). */
  control: NatsConnection;
  region: string;
  /** This gateway's instance name. */
  gateway: string;
  directory: MapDirectory;
  p2pGate?: (zone: string) => Mode;
  rolloutPercent?: (zone: string) => number;
  /** Something a session's P2P client config depends on may have changed (clientconfig.ts). */
  configChanged?: (s: Session, reason: string) => void;
  joinTimeoutMs: number;
  /** Milliseconds between input flushes per map (the map's tick). */
  inputFlushMs: number;
  sessions: Sessions;
  log: GatewayLogger;
  now: () => number;
}

export class MapRouter {
  private readonly opts: MapRouterOptions;
  private readonly control: NatsConnection;
  private readonly sessions: Sessions;
  private readonly maps = new Map<string, MapState>();
  /** The control connection is down (inputs are held). */
  private controlDown = false;
  private releaseTimer?: NodeJS.Timeout;
  private stopped = false;

  constructor(opts: MapRouterOptions) {
    this.opts = opts;
    this.control = opts.control;
    this.sessions = opts.sessions;
    this.watchControl();
  }

  private watchControl(): void {
    // Test doubles of the connection may have no status stream.
    if (typeof this.control.status !== "function") return;
    void (async () => {
      for await (const st of this.control.status()) {
        if (this.stopped) break;
        if (st.type === "disconnect") this.busLost();
        else if (st.type === "reconnect") this.busBack();
      }
    })().catch(() => undefined);
  }

  /** The control connection dropped: every map's inputs wait until its owner is heard again. */
  private busLost(): void {
    this.controlDown = true;
    clearTimeout(this.releaseTimer);
    for (const m of this.maps.values()) {
      clearTimeout(m.flushTimer);
      m.flushTimer = undefined;
      m.holding = { heard: false };
    }
  }

  private busBack(): void {
    this.controlDown = false;
    for (const m of this.maps.values()) if (m.resyncOwed) this.askResync(m);
    for (const m of this.maps.values()) if (m.holding?.heard) this.release(m);
    clearTimeout(this.releaseTimer);
    this.releaseTimer = setTimeout(() => {
      for (const m of this.maps.values())
        if (m.holding) {
          this.opts.log.warn("map owner not heard from after a bus reconnect; sending held input", {
            map: m.addr.map,
            inputs: m.inputs.length,
          });
          this.release(m);
        }
    }, HOLD_RELEASE_MS);
    this.releaseTimer.unref?.();
  }

  /** Something of the map's owner arrived (an AOI frame or owner notice). */
  ownerHeard(m: MapState): void {
    if (!m.holding) return;
    m.holding.heard = true;
    if (!this.controlDown) this.release(m);
  }

  private release(m: MapState): void {
    m.holding = undefined;
    this.flush(m);
  }

  addressOf(map: string): MapAddress | undefined {
    const zone = this.opts.directory.zoneOf(map);
    return zone ? { region: this.opts.region, zone, map } : undefined;
  }

  /** A map some session of this gateway is on (or undefined). */
  mapAt(where: { zone: string; map: string }): MapState | undefined {
    return this.maps.get(mapKeyOf(where));
  }

  /** Stops the input timers (the gateway is closing). */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.releaseTimer);
    for (const m of this.maps.values()) clearTimeout(m.flushTimer);
  }

  // ---- joining and leaving ----------------------------------------------------------------

  /** An authenticated session's first map: join, welcome, play. */
  async enter(s: Session, addr: MapAddress): Promise<void> {
    const claims = s.claims!;
    await this.arrive(s, addr, (reply, seq) =>
      encode({
        type: "welcome",
        seq,
        session: s.id,
        character: claims.characterId,
        name: claims.characterName,
        map: claims.map,
        entity: reply.entity,
        x: reply.x,
        y: reply.y,
        hp: reply.hp,
        maxHp: reply.maxHp,
        width: reply.width,
        height: reply.height,
        tickHz: Math.min(255, reply.tickHz),
        mode: s.mode,
        serverTime: this.opts.now(),
      }),
    );
  }

  /** A session ended: off its map's roster, and out of the map server when it had joined. */
  async exit(s: Session, joined: boolean): Promise<void> {
    this.detach(s);
    if (joined && s.addr) await this.leave(s.id, s.addr);
  }

  /**
   * Moves a session to another map, possibly owned by another map-server pod: leaves the old
   * owner (which persists the character), joins the new one, and goes on with the same
   * connection and sequence. Messages of the new map wait until the `mapChange` is sent.
   */
  async transfer(sessionId: string, map: string, at?: { x: number; y: number }): Promise<void> {
    const s = this.sessions.get(sessionId);
    if (s?.state !== "playing" || !s.addr) throw new Error(`session ${sessionId} is not playing`);
    const to = this.addressOf(map);
    if (!to) throw new Error(`no zone serves map ${map}`);
    const from = s.addr;
    s.state = "transferring";
    this.detach(s);
    // Through a portal, the old owner saves the character at the destination, where the new one loads it.
    await this.leave(s.id, from, at ? { map, ...at } : undefined);
    await this.arrive(s, to, (reply, seq) =>
      encode({
        type: "mapChange",
        seq,
        map,
        entity: reply.entity,
        x: reply.x,
        y: reply.y,
        width: reply.width,
        height: reply.height,
        mode: s.mode,
      }),
    );
  }

  /**
   * Joins the owner of `addr` and puts the session on the map's roster; its first message
   * there (`welcome` or `mapChange`, built once the mode is known) goes ahead of what waited.
   */
  private async arrive(
    s: Session,
    addr: MapAddress,
    announce: (reply: JoinedReply, seq: number) => Uint8Array,
  ): Promise<void> {
    s.addr = addr;
    s.mapKey = mapKeyOf(addr);
    const reply = await this.join(s, addr);
    if (!reply) return;
    this.attach(s, reply);
    this.sessions.send(s, announce(reply, ++s.seq));
    this.sessions.play(s);
    this.opts.configChanged?.(s, "joined the map");
  }

  /** A session of this gateway stepped onto a portal on `zone`/`map`: move it to the portal's map. */
  warp(ev: ZoneEvent & { k: "warp" }, map: string, zone: string): void {
    const s = this.sessions.get(ev.session);
    if (s?.state !== "playing" || s.addr?.map !== map || s.addr.zone !== zone) return;
    this.transfer(s.id, ev.map, { x: ev.x, y: ev.y }).catch((err) =>
      this.opts.log.warn("warp failed", { session: s.id, from: map, to: ev.map, err: String(err) }),
    );
  }

  /**
   * The map changed owner (a new fence): the new owner restored the session with a new entity
   * id and sends its whole view again. The client is told with a `mapChange` to the same map,
   * in its sequence, so it drops the old ids before the new owner's first update.
   */
  handover(s: Session, frame: AoiFrame, self: number): void {
    s.fence = frame.fence;
    s.entity = self;
    s.meshEntities.clear();
    const me = frame.ents.find((e) => e.id === self);
    const msg = {
      type: "mapChange" as const,
      map: frame.map,
      entity: self,
      x: me?.x ?? 0,
      y: me?.y ?? 0,
      width: s.width,
      height: s.height,
      mode: s.mode,
    };
    this.sessions.deliver(s, (seq) => encode({ ...msg, seq }));
  }

  /**
   * After a bus reconnect: every client forgets its view (a `viewReset` in its sequence) and
   * each map's owner sends the whole views of this gateway's sessions again.
   */
  resync(): void {
    for (const m of this.maps.values()) {
      // What arrives from now on came through the bus that is back (the data connection's
      // frames may have been in flight from before the outage until now).
      if (m.holding) m.holding.heard = false;
      if (m.sessions.size === 0) continue;
      for (const s of m.sessions) this.sessions.deliver(s, (seq) => encode({ type: "viewReset", seq }));
      // A publish on a connection that is still reconnecting is discarded by the client (its
      // buffer is reset on every dial): ask once the control connection is back.
      if (this.controlDown) m.resyncOwed = true;
      else this.askResync(m);
    }
    this.opts.log.info("views resynced after a bus reconnect", { maps: this.maps.size });
  }

  private askResync(m: MapState): void {
    m.resyncOwed = false;
    this.control.publish(
      subjects.resync(m.addr),
      busEncode({ v: 1, gateway: this.opts.gateway } satisfies ViewResync),
    );
  }

  /** Join with retries while the map has no owner; undefined when the session was dropped. */
  private async join(s: Session, addr: MapAddress): Promise<JoinedReply | undefined> {
    const req: JoinRequest = {
      v: 1,
      session: s.id,
      characterId: s.claims!.characterId,
      gateway: this.opts.gateway,
      p2p: s.kind === "p2p",
    };
    const deadline = this.opts.now() + this.opts.joinTimeoutMs;
    let delay = 100;
    for (;;) {
      if (s.state === "closed") return undefined;
      try {
        const m = await this.control.request(subjects.join(addr), busEncode(req), { timeout: 3000 });
        const reply = busDecode<JoinReply>(m.data);
        if (!reply.ok) {
          await this.sessions.drop(s, "map_unavailable", reply.error);
          return undefined;
        }
        // The client may have gone while the request was out.
        if (isClosed(s)) {
          void this.leave(s.id, addr);
          return undefined;
        }
        return reply;
      } catch (err) {
        if (!isRetryable(err) || this.opts.now() + delay > deadline) {
          this.opts.log.warn("join failed", { session: s.id, map: addr.map, err: String(err) });
          await this.sessions.drop(s, "map_unavailable", `map ${addr.map} is not available`);
          return undefined;
        }
        await sleep(delay);
        delay = Math.min(delay * 2, 1000);
      }
    }
  }

  private async leave(session: string, addr: MapAddress, to?: LeaveRequest["to"]): Promise<void> {
    const req: LeaveRequest = { v: 1, session, ...(to ? { to } : {}) };
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        const m = await this.control.request(subjects.leave(addr), busEncode(req), { timeout: 3000 });
        const reply = busDecode<{ ok: boolean; error?: string }>(m.data);
        if (!reply.ok) this.opts.log.warn("leave refused", { session, map: addr.map, error: reply.error });
        return;
      } catch (err) {
        if (!isRetryable(err) || this.control.isClosed()) return;
        await sleep(200 * (attempt + 1));
      }
    }
  }

  /** Puts a joined session on its map's roster. */
  private attach(s: Session, reply: JoinedReply): void {
    const m = this.mapState(s.addr!);
    if (m.sessions.size === 0) m.serverMode = reply.mode;
    m.sessions.add(s);
    s.entity = reply.entity;
    s.fence = reply.fence;
    s.width = reply.width;
    s.height = reply.height;
    s.mode = this.sessionMode(m, s);
    s.meshEntities.clear();
  }

  /** Takes a session off its map's roster (leaving or changing map). */
  private detach(s: Session): void {
    const m = this.maps.get(s.mapKey);
    if (!m) return;
    m.sessions.delete(s);
    // Its entity is no longer heard from anyone's mesh (and a later player may get its id).
    if (s.kind === "p2p") for (const o of m.sessions) o.meshEntities.delete(s.entity);
    if (m.sessions.size === 0 && m.inputs.length === 0) {
      clearTimeout(m.flushTimer);
      this.maps.delete(m.key);
    }
  }

  private mapState(addr: MapAddress): MapState {
    const key = mapKeyOf(addr);
    let m = this.maps.get(key);
    if (!m) {
      m = { addr, key, serverMode: "server", sessions: new Set(), inputs: [], lastFlush: 0 };
      this.maps.set(key, m);
    }
    return m;
  }

  // ---- input batching ---------------------------------------------------------------------

  /** A playing client's command, for the next input batch of its map. */
  input(s: Session, msg: Exclude<PlayMessage, { type: "meshReport" }>): void {
    const m = this.maps.get(s.mapKey);
    if (!m) return;
    switch (msg.type) {
      case "move":
        this.queue(m, { s: s.id, seq: msg.n, k: "move", x: msg.x, y: msg.y });
        return;
      case "pos":
        // Only a P2P session on a p2p map reports its own position; anything else walks.
        if (s.kind === "p2p" && s.mode === "p2p")
          this.queue(m, { s: s.id, seq: msg.n, k: "pos", x: msg.x, y: msg.y });
        return;
      case "stop":
        this.queue(m, { s: s.id, seq: msg.n, k: "stop" });
        return;
      case "chat":
        if ([...msg.text].length <= MAX_CHAT_LENGTH && msg.text.trim() !== "")
          this.queue(m, { s: s.id, seq: msg.n, k: "chat", text: msg.text });
        return;
      case "attack":
        this.queue(m, { s: s.id, seq: msg.n, k: "attack", target: msg.target });
        return;
    }
  }

  private queue(m: MapState, input: ClientInput): void {
    m.inputs.push(input);
    if (m.holding) {
      if (m.inputs.length > HOLD_CAP) {
        m.inputs.splice(0, m.inputs.length - HOLD_CAP);
        this.opts.log.warn("held input over its cap while the bus is away; oldest dropped", {
          map: m.addr.map,
        });
      }
      return;
    }
    if (m.inputs.length >= MAX_INPUTS_PER_BATCH) {
      this.flush(m);
      return;
    }
    if (m.flushTimer) return;
    // At most one batch per map per tick; the first input after a quiet spell goes at once.
    const wait = Math.max(0, m.lastFlush + this.opts.inputFlushMs - this.opts.now());
    m.flushTimer = setTimeout(() => this.flush(m), wait);
  }

  private flush(m: MapState): void {
    clearTimeout(m.flushTimer);
    m.flushTimer = undefined;
    if (m.holding || m.inputs.length === 0) return;
    const batch: InputBatch = { v: 1, gateway: this.opts.gateway, inputs: m.inputs };
    m.inputs = [];
    m.lastFlush = this.opts.now();
    try {
      this.control.publish(subjects.input(m.addr), busEncode(batch));
    } catch (err) {
      this.opts.log.warn("input publish failed", { map: m.addr.map, err: String(err) });
    }
    if (m.sessions.size === 0) this.maps.delete(m.key);
  }

  // ---- modes --------------------------------------------------------------------------------

  /** An owner notice: the map's mode as its (new) owner reports it. */
  ownerNotice(subject: string, data: Uint8Array): void {
    const where = parseMapSubject(subject);
    if (!where) return;
    const m = this.mapAt(where);
    if (!m) return;
    this.ownerHeard(m);
    try {
      this.setServerMode(m, busDecode<OwnerNotice>(data).mode);
    } catch {
      this.opts.log.warn("undecodable owner notice", { subject });
    }
  }

  setServerMode(m: MapState, mode: MapMode): void {
    if (mode === m.serverMode) return;
    m.serverMode = mode;
    this.applyMode(m, `map server reports ${mode}`);
  }

  /** Re-evaluates every map's mode (call when the gateway's own flags change). */
  refreshModes(): void {
    for (const m of this.maps.values()) this.applyMode(m, "gateway flags changed");
  }

  /** Fallback if either side says so; P2P only if both allow it. */
  private effectiveMode(m: MapState): Mode {
    const gate = this.opts.p2pGate?.(m.addr.zone) ?? "p2p";
    if (m.serverMode === "fallback" || gate === "fallback") return "fallback";
    return m.serverMode === "p2p" && gate === "p2p" ? "p2p" : "server";
  }

  /**
   * The canary per zone: P2P-capable sessions on maps where P2P is on (p2p, or held in
   * fallback), and those of them playing P2P (inside the rollout, not held).
   */
  p2pPlayers(): Map<string, { eligible: number; playing: number }> {
    const out = new Map<string, { eligible: number; playing: number }>();
    for (const m of this.maps.values()) {
      if (this.effectiveMode(m) === "server") continue;
      const c = out.get(m.addr.zone) ?? { eligible: 0, playing: 0 };
      for (const s of m.sessions) {
        if (s.kind !== "p2p" || s.state !== "playing") continue;
        c.eligible++;
        if (s.mode === "p2p") c.playing++;
      }
      out.set(m.addr.zone, c);
    }
    return out;
  }

  /** The map's mode, except that a P2P client outside the zone's rollout plays in server mode. */
  private sessionMode(
    m: MapState,
    s: Session,
    mapMode = this.effectiveMode(m),
    percent = this.rollout(m),
  ): Mode {
    if (mapMode !== "p2p" || s.kind !== "p2p" || !s.claims) return mapMode;
    return inRollout(s.claims.characterId, percent) ? mapMode : "server";
  }

  private rollout(m: MapState): number {
    return this.opts.rolloutPercent?.(m.addr.zone) ?? 100;
  }

  private applyMode(m: MapState, reason: string): void {
    // Once per map, not per session: the gate reads the flag client's latches.
    const mapMode = this.effectiveMode(m);
    const percent = this.rollout(m);
    for (const s of m.sessions) {
      const mode = this.sessionMode(m, s, mapMode, percent);
      if (s.mode !== mode) {
        s.mode = mode;
        if (mode !== "p2p") s.meshEntities.clear();
        this.sessions.deliver(s, (seq) => encode({ type: "mode", seq, map: m.addr.map, mode, reason }));
      }
      // Flags may change the config without changing the mode (thresholds, mesh limits, ...).
      this.opts.configChanged?.(s, reason);
    }
  }
}
