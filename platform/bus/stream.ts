// The JetStream stream for zone events (contract.ts), created by whichever side starts first.
import { jetstreamManager } from "@nats-io/jetstream";
import { type NatsConnection, nanos } from "@nats-io/transport-node";
import { EVENT_STREAM, EVENT_STREAM_MAX_AGE_MS, EVENT_STREAM_SUBJECTS } from "./contract.ts";

/** Duplicate window for message ids (a retried publish of one tick's batch is stored once). */
export const EVENT_DUPLICATE_WINDOW_MS = 2 * 60 * 1000;

export async function ensureEventStream(nc: NatsConnection): Promise<void> {
  const jsm = await jetstreamManager(nc);
  try {
    await jsm.streams.info(EVENT_STREAM);
  } catch {
    try {
      await jsm.streams.add({
        name: EVENT_STREAM,
        subjects: EVENT_STREAM_SUBJECTS,
        max_age: nanos(EVENT_STREAM_MAX_AGE_MS),
        duplicate_window: nanos(EVENT_DUPLICATE_WINDOW_MS),
      });
    } catch (err) {
      // Lost a race with another creator: fine as long as the stream exists now.
      await jsm.streams.info(EVENT_STREAM).catch(() => {
        throw err;
      });
    }
  }
}
