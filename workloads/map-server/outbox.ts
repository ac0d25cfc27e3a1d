// The map's event batches on their way into JetStream (platform/bus/contract.ts: events must not
// be lost). Batches are published as they are made, without waiting for the previous ack; a
// publish that fails (the bus is away: the request times out, or JetStream does not answer yet)
// is not dropped. From then on the outbox publishes one batch at a time, oldest tick first, each
// again under its message id until stored (the stream stores a retried batch once), while new
// batches queue behind them, so a bus outage delays events but neither loses nor reorders them.
// It gives up on a batch only when the map is no longer this pod's (a new owner has its own
// ticks and fence) or when the batch is older than the stream's duplicate window (a retry could
// then be stored twice).
import { EVENT_DUPLICATE_WINDOW_MS } from "../../platform/bus/stream.ts";

export interface OutboxItem {
  subject: string;
  data: Uint8Array;
  msgID: string;
  tick: number;
  /** When the batch was made (ms, the outbox's clock). */
  made: number;
}

export interface EventOutboxOptions {
  publish(subject: string, data: Uint8Array, msgID: string): Promise<unknown>;
  /** Whether the map is still this pod's: batches of a map it lost are dropped. */
  holds(): boolean;
  /** Called for each batch given up on, and why. */
  dropped(item: OutboxItem, reason: string, err?: unknown): void;
  /** Called once per failed attempt (metrics, logs). */
  failed?(item: OutboxItem, err: unknown): void;
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
  /** Wait between attempts of one batch: doubles from `first` up to `max` (ms). */
  backoff?: { first: number; max: number };
  /** Give up on a batch this old (ms). Default: the stream's duplicate window less 10 s. */
  maxAgeMs?: number;
}

export class EventOutbox {
  private readonly o: EventOutboxOptions;
  /** Batches waiting to be (re)published in order, while retrying. */
  private readonly backlog: OutboxItem[] = [];
  private retrying: Promise<void> | undefined;
  private closed = false;

  constructor(o: EventOutboxOptions) {
    this.o = o;
  }

  /** Batches not yet known to be stored and waiting for a retry. */
  get pending(): number {
    return this.backlog.length;
  }

  /** Publishes a batch (or queues it behind the batches being retried). */
  push(item: OutboxItem): void {
    if (this.retrying) {
      this.insert(item);
      return;
    }
    this.o.publish(item.subject, item.data, item.msgID).catch((err) => {
      this.o.failed?.(item, err);
      this.insert(item);
      this.retrying ??= this.drain();
    });
  }

  /** Resolves once nothing is left to retry (or the outbox gave up on it). */
  async idle(): Promise<void> {
    while (this.retrying) await this.retrying;
  }

  /** Stops retrying; what is left is dropped. */
  close(): void {
    this.closed = true;
  }

  /** In tick order: failures of batches published before the retrying began arrive late. */
  private insert(item: OutboxItem): void {
    let i = this.backlog.length;
    while (i > 0 && this.backlog[i - 1]!.tick > item.tick) i--;
    this.backlog.splice(i, 0, item);
  }

  private async drain(): Promise<void> {
    const now = this.o.now ?? Date.now;
    const sleep = this.o.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
    const { first, max } = this.o.backoff ?? { first: 100, max: 2000 };
    const maxAge = this.o.maxAgeMs ?? EVENT_DUPLICATE_WINDOW_MS - 10_000;
    let wait = first;
    // After the caller has stored this promise as `retrying` (the loop may not await at all).
    await Promise.resolve();
    try {
      while (this.backlog.length > 0) {
        const item = this.backlog[0]!;
        const why = this.closed
          ? "the map server is stopping"
          : !this.o.holds()
            ? "the map is no longer this pod's"
            : now() - item.made > maxAge
              ? "older than the stream's duplicate window"
              : undefined;
        if (why) {
          this.backlog.shift();
          this.o.dropped(item, why);
          continue;
        }
        try {
          await this.o.publish(item.subject, item.data, item.msgID);
          this.backlog.shift();
          wait = first;
        } catch (err) {
          this.o.failed?.(item, err);
          await sleep(wait);
          wait = Math.min(max, wait * 2);
        }
      }
    } finally {
      this.retrying = undefined;
    }
  }
}
