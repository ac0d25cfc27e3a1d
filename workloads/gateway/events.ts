// Zone events (chat, combat, deaths, loot, respawns) reach the gateway on JetStream, because
// they must not be lost (platform/bus/contract.ts): one durable consumer per gateway over the
// region's event subjects. Each batch is acknowledged after it was handed to the sessions.
//
// At least once, delivered once: an acknowledgement sent while the bus is away is lost (the NATS
// client discards what it could not send), so JetStream delivers that batch again after the
// outage. The consumer remembers the stream sequences it handed over (a window of the last
// SEEN_WINDOW) and acknowledges a redelivered one without handing it to the sessions again, so no
// client sees a chat line or a hit twice.
import {
  AckPolicy,
  type ConsumerMessages,
  DeliverPolicy,
  jetstream,
  jetstreamManager,
} from "@nats-io/jetstream";
import { type NatsConnection, nanos } from "@nats-io/transport-node";
import {
  decode,
  EVENT_STREAM,
  type EventBatch,
  parseMapSubject,
  subjects,
} from "../../platform/bus/contract.ts";
import { ensureEventStream } from "../../platform/bus/stream.ts";

// One definition of the stream, next to the contract: the map server creates it too.
export { ensureEventStream };

export interface EventConsumer {
  stop(): Promise<void>;
}

/** Stream sequences remembered for telling a redelivery from a first delivery. */
export const SEEN_WINDOW = 100_000;

/** What the consumer needs of a JetStream message. */
export interface EventMessage {
  subject: string;
  data: Uint8Array;
  /** The stream sequence. */
  seq: number;
  ack(): void;
}

/**
 * The consumer's message handler: hands each batch over once (see the header), then acknowledges
 * it. `handed` counts the batches handed over, `redelivered` those skipped.
 */
export function eventHandler(
  onBatch: (batch: EventBatch, zone: string) => void,
  onError: (err: unknown) => void = () => {},
): ((m: EventMessage) => void) & { handed: number; redelivered: number } {
  const seen = new Set<number>();
  let highest = 0;
  const handle = (m: EventMessage) => {
    if (seen.has(m.seq) || (m.seq <= highest - SEEN_WINDOW && highest > 0)) {
      handle.redelivered++;
      m.ack();
      return;
    }
    seen.add(m.seq);
    if (m.seq > highest) highest = m.seq;
    if (seen.size > SEEN_WINDOW * 1.5) for (const q of seen) if (q <= highest - SEEN_WINDOW) seen.delete(q);
    try {
      const where = parseMapSubject(m.subject);
      if (where) onBatch(decode<EventBatch>(m.data), where.zone);
      handle.handed++;
    } catch (err) {
      onError(err);
    }
    m.ack();
  };
  handle.handed = 0;
  handle.redelivered = 0;
  return handle;
}

export async function consumeEvents(
  nc: NatsConnection,
  region: string,
  gatewayId: string,
  onBatch: (batch: EventBatch, zone: string) => void,
  onError: (err: unknown) => void = () => {},
): Promise<EventConsumer> {
  await ensureEventStream(nc);
  const jsm = await jetstreamManager(nc);
  // One durable per (region, gateway): regions may share a NATS cluster and pod names.
  const durable = `gw_${region}_${gatewayId}`.replace(/[^A-Za-z0-9_-]/g, "_");
  const config = {
    durable_name: durable,
    filter_subject: subjects.eventsForRegion(region),
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.New,
    max_ack_pending: 10_000,
    // A gateway that is gone for good does not leave its consumer behind.
    inactive_threshold: nanos(60 * 60 * 1000),
  };
  try {
    await jsm.consumers.add(EVENT_STREAM, config);
  } catch {
    // The durable exists with other settings (an older gateway version). A restarted gateway
    // has no sessions left to deliver old events to, so it starts the consumer afresh.
    await jsm.consumers.delete(EVENT_STREAM, durable).catch(() => undefined);
    await jsm.consumers.add(EVENT_STREAM, config);
  }
  const consumer = await jetstream(nc).consumers.get(EVENT_STREAM, durable);
  const messages: ConsumerMessages = await consumer.consume({
    max_messages: 256,
    callback: eventHandler(onBatch, onError),
  });
  return {
    async stop() {
      await messages.close().catch(() => undefined);
    },
  };
}
