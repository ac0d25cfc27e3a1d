// The gateway's side of coordinator fallback: it watches the replicas' liveness messages
// (bus.ts AliveMsg) and turns them into a P2P gate for the gateway (GatewayOptions.p2pGate):
//
// - no replica heard for the timeout (the policy's coordinatorTimeoutMs): every zone that runs
//   P2P falls back through a zone trigger of the gateway's flag client, so the report names
//   those zones (and no other) and each leaves fallback as its recovery says (Auto with
//   backoff, or Manual);
// - a replica holds a zone in fallback (mesh quality): that zone falls back;
// - before any replica was ever heard: P2P stays off ("server"), as there is nobody to mesh.
//
// The gateway sends each session a `mode` message in its sequence when the gate changes
// (Gateway.refreshModes), so nothing server-authoritative is lost by the switch.
// Minimal adapter in the coordinator's files: the gateway workload wires it with
// `p2pGate: watch.gate(flagGate(flags))` and `onChange: () => gateway.refreshModes()`.
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import { decode } from "../../platform/bus/contract.ts";
import type { FlagClient } from "../../platform/flags/client.ts";
import { effectiveP2P } from "../../platform/flags/layout.ts";
import type { Mode } from "../../platform/protocol/messages.ts";
import { type AliveMsg, coordSubjects, type ZoneState } from "./bus.ts";

export const COORDINATOR_TRIGGER = "coordinator";

export interface CoordinatorWatchOptions {
  nc: NatsConnection;
  region: string;
  /** The gateway's flag client: its P2P zones get the "coordinator" zone trigger while no replica answers. */
  flags?: FlagClient;
  /** Which service's flags gate P2P (default "gateway"). */
  service?: string;
  /** Silence after which the coordinator is unreachable. Default: the smallest coordinatorTimeoutMs in the flags, else 1500 ms. */
  timeoutMs?: () => number;
  /** Called whenever the gate may answer differently (wire it to Gateway.refreshModes). */
  onChange?: () => void;
  checkMs?: number;
  now?: () => number;
  log?: {
    info(msg: string, fields?: Record<string, unknown>): void;
    warn(msg: string, fields?: Record<string, unknown>): void;
  };
}

export type CoordinatorState = "unknown" | "up" | "down";

export class CoordinatorWatch {
  state: CoordinatorState = "unknown";
  /** When the last replica went silent (ms since the epoch). */
  downSince = 0;
  private readonly opts: CoordinatorWatchOptions;
  private readonly now: () => number;
  private readonly checkMs: number;
  /** Per replica: when it was last heard, checks since, and its zones. */
  private readonly replicas = new Map<string, { seen: number; checks: number; zones: ZoneState[] }>();
  private sub?: Subscription;
  private timer?: NodeJS.Timeout;
  private fallbackZones = "";
  /** Zones given the coordinator trigger while no replica answers. */
  private readonly downZones = new Set<string>();

  constructor(opts: CoordinatorWatchOptions) {
    this.opts = opts;
    this.now = opts.now ?? Date.now;
    this.checkMs = opts.checkMs ?? 50;
  }

  start(): void {
    this.sub = this.opts.nc.subscribe(coordSubjects.alive(this.opts.region), {
      callback: (err, msg) => {
        if (err) return;
        try {
          const m = decode<AliveMsg>(msg.data);
          this.replicas.set(m.replica, { seen: this.now(), checks: 0, zones: m.zones });
        } catch {
          return;
        }
        this.check();
      },
    });
    this.timer = setInterval(() => {
      for (const r of this.replicas.values()) r.checks++;
      this.check();
    }, this.checkMs);
  }

  stop(): void {
    this.sub?.unsubscribe();
    clearInterval(this.timer);
  }

  /** Why a live replica holds `zone` in fallback, if one does. */
  zoneFallback(zone: string): string | undefined {
    const timeout = this.timeout();
    const now = this.now();
    for (const r of this.replicas.values()) {
      if (this.silent(r, now, timeout)) continue;
      const z = r.zones.find((s) => s.zone === zone && s.mode === "fallback");
      if (z) return z.reason;
    }
    return undefined;
  }

  /** The gateway's P2P gate: `base` (its flags and latches) further held by the coordinator's state. */
  gate(base: (zone: string) => Mode): (zone: string) => Mode {
    return (zone) => {
      const b = base(zone);
      if (b !== "p2p") return b;
      if (this.state === "down" || this.zoneFallback(zone) !== undefined) return "fallback";
      // Before any replica was heard there is nobody to mesh with: not a failure.
      if (this.state === "unknown") return "server";
      return b;
    };
  }

  private timeout(): number {
    if (this.opts.timeoutMs) return this.opts.timeoutMs();
    let t = Number.POSITIVE_INFINITY;
    for (const d of this.opts.flags?.snapshot().zones.values() ?? [])
      t = Math.min(t, d.thresholds.coordinatorTimeoutMs);
    return Number.isFinite(t) ? t : 1500;
  }

  /**
   * Silent for the timeout by the clock and by the checks run since: a stall of this process
   * (GC, a busy event loop) leaves the replicas' messages unread in the socket, and is no outage.
   */
  private silent(r: { seen: number; checks: number }, now: number, timeout: number): boolean {
    return now - r.seen > timeout && r.checks * this.checkMs >= timeout;
  }

  private check(): void {
    const now = this.now();
    const timeout = this.timeout();
    let alive = false;
    for (const r of this.replicas.values()) if (!this.silent(r, now, timeout)) alive = true;
    const next: CoordinatorState = alive ? "up" : this.state === "unknown" ? "unknown" : "down";
    const zones = [...this.replicas.values()]
      .filter((r) => !this.silent(r, now, timeout))
      .flatMap((r) => r.zones.filter((z) => z.mode === "fallback").map((z) => z.zone))
      .sort()
      .join(",");
    const was = this.state;
    if (next === "down" && was !== "down") {
      this.downSince = now;
      this.opts.log?.warn("coordinator unreachable: P2P zones fall back", { silentMs: timeout });
    } else if (next === "up" && was === "down") {
      this.opts.log?.info("coordinator back", { downMs: now - this.downSince });
    }
    this.state = next;
    const holds = this.holdZones(timeout);
    if (next === was && zones === this.fallbackZones && !holds) return;
    this.fallbackZones = zones;
    this.opts.onChange?.();
  }

  /**
   * While no replica answers, every zone where the gateway runs P2P gets the coordinator
   * trigger (zones that start P2P during the outage too); once one answers, they are cleared.
   */
  private holdZones(timeout: number): boolean {
    const f = this.opts.flags;
    if (!f) return false;
    const service = this.opts.service ?? "gateway";
    if (this.state === "down") {
      const fresh = [...f.snapshot().zones]
        .filter(([zone, doc]) => !this.downZones.has(zone) && effectiveP2P(doc, service))
        .map(([zone]) => zone);
      if (fresh.length === 0) return false;
      for (const zone of fresh) this.downZones.add(zone);
      f.triggerZones(
        fresh,
        COORDINATOR_TRIGGER,
        `coordinator unreachable: no replica heard for ${timeout} ms`,
      );
      return true;
    }
    if (this.downZones.size === 0) return false;
    f.clearZoneTriggers(this.downZones, COORDINATOR_TRIGGER);
    this.downZones.clear();
    return true;
  }
}
