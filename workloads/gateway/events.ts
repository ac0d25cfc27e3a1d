// Zone events (chat, combat, deaths, loot, respawns) reach the gateway on JetStream, because
// they must not be lost (platform/bus/contract.ts): one durable consumer per gateway over the
// region's event subjects. Each batch is acknowledged after it was handed to the sessions.
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
    callback: (m) => {
      try {
        const where = parseMapSubject(m.subject);
        if (where) onBatch(decode<EventBatch>(m.data), where.zone);
      } catch (err) {
        onError(err);
      }
      m.ack();
    },
  });
  return {
    async stop() {
      await messages.close().catch(() => undefined);
    },
  };
}
