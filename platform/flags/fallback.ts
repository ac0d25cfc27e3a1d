// The fallback latch of one pod: entered when any local trigger fires (flag store lost past the
// grace period, coordinator unreachable, mesh quality past the thresholds, ...), and left as the
// zone's recovery policy says: Auto, once every trigger has cleared and a backoff has passed
// (doubling on each re-entry, up to the maximum), or Manual, only when the operator clears it
// (a new clear token in the zone's flags) or P2P is switched off for the zone. Pure: the clock is
// passed in.

export interface RecoveryPolicy {
  mode: "Auto" | "Manual";
  initialSeconds: number;
  maxSeconds: number;
  clearToken: string;
}

export const DEFAULT_RECOVERY: RecoveryPolicy = {
  mode: "Auto",
  initialSeconds: 10,
  maxSeconds: 300,
  clearToken: "",
};

export interface LatchState {
  active: boolean;
  reason: string;
  /** When the latch was entered (ms since epoch); meaningful when active. */
  since: number;
  /** When an Auto recovery will release the latch, if it is waiting for its backoff. */
  releaseAt?: number;
}

export class FallbackLatch {
  private readonly triggers = new Map<string, string>();
  private active = false;
  private reason = "";
  private since = 0;
  private entries = 0;
  private lastExit = 0;
  private clearedAt: number | undefined;
  private entryToken = "";

  /** Fires a trigger (idempotent). */
  set(trigger: string, reason: string, now: number, policy: RecoveryPolicy): void {
    this.triggers.set(trigger, reason);
    this.clearedAt = undefined;
    if (!this.active) {
      // Consecutive entries within maxSeconds of the last exit double the backoff.
      if (this.entries > 0 && now - this.lastExit > policy.maxSeconds * 1000) this.entries = 0;
      this.entries++;
      this.active = true;
      this.since = now;
      this.reason = reason;
      this.entryToken = policy.clearToken;
    }
  }

  /** Clears a trigger; the latch itself is released by evaluate() as the policy says. */
  clear(trigger: string, now: number): void {
    if (!this.triggers.delete(trigger)) return;
    if (this.triggers.size === 0) this.clearedAt = now;
  }

  backoffMs(policy: RecoveryPolicy): number {
    const n = Math.max(1, this.entries);
    return Math.min(policy.initialSeconds * 1000 * 2 ** (n - 1), policy.maxSeconds * 1000);
  }

  /**
   * The latch's state at `now`. `p2pEnabled` is whether P2P is switched on for the pod at all:
   * switching it off releases a Manual latch (the original's sticky-until-disabled rule).
   */
  evaluate(now: number, policy: RecoveryPolicy, p2pEnabled: boolean): LatchState {
    if (!this.active) return { active: false, reason: "", since: 0 };
    if (this.triggers.size === 0) {
      if (policy.mode === "Auto") {
        const releaseAt = (this.clearedAt ?? now) + this.backoffMs(policy);
        if (now >= releaseAt) return this.release(now);
        return {
          active: true,
          // A fixed time, not a countdown: the reason goes into reports and status, which are
          // written only when they change.
          reason: `${this.reason} (recovering: P2P again at ${new Date(releaseAt).toISOString()})`,
          since: this.since,
          releaseAt,
        };
      }
      if (!p2pEnabled || policy.clearToken !== this.entryToken) return this.release(now);
      return {
        active: true,
        reason: `${this.reason} (cleared; manual recovery required)`,
        since: this.since,
      };
    }
    return { active: true, reason: this.currentReason(), since: this.since };
  }

  private currentReason(): string {
    return [...this.triggers.values()].join("; ") || this.reason;
  }

  private release(now: number): LatchState {
    this.active = false;
    this.lastExit = now;
    this.clearedAt = undefined;
    return { active: false, reason: "", since: 0 };
  }
}
