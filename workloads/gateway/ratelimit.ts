// A token bucket per connection: `burst` messages at once, refilled at `perSecond`. Pure: the
// caller passes the clock, so tests need no timers.
export class TokenBucket {
  private tokens: number;
  private last: number;
  private readonly burst: number;
  private readonly perMs: number;

  constructor(perSecond: number, burst: number, now: number) {
    this.burst = burst;
    this.perMs = perSecond / 1000;
    this.tokens = burst;
    this.last = now;
  }

  /** Takes `n` tokens if there are that many; false means over the limit. */
  take(now: number, n = 1): boolean {
    if (now > this.last) {
      this.tokens = Math.min(this.burst, this.tokens + (now - this.last) * this.perMs);
      this.last = now;
    }
    if (this.tokens < n) return false;
    this.tokens -= n;
    return true;
  }
}
